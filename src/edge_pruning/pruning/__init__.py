"""The one pruning loop: a `transformers.Trainer` that trains only masks and λs.

Each step needs the full model on the clean input (reference distribution, no grad)
and on the corrupted input (writer states, no grad), computed once per training example
and reused when they fit the memory budget (`cache`), and runs the circuit on the clean
input with the corrupted states patched into removed edges. The loss is
KL(full || circuit) at the task's positions plus the Lagrangian sparsity terms
(method.md §4). Flags follow the original scripts; every HF `TrainingArguments`
flag works too (checkpointing, resuming, logging, bf16, FSDP).

One module per job: `args` (flags and their validation), `model` (the model to prune,
its masks reset), `loss` (the step's loss, optimizer and logged statistics),
`trainer` (the Trainer and `train_masks`), `cache` (the fixed passes), `snapshots`
(circuits at MIB's sizes during one run), `fsdp`, `checkpoints` (completion markers,
atomic save), `logs` (log.jsonl), `runtime` (process-wide settings) and `run`
(`prune_main`, one run from the command line to a checkpoint).
"""

from ..errors import NonFiniteLossError
from ..tasks import check_seq_length, encode_split, pad_token_id
from .args import RENAMED_FLAGS, PruningArguments, drop_unavailable_wandb, hub_kwargs, original_defaults, parse_args
from .checkpoints import COMPLETE_MARKER, last_complete_checkpoint, mark_complete, save_atomically
from .fsdp import MASKS_MODULE_PATTERN, average_mask_grads, keep_masks_out_of_fsdp
from .logs import JsonlLogCallback
from .loss import mask_optimizer, pruning_loss, step_stats
from .model import load_for_pruning, missing_mask_names, prepare_masks, same_checkpoint
from .run import prune, prune_main
from .runtime import flush_denormals_in_all_threads, reuse_freed_memory, run_settings
from .trainer import EdgePruningTrainer, EncodedDataset, train_masks

__all__ = [
    "COMPLETE_MARKER", "MASKS_MODULE_PATTERN", "RENAMED_FLAGS",
    "EdgePruningTrainer", "EncodedDataset", "JsonlLogCallback", "NonFiniteLossError", "PruningArguments",
    "average_mask_grads", "check_seq_length", "drop_unavailable_wandb", "encode_split",
    "flush_denormals_in_all_threads", "hub_kwargs", "keep_masks_out_of_fsdp", "last_complete_checkpoint",
    "load_for_pruning", "mark_complete", "mask_optimizer", "missing_mask_names", "original_defaults", "pad_token_id",
    "parse_args", "prepare_masks", "prune", "prune_main", "pruning_loss", "reuse_freed_memory", "run_settings",
    "same_checkpoint", "save_atomically", "step_stats", "train_masks",
]  # fmt: skip
