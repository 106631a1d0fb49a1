"""log.jsonl: one JSON line per logged step, the same for the same seed and command
whether the run was interrupted and resumed or not."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import TrainerCallback


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
