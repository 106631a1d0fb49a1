"""The HF Trainer of a pruning run: it trains only masks and λs, evaluates the circuit
during training, stops on a non-finite step and marks checkpoints complete."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..ablation import Ablation, mean_writer_states
from ..errors import NonFiniteLossError
from ..evaluation import evaluate_circuit
from ..sparsity import target_at_step
from ..tasks import Batch, Encoded, Task, collate
from .args import PruningArguments
from .cache import FixedPassCache, build_fixed_pass_cache, default_budget_bytes
from .checkpoints import last_complete_checkpoint, mark_complete, save_atomically
from .fsdp import average_mask_grads, keep_masks_out_of_fsdp
from .logs import JsonlLogCallback
from .loss import mask_optimizer, pruning_loss, step_stats

logger = logging.getLogger("edge_pruning")


class EncodedDataset(torch.utils.data.Dataset):
    """A split's encoded examples, for the Trainer's sampler."""

    def __init__(self, examples: list[Encoded]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Encoded:
        return self.examples[i]


class IndexedDataset(EncodedDataset):
    """The training split: each example with its index, the key of the fixed-pass cache.
    The same length as the split, so the sampler draws the same order."""

    def __getitem__(self, i: int) -> tuple[int, Encoded]:
        return i, self.examples[i]


# The collated batch carries its examples' indices under this key (not a Batch field).
INDEX_KEY = "example_index"


def collate_indexed(items: list[tuple[int, Encoded]], pad_id: int) -> dict[str, torch.Tensor]:
    batch = collate([e for _, e in items], pad_id).as_dict()
    batch[INDEX_KEY] = torch.tensor([i for i, _ in items], dtype=torch.long)
    return batch


class EdgePruningTrainer(Trainer):
    """Trains masks and λs; the λ groups maximise the loss (AdamW `maximize=True`).

    With an eval dataset (--eval_strategy steps|epoch) it evaluates the circuit on the
    validation split during training, binarised at its current sparsity as at the end.
    A non-finite loss or mask gradient stops the run before that step's update.

    The fixed passes (reference logits, corrupted writer states) of the training set
    are computed once, in the first step, when they fit the budget (`pruning.cache`)."""

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
        self.fixed_cache: FixedPassCache | None = None
        self.fixed_cache_decided = False
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

    def fixed_pass_cache(self, model) -> FixedPassCache | None:
        """The training set's fixed passes, built at the first call (inside the run's
        first step, so through the forward and mixed precision every step uses), or
        None where caching is off, cannot be exact, or does not fit (logged)."""
        if self.fixed_cache_decided:
            return self.fixed_cache
        self.fixed_cache_decided = True
        p = self.pargs
        why_not = None
        if not p.cache_fixed_passes:
            why_not = "--no_cache_fixed_passes"
        elif self.is_fsdp_enabled:
            why_not = "FSDP (every forward is collective, and the ranks hold different batches)"
        if why_not:
            logger.info(f"fixed passes computed every step: {why_not}")
            return None
        full_model = self.reference if self.reference is not None else model
        device = next(full_model.parameters()).device
        budget = default_budget_bytes(device) if p.fixed_pass_cache_gib is None else int(p.fixed_pass_cache_gib * 2**30)
        self.fixed_cache = build_fixed_pass_cache(
            full_model,
            self.train_dataset.examples,
            self.pad_id,
            p.ablation,
            p.eval_batch_size or self.args.per_device_eval_batch_size,
            budget,
            torch.bfloat16 if p.fixed_pass_cache_bf16 else None,
        )
        return self.fixed_cache

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target_edge, target_node = self.targets()
        inputs = dict(inputs)  # the Trainer moves the collator's dicts
        index = inputs.pop(INDEX_KEY, None)
        batch = Batch.of(inputs)
        cache = self.fixed_pass_cache(model) if index is not None else None
        loss, kl, out = pruning_loss(
            model,
            self.task,
            batch,
            target_edge,
            None if self.pargs.disable_node_loss else target_node,
            self.pargs.ablation,
            self.mean_states,
            reference=self.reference,
            skip_node_loss_above_target=self.pargs.stop_optimizing_node_if_higher_sparsity,
            fixed=None if cache is None else cache.lookup(index, batch),
        )
        self.last_stats = step_stats(kl, out, model.circuit_masks, target_edge, target_node)
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs:
            logs = {**logs, **{k: round(v, 6) for k, v in self.last_stats.items()}}
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The circuit's validation metrics now (KL, task metrics, sparsities), from the
        same evaluation loop as the final one; the masks' thresholds are restored after."""
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
            mark_complete(folder, self.state.global_step)


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
    if pargs.ablation is Ablation.MEAN:
        mean_states = mean_writer_states(reference or model, train, pad_id, pargs.eval_batch_size or targs.per_device_eval_batch_size)
    graph = model.circuit_graph
    logger.info(f"pruning {task.name}: {len(train)} train examples, {graph.n_edges} edges, {graph.n_writers} nodes")
    evaluating = str(getattr(targs.eval_strategy, "value", targs.eval_strategy)) != "no"
    if evaluating and not evals:
        raise ValueError(f"--eval_strategy {targs.eval_strategy} needs validation examples (--eval_split)")
    trainer = EdgePruningTrainer(
        model=model,
        args=targs,
        train_dataset=IndexedDataset(train),
        eval_dataset=EncodedDataset(evals) if evaluating else None,
        data_collator=lambda items: collate_indexed(items, pad_id),
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
