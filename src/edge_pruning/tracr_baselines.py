"""Every method's circuit against the Tracr ground truth: precision and recall of the
top-|ground truth| edges, and the ROC (AUC) of the edge scores, with zero ablation.

    python src/eval/tracr_baselines.py [--ep-runs reverse=DIR xproportion=DIR] -o OUT
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .attribution import METHODS, edge_attribution
from .selection import top_n_edges


@dataclass
class GroundTruthScore:
    task: str
    method: str
    n_ground_truth: int
    n_found: int  # the method's circuit: its own (Edge Pruning) or the top-|ground truth| edges
    precision: float
    recall: float
    roc_auc: float  # scores (by magnitude) separating ground-truth edges from the rest
    roc: list[tuple[float, float]]  # (false positive rate, true positive rate)


def roc_curve(scores: torch.Tensor, labels: torch.Tensor) -> tuple[list[tuple[float, float]], float]:
    """ROC points and AUC of `scores` for binary `labels` (ties share a rank)."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], labels[order].float()
    pos, neg = y.sum().item(), (1 - y).sum().item()
    points, tp, fp = [(0.0, 0.0)], 0.0, 0.0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            tp += y[j].item()
            fp += 1 - y[j].item()
            j += 1
        points.append((fp / neg, tp / pos))
        i = j
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:]))
    return points, auc


def score_against_truth(
    task: str, method: str, graph, scores: torch.Tensor, truth: torch.Tensor, chosen: torch.Tensor | None = None
) -> GroundTruthScore:
    """Precision/recall of `chosen` (default: the top-|ground truth| edges by |score|,
    where the two are equal) and the ROC of |score|."""
    valid = graph.edge_valid
    n = int(truth.sum())
    chosen = (top_n_edges(graph, scores, n) if chosen is None else chosen).bool() & valid
    hits = int((chosen & truth.bool()).sum())
    found = int(chosen.sum())
    points, auc = roc_curve(scores.abs()[valid].float(), truth.bool()[valid])
    return GroundTruthScore(task, method, n, found, hits / max(found, 1), hits / n, auc, points)


def tracr_baselines_main(argv: list[str] | None = None) -> list[GroundTruthScore]:
    from . import l0
    from .circuit import load_edges_json
    from .compare import load_mask_parameters
    from .tracr_pruning import load_tracr_model
    from .tracr_tasks import get_tracr_task

    p = argparse.ArgumentParser(description="EAP / EAP-IG / Edge Pruning against the Tracr ground truth")
    p.add_argument("--tasks", nargs="*", default=["reverse", "xproportion"])
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--ep-runs", nargs="*", default=[], help="TASK=DIR: pruned Tracr runs (their log_alphas are the scores)")
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args(argv)
    ep_runs = dict(item.split("=", 1) for item in args.ep_runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[GroundTruthScore] = []
    for name in args.tasks:
        task = get_tracr_task(name)
        model = load_tracr_model(task.model_path)
        model.freeze_model_weights()
        graph = model.circuit_graph
        truth = graph.edge_matrix(task.ground_truth_edges())
        vocab = model.config.token_to_id()
        examples = task.encode_rows(task.load_split(None, "test"), vocab)
        for method in args.methods:
            scores = edge_attribution(
                model, task, examples, method, steps=args.ig_steps, batch_size=64,
                pad_id=model.config.pad_token_id, show_progress=False, ablation="zero",
            ).scores  # fmt: skip
            results.append(score_against_truth(name, method, graph, scores, truth))
        if name in ep_runs:
            load_mask_parameters(model, ep_runs[name])
            scores = l0.soft_mask(model.circuit_masks.edge_log_alphas).float() * graph.edge_valid
            edges_file = Path(ep_runs[name]) / "edges.json"
            chosen = graph.edge_matrix(load_edges_json(edges_file)) if edges_file.exists() else None
            results.append(score_against_truth(name, "edge-pruning", graph, scores, truth, chosen))
    (out / "tracr_ground_truth_scores.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(f"{'task':<12} {'method':<20} {'|GT|':>5} {'found':>5} {'precision':>9} {'recall':>7} {'ROC AUC':>8}")
    for r in results:
        print(
            f"{r.task:<12} {r.method:<20} {r.n_ground_truth:>5} {r.n_found:>5} "
            f"{r.precision:>9.3f} {r.recall:>7.3f} {r.roc_auc:>8.3f}"
        )
    return results
