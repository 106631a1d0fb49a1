"""Pruning the Tracr models: the shared loop, with Tracr's model, data and defaults.

`prune_main` loads a Hugging Face checkpoint, a tokenizer and HF/custom datasets;
a Tracr model is a `tracrx` pickle with its own vocabulary and JSONL splits. This
module swaps only those inputs and otherwise uses the `pruning` package and
`evaluation.py` (flags, Trainer, optimizer, logging, checkpoints, evaluation). The
circuit is read off the trained masks as the original Tracr scripts did (see
`tracr_circuit_edges`), evaluated on every input and compared with the task's
ground truth.

Defaults are the original scripts' (`src/prune/erazr_*.py`); the paper's
hyperparameters are passed by `run_scripts/tracr_{reverse,xproportion}.sh`, as the
original run scripts did.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainingArguments, set_seed

from . import l0
from .ablation import Ablation
from .circuit import save_edges_json
from .evaluation import CircuitEvaluation, evaluate_circuit
from .models import load_tracr_model
from .paths import RUNS_DIR
from .pruning import PruningArguments, original_defaults, parse_args, prepare_masks, run_settings, train_masks
from .tasks import TracrTask, check_seq_length, encode_tracr_split, get_tracr_task

logger = logging.getLogger("edge_pruning")

def default_args(task: TracrTask) -> dict:
    """The original script's defaults (`pruning.original_defaults`), this task's model
    and output folder, and zero ablation: our Tracr data has no corrupted inputs. The
    paper's hyperparameters are in run_scripts/tracr_{reverse,xproportion}.sh."""
    return {
        **original_defaults("erazr", task.name),
        "initialize_from": str(task.model_path),
        "output_dir": str(RUNS_DIR / f"erazr-{task.name}"),
        "ablation": "zero",
    }


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


def tracr_prune_main(task_name: str, argv: list[str] | None = None) -> TracrPruningResult:
    """Entry point of `src/prune/erazr_{reverse,xproportion}.py` and of `python -m
    edge_pruning prune --task reverse|xproportion`."""
    task = get_tracr_task(task_name)
    pargs, targs = parse_args(argv, default_args(task))
    if pargs.ablation is Ablation.INTERCHANGE:
        raise ValueError("--ablation interchange needs corrupted inputs, which the Tracr tasks lack; use zero or mean")
    # Tracr's matrices are tiny: intra-op threads only add synchronisation (a step
    # took 20x longer with 2 threads than with 1 on a busy 2-core machine).
    with run_settings(Path(targs.output_dir), "prune.log", targs, threads_on_cpu=1):
        return tracr_prune(task, pargs, targs)


def tracr_prune(task: TracrTask, pargs: PruningArguments, targs: TrainingArguments) -> TracrPruningResult:
    """One Tracr run with parsed flags, inside its process settings (`run_settings`)."""
    output_dir = Path(targs.output_dir)
    set_seed(targs.seed)  # the masks' N(10, 0.01) initialisation is drawn when the model is built
    model = load_tracr_model(pargs.initialize_from)
    model.freeze_model_weights()
    prepare_masks(model, pargs, targs.seed)
    vocab = model.config.token_to_id()
    pad_id = model.config.pad_token_id
    train = encode_tracr_split(task, vocab, pargs.dataset_path, pargs.train_split, pargs.max_train_samples)
    evals = encode_tracr_split(task, vocab, pargs.dataset_path, pargs.eval_split, pargs.max_eval_samples)
    check_seq_length(train, pargs.seq_length, pargs.train_split)
    check_seq_length(evals, pargs.seq_length, pargs.eval_split)
    # masks saved before binarising
    trainer, mean_states = train_masks(model, task, train, pad_id, pargs, targs, evals=evals)
    edges = tracr_circuit_edges(model)
    model.load_edges(edges)
    result = evaluate_circuit(
        model, task, evals, pargs.eval_split, pargs.eval_batch_size or targs.per_device_eval_batch_size, pad_id,
        ablation=pargs.ablation, mean_states=mean_states, search_thresholds=False,
    )  # fmt: skip
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
