"""What every task is: a data layout, an encoding into `Encoded` records, the
training loss (KL at the scored positions) and the metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F

from ..errors import TaskDataError
from .batch import Batch, Encoded


def kl_divergence(full_logits: torch.Tensor, circuit_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_full || p_circuit) per row, over the last dimension."""
    full = F.log_softmax(full_logits.float(), dim=-1)
    circuit = F.log_softmax(circuit_logits.float(), dim=-1)
    return (full.exp() * (full - circuit)).sum(-1)


class Task:
    """A task: encoding, the training loss (KL at scored positions) and metrics.

    `loss`, `metrics` and `attribution_metric` take a `Batch` or the dict of its fields
    (the HF Trainer and `evaluation.to_device` pass dicts) and call the typed `_loss`,
    `_metrics` and `_attribution_metric`, which a task overrides."""

    name: str = ""
    default_dataset: str = ""
    # layout name -> the columns that identify it, in order of preference
    layouts: dict[str, tuple[str, ...]] = {}

    def __init__(self) -> None:
        # What the metrics mean, filled in by `encode_rows` (e.g. which greater-than
        # definition the tokenizer allows); for results files.
        self.definitions: dict[str, str] = {}

    def detect_layout(self, columns: Iterable[str], where: str) -> str:
        cols = set(columns)
        for layout, required in self.layouts.items():
            if set(required) <= cols:
                return layout
        expected = "; ".join(f"{k}: {', '.join(v)}" for k, v in self.layouts.items())
        raise TaskDataError(
            f"{where}: columns {sorted(cols)} match no {self.name} data layout (expected one of: {expected})"
        )

    def encode_rows(self, rows: list[dict], tokenizer) -> list[Encoded]:
        raise NotImplementedError

    def loss(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch | Mapping) -> torch.Tensor:
        return self._loss(circuit_logits, full_logits, Batch.of(batch))

    def metrics(
        self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch | Mapping
    ) -> dict[str, torch.Tensor]:
        return self._metrics(circuit_logits, full_logits, Batch.of(batch))

    def attribution_metric(self, logits: torch.Tensor, batch: Batch | Mapping) -> torch.Tensor:
        return self._attribution_metric(logits, Batch.of(batch))

    def _loss(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean KL(full || circuit) over the scored positions."""
        kl = kl_divergence(full_logits, circuit_logits)
        valid = batch.position_valid.float()
        return (kl * valid).sum() / valid.sum()

    def _attribution_metric(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The per-example quantity attribution methods differentiate (KL has zero
        gradient at the full model): here the mean log-probability of the targets."""
        logp = F.log_softmax(logits.float(), -1).gather(-1, batch.targets.clamp(min=0)[..., None]).squeeze(-1)
        valid = batch.position_valid.float()
        return (logp * valid).sum(1) / valid.sum(1)

    def _metrics(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example metrics of the circuit, and of the full model as `full_*`.

        Logits are taken at the scored positions only: (B, P, V). ``kl`` is each
        example's mean over its positions; ``accuracy``: the argmax over the full
        vocabulary is the target at every scored position (teacher-forced);
        ``exact_match``: the circuit's argmax is the full model's at every position.
        """
        kl = kl_divergence(full_logits, circuit_logits)
        valid = batch.position_valid
        exact = ((circuit_logits.argmax(-1) == full_logits.argmax(-1)) | ~valid).all(1)
        correct = ((circuit_logits.argmax(-1) == batch.targets) | ~valid).all(1)
        full_correct = ((full_logits.argmax(-1) == batch.targets) | ~valid).all(1)
        return {
            "kl": (kl * valid).sum(1) / valid.sum(1),
            "exact_match": exact.float(),
            "accuracy": correct.float(),
            "full_accuracy": full_correct.float(),
        }
