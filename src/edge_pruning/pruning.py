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
from transformers import HfArgumentParser, Seq2SeqTrainingArguments, Trainer, TrainerCallback, TrainingArguments, set_seed

from . import l0
from .circuit import save_edges_json
from .evaluation import CircuitEvaluation, evaluate_circuit
from .models import load_model
from .sparsity import check_schedule, target_at_step
from .tasks import Encoded, Task, TaskDataError, collate, get_task, load_rows

logger = logging.getLogger("edge_pruning")

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
# Module names (full match) that FSDP leaves whole: the masks and λs of every circuit model.
MASKS_MODULE_PATTERN = r"(.*\.)?circuit_masks"


@dataclass
class PruningArguments:
    """Flags of the original pruning scripts (names and defaults kept; the GPT-2 scripts'
    `layer` names are aliases of the `node` ones), plus a few of ours."""

    initialize_from: str = field(default="gpt2", metadata={"help": "checkpoint (hub name or directory) to prune"})
    ref_initialize_from: str | None = field(
        default=None,
        metadata={"help": "the full reference model (logits and corrupted states); default: --initialize_from"},
    )
    dataset_path: str | None = field(default=None, metadata={"help": "dataset dir or .jsonl; default: the task's shipped data"})
    train_split: str = "train"
    eval_split: str = "validation"
    tokenizer: str | None = field(default=None, metadata={"help": "default: the reference's (or checkpoint's) tokenizer"})
    max_seq_length: int = 64
    seq_length: int | None = field(default=None, metadata={"help": "every example must be exactly this many tokens (Tracr)"})
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    edge_learning_rate: float = 1e-2
    node_learning_rate: float = field(default=1.0, metadata={"aliases": ["--layer_learning_rate"]})
    reg_edge_learning_rate: float = 1e-2
    reg_node_learning_rate: float = field(default=1.0, metadata={"aliases": ["--reg_layer_learning_rate"]})
    mask_weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay on masks and λs (the original used torch's default, 0.01)"}
    )
    start_edge_sparsity: float = 0.0
    target_edge_sparsity: float = 0.97
    start_node_sparsity: float = field(default=0.0, metadata={"aliases": ["--start_layer_sparsity"]})
    target_node_sparsity: float = field(default=0.72, metadata={"aliases": ["--target_layer_sparsity"]})
    stop_optimizing_node_if_higher_sparsity: bool = field(
        default=False,
        metadata={
            "aliases": ["--stop_optimizing_layer_if_higher_sparsity"],
            "help": "drop the node penalty in a step whose node sparsity is above its target",
        },
    )
    num_sparsity_warmup_steps: int = 0
    warmup_type: str = field(default="linear", metadata={"help": "linear | logarithmic"})
    with_embedding_nodes: bool = field(default=False, metadata={"help": "model the embeddings as prunable nodes"})
    disable_linear_reg_term: bool = field(
        default=False,
        metadata={"aliases": ["--disable_linear_regularization_term"], "help": "λ1 stays 0: only λ2 (s - t)^2 remains"},
    )
    disable_node_loss: bool = field(default=False, metadata={"help": "no Lagrangian node penalty (node masks still train)"})
    sparsity_penalty: str = field(
        default="sampled", metadata={"help": "s in the penalty: sampled (1 - Σz/n, the original's) | expected (P(z > 0))"}
    )
    ablation: str = field(default="interchange", metadata={"help": "interchange | zero | mean"})
    zero_ablation: bool = field(default=False, metadata={"help": "the original's name for --ablation zero"})
    keep_masks: bool = field(
        default=False,
        metadata={"help": "keep the masks and λs of a pruned --initialize_from (default: reset them, as the original)"},
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "start afresh instead of resuming"})
    eval_batch_size: int | None = field(default=None, metadata={"help": "default: --per_device_eval_batch_size"})
    # Accepted for the original's command lines: hub options, and flags without effect here.
    cache_dir: str | None = None
    model_revision: str = "main"
    token: str | None = None
    use_auth_token: bool | None = field(default=None, metadata={"help": "deprecated: --token"})
    trust_remote_code: bool = field(default=False, metadata={"help": "accepted; the circuit models are this package's"})
    ignore_mismatched_sizes: bool = False
    overwrite_cache: bool = field(default=False, metadata={"help": "accepted; datasets are not cached"})


# Defaults of the original scripts' dataclasses, per entry point (original_differences.md §9).
# The Llama entry points for IOI/GT/GP/custom are ours: they take the GPT-2 task's targets.
_TASK_TARGETS = {
    "ioi": (0.97, 0.72),
    "gt": (0.98, 0.68),
    "gp": (0.99, 0.80),
    "custom": (0.97, 0.72),
    "boolean_expressions_ip": (1.2, 0.70),
    "boolean_expressions_fs": (1.2, 0.70),
    "reverse": (0.92, 0.16),
    "xproportion": (0.97, 0.25),
}
_ARCH_MODELS = {"fpt2": "gpt2", "fllama": "meta-llama/Llama-2-7b-hf"}
_SEQ_LENGTHS = {"boolean_expressions_fs": 72, "reverse": 4, "xproportion": 5}


def original_defaults(arch: str, task_name: str) -> dict:
    """The original script's defaults for this entry point."""
    edge, node = _TASK_TARGETS.get(task_name, (0.97, 0.72))
    out = {"target_edge_sparsity": edge, "target_node_sparsity": node}
    if arch in _ARCH_MODELS:
        out["initialize_from"] = _ARCH_MODELS[arch]
    if task_name in _SEQ_LENGTHS:
        out["max_seq_length"] = _SEQ_LENGTHS[task_name]
    return out


class NonFiniteLossError(RuntimeError):
    """A step whose loss or mask gradient is not finite; the run stops before that step's update."""


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


def check_seq_length(examples: list[Encoded], seq_length: int | None, split: str) -> None:
    """--seq_length (the original Tracr scripts'): every example is exactly that long."""
    if seq_length is None:
        return
    for i, e in enumerate(examples):
        if len(e.input_ids) != seq_length:
            raise TaskDataError(f"{split} example {i} is {len(e.input_ids)} tokens, not --seq_length {seq_length}")


def pad_token_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0


def mask_optimizer(
    masks,
    edge_lr: float,
    node_lr: float,
    reg_edge_lr: float,
    reg_node_lr: float,
    weight_decay: float,
    linear_term: bool = True,
):
    """AdamW over the four groups; the λ groups maximise (method.md §4). Without the
    linear term, λ1 of edges and nodes is no parameter of the optimizer (it stays 0)."""
    lam_edges = [masks.sparsity_lambda_edges_1, masks.sparsity_lambda_edges_2]
    lam_nodes = [masks.sparsity_lambda_nodes_1, masks.sparsity_lambda_nodes_2]
    if not linear_term:
        lam_edges, lam_nodes = lam_edges[1:], lam_nodes[1:]
    groups = [
        {"params": [masks.edge_log_alphas], "lr": edge_lr},
        {"params": [masks.node_log_alphas], "lr": node_lr},
        {"params": lam_edges, "lr": reg_edge_lr, "maximize": True},
        {"params": lam_nodes, "lr": reg_node_lr, "maximize": True},
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
    reference=None,
    skip_node_loss_above_target: bool = False,
):
    """One step's loss: KL(full || circuit) at the task's positions plus the
    Lagrangian terms. The full model's logits and the corrupted states come from
    `reference` when given (--ref_initialize_from), else from the model's own frozen
    weights. Returns (loss, kl, model output)."""
    from .evaluation import corrupted_states, model_logits

    full_model = model if reference is None else reference
    with torch.no_grad():
        full = model_logits(full_model, batch, circuit=False)
    corr_x = corrupted_states(full_model, batch, ablation, mean_states)
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
        # --stop_optimizing_node_if_higher_sparsity: the original drops the node term
        # in any step whose node sparsity is already above its target.
        above = skip_node_loss_above_target and out.model_node_sparsity.item() > target_node
        if not above:
            loss = loss + out.node_loss
    return loss, kl, out


def _value(x) -> float | None:
    if x is None:
        return None
    return x.item() if torch.is_tensor(x) else float(x)


class EdgePruningTrainer(Trainer):
    """Trains masks and λs; the λ groups maximise the loss (AdamW `maximize=True`).

    With an eval dataset (--eval_strategy steps|epoch) it evaluates the circuit on the
    validation split during training, binarised at its current sparsity as at the end.
    A non-finite loss or mask gradient stops the run before that step's update."""

    def __init__(
        self,
        *args,
        task: Task,
        pruning_args: PruningArguments,
        mean_states=None,
        reference=None,
        pad_id: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.task = task
        self.pargs = pruning_args
        self.mean_states = mean_states
        self.reference = reference
        self.pad_id = pad_id
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
                linear_term=not p.disable_linear_reg_term,
            )
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.is_fsdp_enabled:
            average_mask_grads(model.circuit_masks)
        self.check_finite(loss, model.circuit_masks)
        return loss

    def check_finite(self, loss: torch.Tensor, masks) -> None:
        """Stop before the optimizer step (nothing of this step is applied or saved)."""
        bad = []
        if not torch.isfinite(loss).all():
            bad.append(f"loss {loss.item()}")  # the gradients then are too: name the cause
        else:
            names = [n for n, p in masks.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            if names:
                bad.append("gradient of " + ", ".join(names))
        flag = torch.tensor([float(bool(bad))], device=loss.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag)  # every rank stops together
        if flag.item() == 0:
            return
        step = self.state.global_step + 1
        checkpoint = last_complete_checkpoint(self.args.output_dir)
        what = bad[0] if bad else "loss or gradient on another rank"
        raise NonFiniteLossError(
            f"non-finite {what} at step {step}: stopped before its update, nothing saved; "
            + (f"the last complete checkpoint is {checkpoint} (untouched)" if checkpoint else "no checkpoint was saved yet")
        )

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
            reference=self.reference,
            skip_node_loss_above_target=self.pargs.stop_optimizing_node_if_higher_sparsity,
        )
        masks = model.circuit_masks
        stats = {
            "kl_loss": kl.item(),
            "edge_loss": out.edge_loss.item(),
            "node_loss": 0.0 if out.node_loss is None else out.node_loss.item(),
            # the sparsity the penalty uses, then both kinds (sampled masks; P(z > 0))
            "model_edge_sparsity": _value(out.model_edge_sparsity),
            "model_node_sparsity": _value(out.model_node_sparsity),
            "sampled_edge_sparsity": _value(getattr(out, "sampled_edge_sparsity", None)),
            "sampled_node_sparsity": _value(getattr(out, "sampled_node_sparsity", None)),
            "expected_edge_sparsity": _value(getattr(out, "expected_edge_sparsity", None)),
            "expected_node_sparsity": _value(getattr(out, "expected_node_sparsity", None)),
            "target_edge_sparsity": target_edge,
            "target_node_sparsity": target_node,
            "lambda_edges_1": masks.sparsity_lambda_edges_1.item(),
            "lambda_edges_2": masks.sparsity_lambda_edges_2.item(),
            "lambda_nodes_1": masks.sparsity_lambda_nodes_1.item(),
            "lambda_nodes_2": masks.sparsity_lambda_nodes_2.item(),
        }
        self.last_stats = {k: v for k, v in stats.items() if v is not None}
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs:
            logs = {**logs, **{k: round(v, 6) for k, v in self.last_stats.items()}}
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The circuit's validation metrics now (KL, task metrics, sparsities), from the
        same evaluation loop as the final one; the masks' thresholds are restored after."""
        from .evaluation import evaluate_circuit

        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluation during training needs a validation split (--eval_split)")
        model = self.model
        masks = model.circuit_masks
        thresholds = (masks.edge_threshold, masks.node_threshold)
        was_training = model.training
        try:
            result = evaluate_circuit(
                model,
                self.task,
                list(dataset.examples),
                self.pargs.eval_split,
                self.pargs.eval_batch_size or self.args.per_device_eval_batch_size,
                self.pad_id,
                ablation=self.pargs.ablation,
                mean_states=self.mean_states,
            )
        finally:
            masks.edge_threshold, masks.node_threshold = thresholds
            model.train(was_training)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in result.circuit.items()}
        metrics[f"{metric_key_prefix}_edge_sparsity"] = result.edge_sparsity
        metrics[f"{metric_key_prefix}_node_sparsity"] = result.node_sparsity
        metrics[f"{metric_key_prefix}_n_edges"] = result.n_edges
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

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
    """Every logged step, one JSON line in the output dir's log.jsonl.

    On resume, lines of steps after the checkpoint (logged by the interrupted run and
    about to be logged again) are dropped first, so the file reads as one run's. Wall-
    clock figures (`*_runtime`, `*_per_second`) go to prune.log only, and the closing
    `train_loss` is the mean loss over the whole logged run (the Trainer's covers only
    the steps since the last start): log.jsonl is the same for the same seed and
    command, interrupted or not."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            lines = self.path.read_text().splitlines()
            keep = [line for line in lines if line.strip() and _logged_step(line) <= state.global_step]
            if len(keep) != len(lines):
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(line + "\n" for line in keep))
                os.replace(tmp, self.path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if not k.endswith(("_runtime", "_per_second"))}
        if state.is_world_process_zero and "train_loss" in logs and self.path.exists():
            logs["train_loss"] = self.mean_logged_loss(logs["train_loss"])
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


    def mean_logged_loss(self, default: float) -> float:
        """Σ loss × steps it covers / steps, over the logged training rows."""
        total = covered = 0.0
        previous = 0
        for line in self.path.read_text().splitlines():
            row = json.loads(line)
            if "loss" in row and "step" in row:
                total += row["loss"] * (row["step"] - previous)
                covered += row["step"] - previous
                previous = row["step"]
        return total / covered if covered else default


def _logged_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line of a killed run: dropped


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
        flush_denormals_in_all_threads()
        reuse_freed_memory()


def flush_denormals_in_all_threads() -> bool:
    """`torch.set_flush_denormal(True)` in the calling thread and in every OpenMP
    intra-op worker. The flag (FTZ/DAZ in MXCSR) is per thread: a worker thread
    inherits it only if created after it was set, so once the pool exists (any earlier
    parallel op in the process) the workers would compute their share of each
    kernel with denormals while the main thread flushes them, and results would
    depend on what the process ran before. Here every thread of the pool runs the
    call itself, in one parallel region of torch's own libgomp. Returns whether the
    flag is known to be set in every worker (False if no libgomp is found: then
    torch's threads are not OpenMP's, and only the calling thread is set)."""
    torch.set_flush_denormal(True)
    n = torch.get_num_threads()
    if n <= 1:
        return True
    gomp = _torch_libgomp()
    if gomp is None:
        return False
    import ctypes

    body_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    def body(_):
        torch.set_flush_denormal(True)

    callback = body_type(body)
    gomp.GOMP_parallel.argtypes = [body_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp.GOMP_parallel.restype = None
    gomp.GOMP_parallel(callback, None, n, 0)
    return True


def _torch_libgomp():
    """The OpenMP runtime torch's intra-op threads come from, if it is already loaded in
    this process (libgomp, or libiomp's GOMP-compatible entry points), else None: never
    a second runtime with a pool of its own."""
    import ctypes

    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    loaded = sorted({line.split()[-1] for line in maps if "/lib" in line and ("libgomp" in line or "libiomp" in line)})
    for path in loaded:
        try:
            lib = ctypes.CDLL(path)
            lib.GOMP_parallel  # noqa: B018 - the entry point must exist
            return lib
        except (OSError, AttributeError):
            continue
    return None


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
    """Log to `output_dir/filename` and the console. The handlers of an earlier run in
    the same process are removed first (no duplicate lines, no stale streams)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in ("edge_pruning", "transformers"):
        log = logging.getLogger(name)
        for old in [h for h in log.handlers if getattr(h, "_edge_pruning_run", False)]:
            log.removeHandler(old)
            old.close()
    handler = logging.FileHandler(output_dir / filename)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    for h in (handler, console):
        h._edge_pruning_run = True
    for name in ("edge_pruning", "transformers"):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    logger.addHandler(console)


# Flags of the original command lines that transformers renamed since.
RENAMED_FLAGS = {"--evaluation_strategy": "--eval_strategy"}


def _rename_flags(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        out.append(RENAMED_FLAGS.get(name, name) + eq + value if name in RENAMED_FLAGS else arg)
    return out


def parse_args(argv: list[str] | None, defaults: dict | None = None) -> tuple[PruningArguments, TrainingArguments]:
    """Our flags, the original scripts' (with their defaults for this entry point:
    `defaults`) and every `Seq2SeqTrainingArguments` flag, as the original parsed them."""
    parser = HfArgumentParser((PruningArguments, Seq2SeqTrainingArguments))
    if defaults:
        parser.set_defaults(**defaults)
    argv = _rename_flags(sys.argv[1:] if argv is None else [str(a) for a in argv])
    pargs, targs = parser.parse_args_into_dataclasses(args=argv)
    targs.remove_unused_columns = False
    if targs.report_to in ("all", ["all"]):
        targs.report_to = []
    drop_unavailable_wandb(targs)
    if pargs.zero_ablation:
        if pargs.ablation not in ("interchange", "zero"):
            raise ValueError(f"--zero_ablation contradicts --ablation {pargs.ablation}")
        pargs.ablation = "zero"
    if pargs.use_auth_token is not None and pargs.token is None:
        pargs.token = pargs.use_auth_token
    check_schedule(pargs.start_edge_sparsity, pargs.target_edge_sparsity, pargs.warmup_type, "edge")
    check_schedule(pargs.start_node_sparsity, pargs.target_node_sparsity, pargs.warmup_type, "node")
    if pargs.ablation not in ("interchange", "zero", "mean"):
        raise ValueError(f"--ablation must be interchange, zero or mean, got {pargs.ablation!r}")
    if pargs.sparsity_penalty not in ("sampled", "expected"):
        raise ValueError(f"--sparsity_penalty must be sampled or expected, got {pargs.sparsity_penalty!r}")
    if targs.max_steps == 0 or (targs.max_steps < 0 and targs.num_train_epochs <= 0):
        raise ValueError("--max_steps (or --num_train_epochs) must be > 0")
    if targs.max_steps > 0 and pargs.num_sparsity_warmup_steps > targs.max_steps:
        raise ValueError("--num_sparsity_warmup_steps exceeds --max_steps: the target would never be reached")
    for name in ("edge_learning_rate", "node_learning_rate", "reg_edge_learning_rate", "reg_node_learning_rate"):
        if getattr(pargs, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(pargs, name)}")
    return pargs, targs


def drop_unavailable_wandb(targs: TrainingArguments) -> None:
    """The original scripts say `WANDB_MODE=disabled ... --report_to wandb`: without
    wandb installed, or with it disabled, report to nothing rather than fail."""
    report_to = targs.report_to if isinstance(targs.report_to, list) else [targs.report_to]
    if "wandb" not in report_to:
        return
    import importlib.util

    if os.environ.get("WANDB_MODE", "").lower() == "disabled" or importlib.util.find_spec("wandb") is None:
        logger.info("--report_to wandb: wandb is disabled or not installed; not reporting to it")
        targs.report_to = [r for r in report_to if r != "wandb"]


def prepare_masks(model, pargs: PruningArguments, seed: int, missing: set[str] | None = None) -> None:
    """Before training: reset the masks as the original did (log_alpha ~ N(10, 0.01),
    λ = 0), unless --keep_masks, which resets only those the checkpoint lacked
    (`missing`: parameter names under `circuit_masks`, None for all). Drawn right after
    re-seeding and in a fixed order, so that they do not depend on what or in which
    order the loader drew (it initialises missing keys in set order, which varies with
    the process's string hashing). Then the penalty's sparsity, and λ1 off without the
    linear term. Call after `freeze_model_weights`."""
    masks = model.circuit_masks
    reset = None if not pargs.keep_masks else (missing if missing is not None else set())
    set_seed(seed)
    with torch.no_grad():
        for name in ("edge_log_alphas", "node_log_alphas"):
            if reset is None or name in reset:
                getattr(masks, name).normal_(l0.INIT_MEAN, l0.INIT_STD)
        for name, lam in masks.named_parameters():
            if name.startswith("sparsity_lambda") and (reset is None or name in reset):
                lam.zero_()
    masks.sparsity_penalty = _sparsity_penalty(pargs.sparsity_penalty)
    if pargs.disable_linear_reg_term:
        with torch.no_grad():
            for lam in (masks.sparsity_lambda_edges_1, masks.sparsity_lambda_nodes_1):
                lam.zero_()
                lam.requires_grad_(False)


def _sparsity_penalty(name: str):
    try:
        from .circuit import SparsityPenalty
    except ImportError:
        return name
    return SparsityPenalty(name)


def hub_kwargs(pargs: PruningArguments) -> dict:
    out = {}
    if pargs.cache_dir:
        out["cache_dir"] = pargs.cache_dir
    if pargs.model_revision and pargs.model_revision != "main":
        out["revision"] = pargs.model_revision
    if pargs.token:
        out["token"] = pargs.token
    return out


def same_checkpoint(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return True
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return a.rstrip("/") == b.rstrip("/")


def train_masks(
    model,
    task: Task,
    train: list[Encoded],
    pad_id: int,
    pargs: PruningArguments,
    targs: TrainingArguments,
    tokenizer=None,
    callbacks: list[TrainerCallback] | None = None,
    evals: list[Encoded] | None = None,
    reference=None,
):
    """Train a loaded model's masks (resuming where a complete checkpoint exists) and
    save it atomically. Returns the trainer and the mean states of mean ablation."""
    output_dir = Path(targs.output_dir)
    mean_states = None
    if pargs.ablation == "mean":
        from .ablation import mean_writer_states

        mean_states = mean_writer_states(reference or model, train, pad_id, pargs.eval_batch_size or targs.per_device_eval_batch_size)
    graph = model.circuit_graph
    logger.info(f"pruning {task.name}: {len(train)} train examples, {graph.n_edges} edges, {graph.n_writers} nodes")
    evaluating = str(getattr(targs.eval_strategy, "value", targs.eval_strategy)) != "no"
    if evaluating and not evals:
        raise ValueError(f"--eval_strategy {targs.eval_strategy} needs validation examples (--eval_split)")
    trainer = EdgePruningTrainer(
        model=model,
        args=targs,
        train_dataset=EncodedDataset(train),
        eval_dataset=EncodedDataset(evals) if evaluating else None,
        data_collator=lambda examples: collate(examples, pad_id).as_dict(),  # the Trainer moves dicts
        task=task,
        pruning_args=pargs,
        mean_states=mean_states,
        reference=reference,
        pad_id=pad_id,
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


def load_for_pruning(arch: str, path: str, pargs: PruningArguments, bf16: bool):
    """A circuit model to prune or to serve as the reference, and the names of the mask
    parameters its checkpoint lacked: fp32 whatever the checkpoint's dtype, so that
    masks start from an fp32 N(10, 0.01); with --bf16 the frozen weights (and so the
    activations) are bf16, the masks stay fp32."""
    model, info = load_model(
        arch, path, with_embedding_nodes=pargs.with_embedding_nodes, dtype=torch.float32,
        ignore_mismatched_sizes=pargs.ignore_mismatched_sizes, output_loading_info=True, **hub_kwargs(pargs),
    )  # fmt: skip
    if bf16:
        model.to(torch.bfloat16)
        model.circuit_masks.float()
    model.freeze_model_weights()
    return model, missing_mask_names(info)


def missing_mask_names(info: dict) -> set[str]:
    """Names (under circuit_masks) of the mask parameters a checkpoint lacked."""
    marker = "circuit_masks."
    return {k.split(marker, 1)[1] for k in info.get("missing_keys", ()) if marker in k}


def prune_main(
    arch: str, task_name: str, argv: list[str] | None = None, callbacks: list[TrainerCallback] | None = None
) -> CircuitEvaluation:
    """Entry point of every `src/prune/<arch>_<task>.py` script; `callbacks` are added
    to the Trainer's."""
    pargs, targs = parse_args(argv, original_defaults(arch, task_name))
    output_dir = Path(targs.output_dir)
    setup_logging(output_dir, "prune.log")
    flush_denormals_on_cpu(targs)
    task = get_task(task_name)
    set_seed(targs.seed)
    model, missing = load_for_pruning(arch, pargs.initialize_from, pargs, targs.bf16)
    prepare_masks(model, pargs, targs.seed, missing)
    reference = None
    if not same_checkpoint(pargs.ref_initialize_from, pargs.initialize_from):
        if targs.fsdp:
            raise ValueError("--ref_initialize_from other than --initialize_from is not supported with FSDP")
        reference = load_for_pruning(arch, pargs.ref_initialize_from, pargs, targs.bf16)[0].eval()
        if reference.circuit_graph.n_edges != model.circuit_graph.n_edges:
            raise ValueError(f"--ref_initialize_from {pargs.ref_initialize_from} has another graph than --initialize_from")
        reference.to(targs.device)
    from .cli import load_tokenizer

    tokenizer = load_tokenizer(pargs.tokenizer, pargs.ref_initialize_from, pargs.initialize_from)
    pad_id = pad_token_id(tokenizer)
    train = encode_split(task, tokenizer, pargs.dataset_path, pargs.train_split, pargs.max_seq_length, pargs.max_train_samples)
    evals = encode_split(task, tokenizer, pargs.dataset_path, pargs.eval_split, pargs.max_seq_length, pargs.max_eval_samples)
    check_seq_length(train, pargs.seq_length, pargs.train_split)
    check_seq_length(evals, pargs.seq_length, pargs.eval_split)
    trainer, mean_states = train_masks(
        model, task, train, pad_id, pargs, targs, tokenizer, callbacks, evals=evals, reference=reference
    )
    # Every rank evaluates (under FSDP each forward is collective); rank 0 writes.
    result = evaluate_circuit(
        model,
        task,
        evals,
        pargs.eval_split,
        pargs.eval_batch_size or targs.per_device_eval_batch_size,
        pad_id,
        ablation=pargs.ablation,
        mean_states=mean_states,
    )
    if trainer.is_world_process_zero():
        result.to_json(output_dir / "eval_results.json")
        save_edges_json(output_dir / "edges.json", model.get_edges())
        (output_dir / "pruning_args.json").write_text(json.dumps(dataclasses.asdict(pargs), indent=2))
        logger.info(result.summary())
    return result
