"""log.jsonl: one JSON line per logged step, the same for the same seed and command
whether the run was interrupted and resumed or not; training.png beside it at the end."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from transformers import TrainerCallback

from ..errors import one_line


class JsonlLogCallback(TrainerCallback):
    """Every logged step, one JSON line in the output dir's log.jsonl.

    On resume, lines of steps after the checkpoint (logged by the interrupted run and
    about to be logged again) are dropped first, so the file reads as one run's. Wall-
    clock figures (`*_runtime`, `*_per_second`) go to prune.log only, and the closing
    `train_loss` is the mean loss over the whole logged run (the Trainer's covers only
    the steps since the last start): log.jsonl is the same for the same seed and
    command, interrupted or not."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            lines = self.path.read_text().splitlines()
            keep = [line for line in lines if line.strip() and _logged_step(line) <= state.global_step]
            if len(keep) != len(lines):
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(line + "\n" for line in keep))
                os.replace(tmp, self.path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if not k.endswith(("_runtime", "_per_second"))}
        if state.is_world_process_zero and "train_loss" in logs and self.path.exists():
            logs["train_loss"] = self.mean_logged_loss(logs["train_loss"])
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    def on_train_end(self, args, state, control, **kwargs):
        # Before the final save: a plot that fails must not cost the run its checkpoint.
        if state.is_world_process_zero and self.path.exists():
            try:
                plot_training(self.path, self.path.with_name("training.png"))
            except Exception as error:  # noqa: BLE001 - any plotting failure is only a warning
                logging.getLogger("edge_pruning").warning("training.png not written: %s", one_line(error))

    def mean_logged_loss(self, default: float) -> float:
        """Σ loss × steps it covers / steps, over the logged training rows."""
        total = covered = 0.0
        previous = 0
        for line in self.path.read_text().splitlines():
            row = json.loads(line)
            if "loss" in row and "step" in row:
                total += row["loss"] * (row["step"] - previous)
                covered += row["step"] - previous
                previous = row["step"]
        return total / covered if covered else default


def _logged_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line of a killed run: dropped


# The panels of training.png: (title, log.jsonl keys, log scale).
PANELS = (
    ("KL(full || circuit)", ("kl_loss",), True),
    ("edge sparsity", ("sampled_edge_sparsity", "expected_edge_sparsity", "target_edge_sparsity"), False),
    ("node sparsity", ("sampled_node_sparsity", "expected_node_sparsity", "target_node_sparsity"), False),
    ("Lagrange multipliers", ("lambda_edges_1", "lambda_edges_2", "lambda_nodes_1", "lambda_nodes_2"), False),
)


def plot_training(log_path: Path, out_path: Path):
    """KL, sampled / expected / target sparsities and the λs against step, from
    log.jsonl, as a PNG (matplotlib's Agg canvas: no display, no global backend).
    Returns the figure; keys a run does not log are left out."""
    from matplotlib.figure import Figure

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    fig = Figure(figsize=(11, 7), layout="constrained")
    for ax, (title, keys, log_scale) in zip(fig.subplots(2, 2).flat, PANELS):
        for key in keys:
            points = [(row["step"], row[key]) for row in rows if key in row and "step" in row]
            if points:
                ax.plot(*zip(*points), label=key, lw=1.2, ls="--" if key.startswith("target") else "-")
        if log_scale and ax.lines and all(y > 0 for line in ax.lines for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(Path(log_path).parent.name)
    fig.savefig(out_path, dpi=110)
    return fig
