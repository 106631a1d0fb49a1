"""The pruning flags: ours, the original scripts' (with their defaults per entry
point) and every HF `Seq2SeqTrainingArguments` flag, parsed and validated once."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, Seq2SeqTrainingArguments, TrainingArguments

from ..ablation import Ablation
from ..circuit import SparsityPenalty
from ..sparsity import check_schedule

logger = logging.getLogger("edge_pruning")


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
    ungroup_kv: bool = field(
        default=False,
        metadata={"help": "grouped-query attention: K and V read per query head (default: per key/value head)"},
    )
    disable_linear_reg_term: bool = field(
        default=False,
        metadata={"aliases": ["--disable_linear_regularization_term"], "help": "λ1 stays 0: only λ2 (s - t)^2 remains"},
    )
    disable_node_loss: bool = field(default=False, metadata={"help": "no Lagrangian node penalty (node masks still train)"})
    sparsity_penalty: str = field(
        default="sampled", metadata={"help": "s in the penalty: sampled (1 - Σz/n, the original's) | expected (P(z > 0))"}
    )
    mask_sampler: str = field(
        default="hard_concrete",
        metadata={"help": "training masks: hard_concrete (the original's) | ugs (uniform gradient sampling, Li & Janson 2024)"},
    )
    ablation: str = field(default="interchange", metadata={"help": "interchange | zero | mean"})
    zero_ablation: bool = field(default=False, metadata={"help": "the original's name for --ablation zero"})
    keep_masks: bool = field(
        default=False,
        metadata={"help": "keep the masks and λs of a pruned --initialize_from (default: reset them, as the original)"},
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "start afresh instead of resuming"})
    eval_batch_size: int | None = field(default=None, metadata={"help": "default: --per_device_eval_batch_size"})
    cache_fixed_passes: bool = field(
        default=True,
        metadata={
            "help": "compute the training set's reference logits and corrupted writer states once, not every step, "
            "when they fit --fixed_pass_cache_gib (--no_cache_fixed_passes: every step)"
        },
    )
    fixed_pass_cache_gib: float | None = field(
        default=None, metadata={"help": "memory budget of that cache, GiB; default: half the training device's free memory"}
    )
    fixed_pass_cache_bf16: bool = field(
        default=False, metadata={"help": "store the cached writer states in bf16: half the memory, no longer exact"}
    )
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


def original_defaults(arch: str | None, task_name: str) -> dict:
    """The original script's defaults for this entry point (`arch` None, the
    architecture read off the checkpoint: `PruningArguments`' default checkpoint)."""
    edge, node = _TASK_TARGETS.get(task_name, (0.97, 0.72))
    out = {"target_edge_sparsity": edge, "target_node_sparsity": node}
    if arch in _ARCH_MODELS:
        out["initialize_from"] = _ARCH_MODELS[arch]
    if task_name in _SEQ_LENGTHS:
        out["max_seq_length"] = _SEQ_LENGTHS[task_name]
    return out


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
    `defaults`) and every `Seq2SeqTrainingArguments` flag, as the original parsed them;
    validated here, once (the ablation and the penalty become their enums)."""
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
    pargs.ablation = Ablation.parse(pargs.ablation)
    if pargs.sparsity_penalty not in ("sampled", "expected"):
        raise ValueError(f"--sparsity_penalty must be sampled or expected, got {pargs.sparsity_penalty!r}")
    pargs.sparsity_penalty = SparsityPenalty(pargs.sparsity_penalty)
    if targs.max_steps == 0 or (targs.max_steps < 0 and targs.num_train_epochs <= 0):
        raise ValueError("--max_steps (or --num_train_epochs) must be > 0")
    if targs.max_steps > 0 and pargs.num_sparsity_warmup_steps > targs.max_steps:
        raise ValueError("--num_sparsity_warmup_steps exceeds --max_steps: the target would never be reached")
    if pargs.fixed_pass_cache_gib is not None and not pargs.fixed_pass_cache_gib >= 0:
        raise ValueError(f"--fixed_pass_cache_gib must be >= 0, got {pargs.fixed_pass_cache_gib}")
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
    if os.environ.get("WANDB_MODE", "").lower() == "disabled" or importlib.util.find_spec("wandb") is None:
        logger.info("--report_to wandb: wandb is disabled or not installed; not reporting to it")
        targs.report_to = [r for r in report_to if r != "wandb"]


def hub_kwargs(pargs: PruningArguments) -> dict:
    """The hub options of the original's command lines, as `from_pretrained` keywords."""
    out = {}
    if pargs.cache_dir:
        out["cache_dir"] = pargs.cache_dir
    if pargs.model_revision and pargs.model_revision != "main":
        out["revision"] = pargs.model_revision
    if pargs.token:
        out["token"] = pargs.token
    return out
