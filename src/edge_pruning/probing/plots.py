"""One plot per experiment: kNN accuracy per variable (attention and MLP probes,
with the unmasked block and the majority class), or, for checkpoints, the model's
accuracy and each probe's kNN accuracy across training."""

from __future__ import annotations

from pathlib import Path


def plot_results(results: dict, kind, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probes = results["probes"]
    if not probes:
        return
    kind = getattr(kind, "value", kind)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(probes)), 4.0))
    if kind == "checkpoints":
        steps = sorted({int(p["model"]) for p in probes})
        series = sorted({(p["task"], p["variable"], p["operation"]) for p in probes})
        for task, var, op in series:
            rows = sorted((int(p["model"]), p["knn_test_acc"]) for p in probes if (p["task"], p["variable"], p["operation"]) == (task, var, op))
            ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=f"kNN {var} ({op})")
        vanilla = {}
        for p in probes:
            vanilla[int(p["model"])] = p["ablation"][f"task{p['task']}"]["vanilla"]
        ax.plot(steps, [vanilla[s] for s in steps], color="black", linestyle="--", label="model test accuracy")
        ax.set_xscale("log")
        ax.set_xlabel("training step")
    else:
        labels = [f"{p['variable']}\n{p['operation']}" + (f"\ntask {p['task']}" if p["task"] else "") for p in probes]
        x = range(len(probes))
        ax.bar([i - 0.2 for i in x], [p["knn_test_acc"] for p in probes], width=0.4, label="circuit probe (masked)")
        ax.bar([i + 0.2 for i in x], [p["knn_full_model_acc"] for p in probes], width=0.4, label="unmasked block")
        ax.scatter(list(x), [p["majority_acc"] for p in probes], color="black", marker="_", s=200, label="majority class", zorder=3)
        ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("1-NN accuracy (held out)")
    ax.set_title(results.get("description", "")[:90], fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
