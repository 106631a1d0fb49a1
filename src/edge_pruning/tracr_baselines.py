"""Every method's circuit against the Tracr ground truth: precision and recall of the
top-|ground truth| edges, and the ROC (AUC) of the edge scores, with zero ablation.
ACDC's ROC is its τ sweep (one circuit per τ), as in the ACDC paper; its precision and
recall are those of the circuit at `--acdc-tau`. Mask methods (Edge Pruning, UGS) are
scored by their log_alphas.

    python src/eval/tracr_baselines.py [--ep-runs reverse=DIR ...] [--ugs-runs reverse=DIR ...] -o OUT
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .attribution import METHODS, edge_attribution
from .selection import top_n_edges


# ACDC's τ sweep: four per decade from 1e-7 to 1.
ACDC_TAUS = [10 ** (k / 4) for k in range(-28, 1)]


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


def acdc_sweep(task_name: str, model, task, examples, truth: torch.Tensor, taus: list[float], tau: float) -> GroundTruthScore:
    """ACDC at every τ (KL, zero ablation, all examples): the ROC through the (FPR, TPR)
    of each circuit, from (0, 0) to (1, 1); precision/recall of the circuit at `tau`."""
    from .ablation import Ablation
    from .acdc import ACDCConfig, ACDCMetric, CircuitMetric, run_acdc

    graph = model.circuit_graph
    valid, truth = graph.edge_valid, truth.bool() & graph.edge_valid
    metric = CircuitMetric(model, task, examples, ACDCMetric.KL, Ablation.ZERO, 64, model.config.pad_token_id)
    pos, neg = int(truth.sum()), int((valid & ~truth).sum())
    points, chosen = [(0.0, 0.0), (1.0, 1.0)], None
    for t in sorted(set(taus) | {tau}):
        config = ACDCConfig(t, ACDCMetric.KL, Ablation.ZERO, len(examples), graph.n_edges)
        kept = run_acdc(model, metric, config, show_progress=False).current
        points.append((int((kept & ~truth).sum()) / neg, int((kept & truth).sum()) / pos))
        if t == tau:
            chosen = kept
    points = sorted(set(points))
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:]))
    hits, found = int((chosen & truth).sum()), int(chosen.sum())
    return GroundTruthScore(task_name, f"acdc (τ={tau:g})", pos, found, hits / max(found, 1), hits / pos, auc, points)


def plot_rocs(results: list[GroundTruthScore], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r.task for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    for ax, name in zip(axes[0], tasks):
        for r in (r for r in results if r.task == name):
            xs, ys = zip(*r.roc)
            ax.plot(xs, ys, "o-" if r.method.startswith("acdc") else "-", ms=3, drawstyle="default", label=f"{r.method} ({r.roc_auc:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.6)
        ax.set(title=f"{name}: ground truth vs every method", xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tracr_baselines_main(argv: list[str] | None = None) -> list[GroundTruthScore]:
    from . import l0
    from .circuit import load_edges_json
    from .compare import load_mask_parameters
    from .tracr_pruning import load_tracr_model
    from .tracr_tasks import get_tracr_task

    p = argparse.ArgumentParser(description="EAP, EAP-IG's menu, ACDC, Edge Pruning and UGS against the Tracr ground truth")
    p.add_argument("--tasks", nargs="*", default=["reverse", "xproportion"])
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--ep-runs", nargs="*", default=[], help="TASK=DIR: pruned Tracr runs (their log_alphas are the scores)")
    p.add_argument("--ugs-runs", nargs="*", default=[], help="TASK=DIR: Tracr runs pruned with --mask_sampler ugs")
    p.add_argument("--acdc", action="store_true", help="also ACDC, over a τ sweep (its ROC)")
    p.add_argument("--acdc-taus", type=float, nargs="+", default=ACDC_TAUS, help="ACDC's τ sweep (default 1e-7 ... 1)")
    p.add_argument("--acdc-tau", type=float, default=1e-3, help="the τ whose circuit gives ACDC's precision and recall")
    p.add_argument("--plot", action="store_true", help="also draw the ROC curves (roc.png)")
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args(argv)
    runs = {}
    for flag, method in (("ep_runs", "edge-pruning"), ("ugs_runs", "ugs")):
        for item in getattr(args, flag):
            if "=" not in item:
                raise ValueError(f"--{flag.replace('_', '-')} takes TASK=DIR, got {item!r}")
            task_name, folder = item.split("=", 1)
            runs.setdefault(task_name, []).append((method, folder))
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
        if args.acdc:
            results.append(acdc_sweep(name, model, task, examples, truth, args.acdc_taus, args.acdc_tau))
        for method, folder in runs.get(name, []):
            load_mask_parameters(model, folder)
            scores = l0.soft_mask(model.circuit_masks.edge_log_alphas).float() * graph.edge_valid
            edges_file = Path(folder) / "edges.json"
            chosen = graph.edge_matrix(load_edges_json(edges_file)) if edges_file.exists() else None
            results.append(score_against_truth(name, method, graph, scores, truth, chosen))
    (out / "tracr_ground_truth_scores.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    if args.plot:
        plot_rocs(results, out / "roc.png")
    print(f"{'task':<12} {'method':<24} {'|GT|':>5} {'found':>5} {'precision':>9} {'recall':>7} {'ROC AUC':>8}")
    for r in results:
        print(
            f"{r.task:<12} {r.method:<24} {r.n_ground_truth:>5} {r.n_found:>5} "
            f"{r.precision:>9.3f} {r.recall:>7.3f} {r.roc_auc:>8.3f}"
        )
    return results
