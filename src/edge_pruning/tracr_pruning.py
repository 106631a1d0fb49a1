"""Pruning the Tracr models: the shared loop, with Tracr's model, data and defaults.

`prune_main` loads a Hugging Face checkpoint, a tokenizer and HF/custom datasets;
a Tracr model is a `tracrx` pickle with its own vocabulary and JSONL splits. This
module swaps only those inputs and otherwise uses the pieces of `pruning.py` and
`evaluation.py` (flags, Trainer, optimizer, logging, checkpoints, evaluation). The
circuit is read off the trained masks as the original Tracr scripts did (see
`tracr_circuit_edges`), evaluated on every input and compared with the task's
ground truth.

Defaults are the paper's hyperparameters, taken from the original
`run_scripts/tracr_{reverse,xproportion}.sh`; any flag given overrides them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import set_seed

from . import l0
from .circuit import save_edges_json
from .evaluation import CircuitEvaluation, evaluate_circuit
from .pruning import flush_denormals_on_cpu, parse_args, setup_logging, train_masks
from .tasks import REPO_ROOT, Encoded, TaskDataError
from .tracr_tasks import TracrTask, get_tracr_task

logger = logging.getLogger("edge_pruning")

# Flags of the original run scripts. "--warmup_steps" is the learning-rate warm-up
# of the linear schedule; "--num_sparsity_warmup_steps" that of the sparsity target.
PAPER_ARGS: dict[str, list[str]] = {
    "reverse": [
        "--max_steps", "6000", "--warmup_steps", "1500", "--num_sparsity_warmup_steps", "5900",
        "--edge_learning_rate", "0.03", "--node_learning_rate", "0.03",
        "--reg_edge_learning_rate", "0.001", "--reg_node_learning_rate", "0.001",
        "--target_edge_sparsity", "1.02", "--target_node_sparsity", "0.1", "--disable_node_loss", "true",
    ],
    "xproportion": [
        "--max_steps", "720", "--warmup_steps", "96", "--num_sparsity_warmup_steps", "640",
        "--edge_learning_rate", "1", "--node_learning_rate", "1",
        "--reg_edge_learning_rate", "0.0001", "--reg_node_learning_rate", "0.0001",
        "--target_edge_sparsity", "0.92", "--target_node_sparsity", "0.4",
    ],
}  # fmt: skip
COMMON_ARGS = [
    "--ablation", "zero", "--per_device_train_batch_size", "16", "--eval_batch_size", "16",
    "--start_edge_sparsity", "0", "--start_node_sparsity", "0", "--warmup_type", "linear",
    "--logging_steps", "20", "--save_steps", "1000", "--save_total_limit", "1", "--report_to", "none",
]  # fmt: skip


def default_argv(task: TracrTask) -> list[str]:
    return [
        "--initialize_from", str(task.model_path),
        "--output_dir", str(REPO_ROOT / "data" / "runs" / f"erazr-{task.name}"),
        *COMMON_ARGS,
        *PAPER_ARGS[task.name],
    ]  # fmt: skip


def load_tracr_model(path: str | os.PathLike):
    """A `tracrx` export (*.pkl) or a saved ErazrModel checkpoint."""
    from modeling.modeling_erazr import ErazrModel

    if str(path).endswith(".pkl"):
        return ErazrModel.from_tracr(path)
    return ErazrModel.from_pretrained(path, dtype=torch.float32)


@dataclass
class GroundTruthComparison:
    """A recovered circuit against the ground truth, edge by edge."""

    task: str
    n_found: int
    n_ground_truth: int
    n_correct: int
    precision: float
    recall: float
    exact: bool
    missing: list[tuple[str, str]]
    extra: list[tuple[str, str]]

    def summary(self) -> str:
        lines = [
            f"ground truth {self.task}: {self.n_correct} of {self.n_found} edges found are true, "
            f"{self.n_correct} of {self.n_ground_truth} true edges found "
            f"(precision {self.precision:.3f}, recall {self.recall:.3f}); "
            + ("exact match" if self.exact else "NOT an exact match")
        ]
        lines += [f"  missing {w} -> {r}" for w, r in self.missing]
        lines += [f"  extra   {w} -> {r}" for w, r in self.extra]
        return "\n".join(lines)


def compare_with_ground_truth(
    task_name: str, found: list[tuple[str, str]], truth: list[tuple[str, str]]
) -> GroundTruthComparison:
    found_set, truth_set = set(found), set(truth)
    correct = len(found_set & truth_set)
    return GroundTruthComparison(
        task=task_name,
        n_found=len(found_set),
        n_ground_truth=len(truth_set),
        n_correct=correct,
        precision=correct / len(found_set) if found_set else 1.0,
        recall=correct / len(truth_set) if truth_set else 1.0,
        exact=found_set == truth_set,
        missing=sorted(truth_set - found_set),
        extra=sorted(found_set - truth_set),
    )


@dataclass
class TracrPruningResult:
    evaluation: CircuitEvaluation
    comparison: GroundTruthComparison
    edges: list[tuple[str, str]]


# The original Tracr scripts binarised deterministic masks at this threshold.
ORIGINAL_THRESHOLD = 0.005


def tracr_circuit_edges(model) -> list[tuple[str, str]]:
    """The circuit as the original Tracr scripts read it off the trained masks.

    They computed the deterministic masks per mask tensor, which for one-head
    models is per reader (and per node): each reader zeroes its own round(expected
    zeros) smallest masks, and a mask counts when above 0.005. Edges of removed
    nodes are dropped. Why not the global rules: summed over all 94 edges of
    reverse, the leftover P(z > 0) of the pruned edges adds phantom edges to the
    global count, and the threshold search used for GPT-2 (keep 1 - mean soft
    mask) drops true edges whose masks are not saturated (measured over seeds:
    reverse recovered exactly by 6/10 per reader, 3/10 global support, 5/10
    threshold search).
    """
    masks = model.circuit_masks
    graph = model.circuit_graph
    valid = graph.edge_valid
    edge_la = masks.edge_log_alphas.detach().cpu()
    edges = torch.zeros(edge_la.shape, dtype=torch.bool)
    for r in range(graph.n_readers):
        edges[r, valid[r]] = l0.deterministic_mask(edge_la[r, valid[r]]) > ORIGINAL_THRESHOLD
    nodes = torch.cat([l0.deterministic_mask(la) for la in masks.node_log_alphas.detach().cpu().split(1)])
    return graph.edge_list(graph.effective_edges(edges, nodes > ORIGINAL_THRESHOLD))


def encode_tracr_split(task: TracrTask, vocab: dict, dataset_path, split: str, limit: int | None) -> list[Encoded]:
    rows = task.load_split(dataset_path, split)[:limit]
    if not rows:
        raise TaskDataError(f"split {split!r} of {dataset_path or task.default_dataset} is empty")
    return task.encode_rows(rows, vocab)


def tracr_prune_main(task_name: str, argv: list[str] | None = None) -> TracrPruningResult:
    """Entry point of `src/prune/erazr_{reverse,xproportion}.py`."""
    task = get_tracr_task(task_name)
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    pargs, targs = parse_args([*default_argv(task), *argv])
    if pargs.ablation == "interchange":
        raise ValueError("--ablation interchange needs corrupted inputs, which the Tracr tasks lack; use zero or mean")
    output_dir = Path(targs.output_dir)
    setup_logging(output_dir, "prune.log")
    flush_denormals_on_cpu(targs)
    if targs.device.type == "cpu":
        # Tracr's matrices are tiny: intra-op threads only add synchronisation (a
        # step took 20x longer with 2 threads than with 1 on a busy 2-core machine).
        torch.set_num_threads(1)
    set_seed(targs.seed)  # the masks' N(10, 0.01) initialisation is drawn when the model is built
    model = load_tracr_model(pargs.initialize_from)
    model.freeze_model_weights()
    vocab = model.config.token_to_id()
    pad_id = model.config.pad_token_id
    train = encode_tracr_split(task, vocab, pargs.dataset_path, pargs.train_split, pargs.max_train_samples)
    evals = encode_tracr_split(task, vocab, pargs.dataset_path, pargs.eval_split, pargs.max_eval_samples)
    trainer, mean_states = train_masks(model, task, train, pad_id, pargs, targs)  # masks saved before binarising
    edges = tracr_circuit_edges(model)
    model.load_edges(edges)
    result = evaluate_circuit(
        model, task, evals, pargs.eval_split, pargs.eval_batch_size, pad_id,
        ablation=pargs.ablation, mean_states=mean_states, search_thresholds=False,
    )
    comparison = compare_with_ground_truth(task.name, edges, task.ground_truth_edges())
    if trainer.is_world_process_zero():
        result.to_json(output_dir / "eval_results.json")
        save_edges_json(output_dir / "edges.json", edges)
        (output_dir / "ground_truth_comparison.json").write_text(json.dumps(dataclasses.asdict(comparison), indent=2))
        (output_dir / "pruning_args.json").write_text(json.dumps(dataclasses.asdict(pargs), indent=2))
        logger.info(result.summary())
        logger.info("edges: " + ", ".join(f"{w} -> {r}" for w, r in edges))
        logger.info(comparison.summary())
    return TracrPruningResult(result, comparison, edges)
