"""The Tracr tasks, reverse and xproportion.

Their data are the `tracrx` JSONL splits (`data/datasets/{task}/{split}.jsonl`),
already in token ids with BOS first, and the intervention is zero ablation, so the
corrupted ids equal the clean ones and are never read. Every position but BOS is
scored. The losses follow the original scripts (`erazr_reverse.py`,
`erazr_xproportion.py`), whose hyperparameters the paper reports:

- reverse: KL(full || circuit) over the output classes at every scored position,
  summed over positions and averaged over examples (`kl_div(..., "batchmean")`).
- xproportion: the outputs are fractions, not distributions. The original takes a
  softmax of each sequence's fractions *across positions* and the KL between the
  full model's and the circuit's, again summed and averaged over examples. It is
  kept (rather than an MSE) because the paper's learning rates were tuned for its
  scale. The original's comment says BOS is excluded while its code includes the
  BOS output; we exclude it, as the comment intends. The softmax ignores a shift
  common to all positions, so accuracy is checked against the targets separately:
  `np.allclose(atol=0.05)`, as in the original's `eval_fn`.

xproportion's targets are stored losslessly as integers: the fraction at position p
(BOS at 0) is (number of x among tokens 1..p) / p, so `targets` hold that count
and the metrics divide by the position.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..errors import TaskDataError
from ..paths import DATASETS_DIR, TRACR_MODELS_DIR
from .base import Task, kl_divergence
from .batch import Batch, Encoded

# Tolerance of xproportion's accuracy, as in the original's eval_fn.
FRACTION_ATOL = 0.05


class TracrTask(Task):
    """A compiled Tracr program: its model export, data and ground-truth circuit."""

    @property
    def model_path(self) -> Path:
        return TRACR_MODELS_DIR / f"{self.name}.tracr.pkl"

    @property
    def ground_truth_path(self) -> Path:
        return TRACR_MODELS_DIR / f"{self.name}_ground_truth.json"

    def ground_truth_edges(self) -> list[tuple[str, str]]:
        data = json.loads(self.ground_truth_path.read_text())
        return [(w, r) for w, r in data["edges"]]

    def load_split(self, dataset_path: str | os.PathLike | None, split: str) -> list[dict]:
        """Rows of `{dataset_path}/{split}.jsonl` (default: the shipped data)."""
        path = Path(dataset_path) if dataset_path else DATASETS_DIR / self.default_dataset
        file = path / f"{split}.jsonl"
        if not file.is_file():
            raise FileNotFoundError(f"{file} does not exist (see data/scripts/prepare_{self.name}.py)")
        with open(file) as f:
            return [json.loads(line) for line in f if line.strip()]

    def encode_rows(self, rows: list[dict], tokenizer: Mapping[Any, int] | None = None) -> list[Encoded]:
        """`tokenizer` is the model's token -> id map; given, the rows' ids are checked
        against it, so data and model cannot silently disagree."""
        out = []
        for i, row in enumerate(rows):
            where = f"{self.name} example {row.get('id', i)}"
            ids = list(row["input_ids"])
            if tokenizer is not None and [tokenizer.get(t) for t in row["tokens"]] != ids:
                raise TaskDataError(f"{where}: input_ids {ids} do not encode tokens {row['tokens']} in the model's vocab")
            if len(row["target"]) != len(ids) or row["target"][0] is not None:
                raise TaskDataError(f"{where}: expected one target per token and none at BOS")
            positions = list(range(1, len(ids)))
            out.append(Encoded(ids, ids, positions, self.target_ids(row, where)))
        return out

    def target_ids(self, row: dict, where: str) -> list[int]:
        raise NotImplementedError


class ReverseTask(TracrTask):
    name = "reverse"
    default_dataset = "reverse"

    def target_ids(self, row, where):
        return list(row["target_ids"][1:])

    def _loss(self, circuit_logits, full_logits, batch):
        """KL over the classes, summed over positions, averaged over examples."""
        return self.metrics_kl(circuit_logits, full_logits, batch).mean()

    def metrics_kl(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        kl = kl_divergence(full_logits, circuit_logits)
        return (kl * batch.position_valid).sum(1)

    def _metrics(self, circuit_logits, full_logits, batch):
        """Accuracy: argmax right at every position; KL per example as in the loss."""
        out = super()._metrics(circuit_logits, full_logits, batch)
        out["kl"] = self.metrics_kl(circuit_logits, full_logits, batch)
        return out


class XProportionTask(TracrTask):
    name = "xproportion"
    default_dataset = "xproportion"

    def target_ids(self, row, where):
        counts = []
        for p, frac in enumerate(row["target"][1:], start=1):
            count = round(frac * p)
            if abs(count / p - frac) > 1e-9:
                raise TaskDataError(f"{where}: target {frac} at position {p} is not a fraction of the first {p} tokens")
            counts.append(count)
        return counts

    @staticmethod
    def fractions(logits: torch.Tensor) -> torch.Tensor:
        return logits[..., 0].float()

    def position_kl(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per example: KL between softmaxes of the fractions across scored positions."""
        valid = batch.position_valid
        hide = torch.where(valid, 0.0, float("-inf"))
        full = F.log_softmax(self.fractions(full_logits) + hide, dim=-1)
        circuit = F.log_softmax(self.fractions(circuit_logits) + hide, dim=-1)
        return torch.where(valid, full.exp() * (full - circuit), 0.0).sum(-1)

    def _loss(self, circuit_logits, full_logits, batch):
        return self.position_kl(circuit_logits, full_logits, batch).mean()

    def _attribution_metric(self, logits, batch):
        """The mean output fraction: the default (log-probability of a target class)
        is constant for a single numerical output."""
        valid = batch.position_valid.float()
        return (self.fractions(logits) * valid).sum(1) / valid.sum(1)

    def _metrics(self, circuit_logits, full_logits, batch):
        """Accuracy: every fraction within 0.05 of the target; exact match: within
        0.05 of the full model."""
        valid = batch.position_valid
        targets = batch.targets.float() / batch.positions.clamp(min=1).float()
        circuit, full = self.fractions(circuit_logits), self.fractions(full_logits)

        def close(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (((a - b).abs() <= FRACTION_ATOL) | ~valid).all(1).float()

        return {
            "kl": self.position_kl(circuit_logits, full_logits, batch),
            "exact_match": close(circuit, full),
            "accuracy": close(circuit, targets),
            "full_accuracy": close(full, targets),
            "max_abs_error": torch.where(valid, (circuit - full).abs(), 0.0).amax(1),
        }


TRACR_TASKS: dict[str, type[TracrTask]] = {"reverse": ReverseTask, "xproportion": XProportionTask}


def get_tracr_task(name: str) -> TracrTask:
    if name not in TRACR_TASKS:
        raise KeyError(f"unknown Tracr task {name!r}; known: {', '.join(TRACR_TASKS)}")
    return TRACR_TASKS[name]()
