"""The one pruning loop: a `transformers.Trainer` that trains only masks and λs.

Each step runs the full model on the clean input (reference distribution, no grad),
the full model on the corrupted input (writer states, no grad), and the circuit on
the clean input with the corrupted states patched into removed edges. The loss is
KL(full || circuit) at the task's positions plus the Lagrangian sparsity terms
(method.md §4). Flags follow the original scripts; every HF `TrainingArguments`
flag works too (checkpointing, resuming, logging, bf16, FSDP).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

from .circuit import save_edges_json
from .evaluation import CircuitEvaluation, evaluate_circuit
from .models import model_class
from .sparsity import check_schedule, target_at_step
from .tasks import Encoded, Task, TaskDataError, collate, get_task, load_rows

logger = logging.getLogger("edge_pruning")

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
# Module names (full match) that FSDP leaves whole: the masks and λs of every circuit model.
MASKS_MODULE_PATTERN = r"(.*\.)?circuit_masks"


@dataclass
class PruningArguments:
    """Flags of the original pruning scripts (names kept), plus a few of ours."""

    initialize_from: str = field(metadata={"help": "checkpoint (hub name or directory) to prune"})
    dataset_path: str | None = field(default=None, metadata={"help": "dataset dir or .jsonl; default: the task's shipped data"})
    train_split: str = "train"
    eval_split: str = "validation"
    tokenizer: str | None = field(default=None, metadata={"help": "default: the checkpoint's own tokenizer"})
    max_seq_length: int = 64
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    edge_learning_rate: float = 0.8
    node_learning_rate: float = 0.8
    reg_edge_learning_rate: float = 0.8
    reg_node_learning_rate: float = 0.8
    mask_weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay on masks and λs (the original used torch's default, 0.01)"}
    )
    start_edge_sparsity: float = 0.0
    target_edge_sparsity: float = 0.98
    start_node_sparsity: float = 0.0
    target_node_sparsity: float = 0.7
    num_sparsity_warmup_steps: int = 0
    warmup_type: str = field(default="linear", metadata={"help": "linear | logarithmic"})
    with_embedding_nodes: bool = field(default=False, metadata={"help": "model the embeddings as prunable nodes"})
    disable_node_loss: bool = field(default=False, metadata={"help": "no Lagrangian node penalty (node masks still train)"})
    ablation: str = field(default="interchange", metadata={"help": "interchange | zero | mean"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "start afresh instead of resuming"})
    eval_batch_size: int = 16


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[Encoded]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Encoded:
        return self.examples[i]


def encode_split(task: Task, tokenizer, dataset_path, split: str, max_seq_length: int, limit: int | None) -> list[Encoded]:
    rows = load_rows(task, dataset_path, split)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise TaskDataError(f"split {split!r} of {dataset_path or task.default_dataset} is empty")
    examples = task.encode_rows(rows, tokenizer)
    for i, e in enumerate(examples):
        if len(e.input_ids) > max_seq_length:
            raise TaskDataError(
                f"{split} example {i} is {len(e.input_ids)} tokens, longer than --max_seq_length {max_seq_length}"
            )
    return examples


def pad_token_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0


def mask_optimizer(masks, edge_lr: float, node_lr: float, reg_edge_lr: float, reg_node_lr: float, weight_decay: float):
    """AdamW over the four groups; the λ groups maximise (method.md §4)."""
    groups = [
        {"params": [masks.edge_log_alphas], "lr": edge_lr},
        {"params": [masks.node_log_alphas], "lr": node_lr},
        {"params": [masks.sparsity_lambda_edges_1, masks.sparsity_lambda_edges_2], "lr": reg_edge_lr, "maximize": True},
        {"params": [masks.sparsity_lambda_nodes_1, masks.sparsity_lambda_nodes_2], "lr": reg_node_lr, "maximize": True},
    ]
    return torch.optim.AdamW(groups, lr=edge_lr, weight_decay=weight_decay)


def pruning_loss(
    model,
    task: Task,
    batch: dict,
    target_edge: float,
    target_node: float | None,
    ablation: str = "interchange",
    mean_states: torch.Tensor | None = None,
):
    """One step's loss: KL(full || circuit) at the task's positions plus the
    Lagrangian terms. Returns (loss, kl, model output)."""
    from .evaluation import corrupted_states, model_logits

    with torch.no_grad():
        full = model_logits(model, batch, circuit=False)
    corr_x = corrupted_states(model, batch, ablation, mean_states)
    out = model(
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_positions=batch["positions"],
        corr_x=corr_x,
        target_edge_sparsity=target_edge,
        target_node_sparsity=target_node,
    )
    kl = task.loss(out.logits, full, batch)
    loss = kl + out.edge_loss
    if out.node_loss is not None:
        loss = loss + out.node_loss
    return loss, kl, out


class EdgePruningTrainer(Trainer):
    """Trains masks and λs; the λ groups maximise the loss (AdamW `maximize=True`)."""

    def __init__(self, *args, task: Task, pruning_args: PruningArguments, mean_states=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.task = task
        self.pargs = pruning_args
        self.mean_states = mean_states
        self.last_stats: dict[str, float] = {}
        if self.is_fsdp_enabled:
            keep_masks_out_of_fsdp(self.accelerator.state.fsdp_plugin)

    def create_optimizer(self):
        if self.optimizer is None:
            p = self.pargs
            self.optimizer = mask_optimizer(
                self.model.circuit_masks,
                p.edge_learning_rate,
                p.node_learning_rate,
                p.reg_edge_learning_rate,
                p.reg_node_learning_rate,
                p.mask_weight_decay,
            )
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.is_fsdp_enabled:
            average_mask_grads(model.circuit_masks)
        return loss

    def targets(self) -> tuple[float, float]:
        p = self.pargs
        step = self.state.global_step
        edge = target_at_step(p.start_edge_sparsity, p.target_edge_sparsity, step, p.num_sparsity_warmup_steps, p.warmup_type)
        node = target_at_step(p.start_node_sparsity, p.target_node_sparsity, step, p.num_sparsity_warmup_steps, p.warmup_type)
        return edge, node

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target_edge, target_node = self.targets()
        loss, kl, out = pruning_loss(
            model,
            self.task,
            inputs,
            target_edge,
            None if self.pargs.disable_node_loss else target_node,
            self.pargs.ablation,
            self.mean_states,
        )
        masks = model.circuit_masks
        self.last_stats = {
            "kl_loss": kl.item(),
            "edge_loss": out.edge_loss.item(),
            "node_loss": 0.0 if out.node_loss is None else out.node_loss.item(),
            "expected_edge_sparsity": out.model_edge_sparsity.item(),
            "expected_node_sparsity": out.model_node_sparsity.item(),
            "target_edge_sparsity": target_edge,
            "target_node_sparsity": target_node,
            "lambda_edges_1": masks.sparsity_lambda_edges_1.item(),
            "lambda_edges_2": masks.sparsity_lambda_edges_2.item(),
        }
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs:
            logs = {**logs, **{k: round(v, 6) for k, v in self.last_stats.items()}}
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model, trial) -> None:
        """Mark a checkpoint complete only once everything is written, so that a run
        killed mid-save never resumes from a partial checkpoint."""
        super()._save_checkpoint(model, trial)
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save and folder.is_dir():
            (folder / COMPLETE_MARKER).write_text(str(self.state.global_step))


def keep_masks_out_of_fsdp(plugin) -> None:
    """FSDP2 shards the model weights only; masks and λs stay whole and fp32 on every rank.

    fully_shard rejects the scalar λs, every rank samples the full mask matrix anyway,
    and bf16 mixed precision would round log_alphas and the expected sparsity. Their
    gradients are averaged by `average_mask_grads` instead.
    """
    if plugin.fsdp_version != 2:
        raise ValueError("FSDP pruning needs FSDP2: set fsdp_version: 2 in the accelerate config")
    plugin.ignored_modules = MASKS_MODULE_PATTERN


def average_mask_grads(masks: torch.nn.Module) -> None:
    """Average the gradients of the replicated masks and λs over ranks (one all-reduce),
    before clipping and the optimizer step, so that every rank takes the same step."""
    grads = [p.grad for p in masks.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    torch.distributed.all_reduce(flat)  # a sum: gloo has no average
    flat /= torch.distributed.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class JsonlLogCallback(TrainerCallback):
    """Every logged step, one JSON line in the output dir's log.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest checkpoint-N holding the completion marker."""
    path = Path(output_dir)
    if not path.is_dir():
        return None
    done = [d for d in path.glob("checkpoint-*") if (d / COMPLETE_MARKER).exists() and d.name.split("-")[-1].isdigit()]
    return str(max(done, key=lambda d: int(d.name.split("-")[-1]))) if done else None


def save_atomically(model, tokenizer, output_dir: str | os.PathLike, state_dict: dict | None = None) -> None:
    """save_pretrained (of `state_dict` if given: a gathered FSDP model) into a temporary
    folder, then move the files into place."""
    out = Path(output_dir)
    tmp = out / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    for item in tmp.iterdir():
        os.replace(item, out / item.name)
    tmp.rmdir()


def flush_denormals_on_cpu(targs: TrainingArguments) -> None:
    """Treat denormal floats as zero on the CPU. Early in pruning the circuit equals the
    full model, the KL is ~1e-4 and its gradients are tiny: x86 arithmetic on denormals
    is many times slower (a SmolLM2 step took 13 s instead of under 2)."""
    if targs.device.type == "cpu":
        torch.set_flush_denormal(True)
        reuse_freed_memory()


def reuse_freed_memory() -> None:
    """On glibc, serve large CPU tensors from the heap and keep freed memory.

    By default each allocation over 32 MiB is a fresh mmap that the kernel zero-fills
    page by page, every step: at GPT-2 small, batch 32, that was 13 of a 27 s masked
    forward+backward (bench/RESULTS.md). Keeping the memory makes the process hold its
    peak for the run. No-op elsewhere. (With it: 22.9 s instead of 26.8-34 s per step there.)
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    mallopt(M_TOP_PAD, 2**30)


def setup_logging(output_dir: Path, filename: str) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output_dir / filename)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("edge_pruning", "transformers"):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)


def parse_args(argv: list[str] | None) -> tuple[PruningArguments, TrainingArguments]:
    parser = HfArgumentParser((PruningArguments, TrainingArguments))
    pargs, targs = parser.parse_args_into_dataclasses(args=argv)
    targs.remove_unused_columns = False
    if targs.report_to in ("all", ["all"]):
        targs.report_to = []
    check_schedule(pargs.start_edge_sparsity, pargs.target_edge_sparsity, pargs.warmup_type, "edge")
    check_schedule(pargs.start_node_sparsity, pargs.target_node_sparsity, pargs.warmup_type, "node")
    if pargs.ablation not in ("interchange", "zero", "mean"):
        raise ValueError(f"--ablation must be interchange, zero or mean, got {pargs.ablation!r}")
    if targs.max_steps <= 0:
        raise ValueError("--max_steps must be set (> 0)")
    if pargs.num_sparsity_warmup_steps > targs.max_steps:
        raise ValueError("--num_sparsity_warmup_steps exceeds --max_steps: the target would never be reached")
    return pargs, targs


def train_masks(
    model,
    task: Task,
    train: list[Encoded],
    pad_id: int,
    pargs: PruningArguments,
    targs: TrainingArguments,
    tokenizer=None,
    callbacks: list[TrainerCallback] | None = None,
):
    """Train a loaded model's masks (resuming where a complete checkpoint exists) and
    save it atomically. Returns the trainer and the mean states of mean ablation."""
    output_dir = Path(targs.output_dir)
    mean_states = None
    if pargs.ablation == "mean":
        from .ablation import mean_writer_states

        mean_states = mean_writer_states(model, train, pad_id, pargs.eval_batch_size)
    graph = model.circuit_graph
    logger.info(f"pruning {task.name}: {len(train)} train examples, {graph.n_edges} edges, {graph.n_writers} nodes")
    trainer = EdgePruningTrainer(
        model=model,
        args=targs,
        train_dataset=EncodedDataset(train),
        data_collator=lambda examples: collate(examples, pad_id),
        task=task,
        pruning_args=pargs,
        mean_states=mean_states,
        callbacks=[JsonlLogCallback(output_dir / "log.jsonl"), *(callbacks or [])],
    )
    resume = targs.resume_from_checkpoint
    if resume is None and not pargs.overwrite_output_dir:
        resume = last_complete_checkpoint(output_dir)
        if resume:
            logger.info(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    # Under FSDP the weights are sharded: gather them (every rank takes part) for rank 0 to save.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if trainer.is_world_process_zero():
        save_atomically(model, tokenizer, output_dir, state_dict)
    return trainer, mean_states


def prune_main(
    arch: str, task_name: str, argv: list[str] | None = None, callbacks: list[TrainerCallback] | None = None
) -> CircuitEvaluation:
    """Entry point of every `src/prune/<arch>_<task>.py` script; `callbacks` are added
    to the Trainer's."""
    pargs, targs = parse_args(argv)
    output_dir = Path(targs.output_dir)
    setup_logging(output_dir, "prune.log")
    flush_denormals_on_cpu(targs)
    task = get_task(task_name)
    cls = model_class(arch)
    set_seed(targs.seed)  # the masks' N(10, 0.01) initialisation is drawn when the model is built
    # Loaded in fp32 whatever the checkpoint's dtype, so that masks it lacks start from an
    # fp32 N(10, 0.01). Masks and λs stay fp32; with --bf16 the frozen weights (and thus
    # the activations and the residual stream) are bf16.
    model = cls.from_pretrained(pargs.initialize_from, with_embedding_nodes=pargs.with_embedding_nodes, dtype=torch.float32)
    if targs.bf16:
        model.to(torch.bfloat16)
        model.circuit_masks.float()
    model.freeze_model_weights()
    tokenizer = AutoTokenizer.from_pretrained(pargs.tokenizer or pargs.initialize_from)
    pad_id = pad_token_id(tokenizer)
    train = encode_split(task, tokenizer, pargs.dataset_path, pargs.train_split, pargs.max_seq_length, pargs.max_train_samples)
    evals = encode_split(task, tokenizer, pargs.dataset_path, pargs.eval_split, pargs.max_seq_length, pargs.max_eval_samples)
    trainer, mean_states = train_masks(model, task, train, pad_id, pargs, targs, tokenizer, callbacks)
    # Every rank evaluates (under FSDP each forward is collective); rank 0 writes.
    result = evaluate_circuit(
        model, task, evals, pargs.eval_split, pargs.eval_batch_size, pad_id, ablation=pargs.ablation, mean_states=mean_states
    )
    if trainer.is_world_process_zero():
        result.to_json(output_dir / "eval_results.json")
        save_edges_json(output_dir / "edges.json", model.get_edges())
        (output_dir / "pruning_args.json").write_text(json.dumps(dataclasses.asdict(pargs), indent=2))
        logger.info(result.summary())
    return result
