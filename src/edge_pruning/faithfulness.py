"""Faithfulness curves: circuits of the same sizes from every method, evaluated with
the same intervention, and their area summaries.

For a circuit C, normalised faithfulness is f(C) = (m(C) - m(empty)) / (m(full) -
m(empty)) with m the task metric (logit or probability difference). `f_area` is the
area under f over the circuits' edge fractions (trapezoids, fraction on a linear axis
from the smallest to 1), higher is better; `one_minus_f_area` the area under |1 - f|,
lower is better. They are not MIB's CPR and CMD: these circuits are the top-n by
|score| for both (MIB ranks by the signed score for CPR), over all our edges, without
MIB's node pruning, and the axis is the edges counted. MIB's own are in `mib_eval`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .evaluation import batches, corrupted_states, model_logits, to_device
from .tasks import Encoded, Task, kl_divergence

# KL values below this are drawn at it (the full model's KL is 0 on a log axis).
KL_FLOOR = 1e-4
# Edge fractions (of all edges) at which circuits are compared: 0.1% ... 100%.
FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class CurvePoint:
    method: str
    n_edges: int
    edge_fraction: float
    metric: float  # task metric of the circuit (logit / probability difference)
    kl: float  # KL(full || circuit) at the scored positions
    faithfulness: float  # (m(C) - m(empty)) / (m(full) - m(empty))


@torch.no_grad()
def circuit_metric(
    model,
    task: Task,
    examples: list[Encoded],
    edges: torch.Tensor | None,
    batch_size: int,
    pad_id: int,
    ablation: str = "interchange",
    mean_states=None,
    full_cache: dict[int, torch.Tensor] | None = None,
    corrupted_cache: dict[int, torch.Tensor | None] | None = None,
) -> tuple[float, float]:
    """(mean task metric, mean KL to the full model) of the circuit `edges`
    (readers x writers 0/1; None is the full model). `full_cache`, shared across
    calls on the same examples, keeps the full model's logits per batch;
    `corrupted_cache` likewise the states removed edges carry (memory: writers x
    batch x seq x hidden per batch)."""
    device = next(model.parameters()).device
    metric_sum, kl_sum = 0.0, 0.0
    if edges is not None:
        model.set_circuit(edges)
    model.eval()
    cache = {} if full_cache is None else full_cache
    for i, batch in enumerate(batches(examples, batch_size, pad_id)):
        batch = to_device(batch, device)
        if i not in cache:
            cache[i] = model_logits(model, batch, circuit=False)
        full = cache[i]
        if edges is None:
            logits = full
        else:
            if corrupted_cache is None:
                corr_x = corrupted_states(model, batch, ablation, mean_states)
            else:
                if i not in corrupted_cache:
                    corrupted_cache[i] = corrupted_states(model, batch, ablation, mean_states)
                corr_x = corrupted_cache[i]
            logits = model_logits(model, batch, circuit=True, corr_x=corr_x)
        metric_sum += task.attribution_metric(logits, batch).sum().item()
        kl = kl_divergence(full, logits)
        valid = batch["position_valid"].float()
        kl_sum += ((kl * valid).sum(1) / valid.sum(1)).sum().item()
    return metric_sum / len(examples), kl_sum / len(examples)


def area_summaries(fractions: list[float], faithfulness: list[float]) -> dict[str, float]:
    """`f_area` (area under f) and `one_minus_f_area` (area under |1 - f|), trapezoids
    over the fractions."""
    pairs = sorted(zip(fractions, faithfulness))
    under = from_1 = 0.0
    for (x0, f0), (x1, f1) in zip(pairs, pairs[1:]):
        under += (x1 - x0) * (f0 + f1) / 2
        from_1 += (x1 - x0) * (abs(1 - f0) + abs(1 - f1)) / 2
    return {"f_area": under, "one_minus_f_area": from_1}


def save_curves(points: list[CurvePoint], summaries: dict[str, dict[str, float]], out_dir: str | os.PathLike, title: str) -> dict[str, Path]:
    """Write the table (JSON and CSV) and the plot (PNG); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "faithfulness.json", "csv": out / "faithfulness.csv", "png": out / "faithfulness.png"}
    paths["json"].write_text(json.dumps({"title": title, "points": [asdict(p) for p in points], "summaries": summaries}, indent=2))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        writer.writerows(asdict(p) for p in points)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in dict.fromkeys(p.method for p in points):
        mine = sorted((p for p in points if p.method == method), key=lambda p: p.n_edges)
        label = method + (f" (f area {summaries[method]['f_area']:.3f})" if method in summaries else "")
        axes[0].plot([p.n_edges for p in mine], [p.faithfulness for p in mine], "o-", label=label)
        axes[1].plot([p.n_edges for p in mine], [max(p.kl, KL_FLOOR) for p in mine], "o-", label=method)
    for ax, ylabel in zip(axes, ("normalised faithfulness", "KL(full || circuit)")):
        ax.set_xscale("log")
        ax.set_xlabel("edges in circuit")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    return paths


def export_scored_circuit(path: str | os.PathLike, graph, method: str, scores: torch.Tensor, chosen: torch.Tensor, meta: dict | None = None) -> None:
    """The documented exchange format: one record per edge with writer, reader,
    score and in_circuit (see docs/circuit_format.md)."""
    rows, cols = torch.nonzero(graph.edge_valid, as_tuple=True)
    edges = [
        {
            "writer": graph.writers[c].name,
            "reader": graph.readers[r].name,
            "score": float(scores[r, c]),
            "in_circuit": bool(chosen[r, c]),
        }
        for r, c in zip(rows.tolist(), cols.tolist())
    ]
    data = {"format": "edge-pruning-circuit-v1", "method": method, **(meta or {}), "n_edges_total": graph.n_edges, "n_edges_in_circuit": int(chosen.sum()), "edges": edges}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
