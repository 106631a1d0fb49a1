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
    checkpoints = kind == "checkpoints"
    width = 8.0 if checkpoints else max(6.0, 0.9 * len(probes))
    fig, axes = plt.subplots(1 if checkpoints else 2, 1, figsize=(width, 4.0 if checkpoints else 7.0), squeeze=False)
    ax = axes[0, 0]
    if checkpoints:
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
        _plot_ablations(axes[1, 0], probes, labels)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("1-NN accuracy (held out)")
    ax.set_title(results.get("description", "")[:90], fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_ablations(ax, probes: list[dict], labels: list[str]) -> None:
    """The causal test: each evaluation task's accuracy with the circuit removed, with
    random masks of its size removed (mean), and unablated."""
    tasks = sorted({t for p in probes for t in p["ablation"]})
    n = len(tasks)
    step = 0.8 / (2 * n)
    for k, task in enumerate(tasks):
        offset = -0.4 + step * (2 * k + 0.5)
        ablated = [p["ablation"].get(task, {}).get("ablated", float("nan")) for p in probes]
        randoms = [p["ablation"].get(task, {}).get("random_mean") for p in probes]
        xs = [i + offset for i in range(len(probes))]
        ax.bar(xs, ablated, width=step, label=f"{task}: circuit removed")
        ax.bar([x + step for x in xs], [r if r is not None else float("nan") for r in randoms], width=step,
               label=f"{task}: random masks removed (mean; none when the circuit is over half a layer)")  # fmt: skip
    vanilla = [max(p["ablation"][t]["vanilla"] for t in p["ablation"]) for p in probes]
    ax.scatter(range(len(probes)), vanilla, color="black", marker="_", s=200, label="unablated", zorder=3)
    ax.set_xticks(list(range(len(probes))), labels, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("task accuracy (held out)")
    ax.legend(fontsize=7)
