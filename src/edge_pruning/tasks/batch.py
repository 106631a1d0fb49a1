"""Encoded examples, and the padded batch that the models, losses and metrics read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields

import torch


@dataclass
class Encoded:
    """One example: clean and corrupted token ids of equal length, the positions whose
    next-token distribution is scored, the right token at each, and (two-way tasks)
    the wrong one."""

    input_ids: list[int]
    corr_input_ids: list[int]
    positions: list[int]  # scored positions: the logits there predict `targets`
    targets: list[int]
    distractor: int = -1  # the wrong answer's token at positions[0], for two-way tasks
    extra: dict = field(default_factory=dict)


@dataclass(eq=False)
class Batch(Mapping[str, torch.Tensor]):
    """Right-padded tensors of a list of `Encoded`.

    Also a read-only mapping of its fields by name: the HF Trainer moves dicts (the
    pruning loop's collator hands it `as_dict()` and `Batch.of` turns it back), and
    `evaluation.to_device` rebuilds batches as dicts."""

    input_ids: torch.Tensor  # (B, S) clean tokens
    corr_input_ids: torch.Tensor  # (B, S) corrupted tokens
    attention_mask: torch.Tensor  # (B, S) 1 at real tokens, 0 at padding
    positions: torch.Tensor  # (B, P) scored positions, -1 where an example scores fewer
    targets: torch.Tensor  # (B, P) the right token at each scored position, -1 at padding
    distractor: torch.Tensor  # (B,) the wrong answer's token (two-way tasks), else -1
    position_valid: torch.Tensor  # (B, P) positions >= 0
    start_yy: torch.Tensor | None = None  # (B,) greater-than: the start year's two digits
    year_tokens: torch.Tensor | None = None  # (B, 100 or 10) greater-than: the year (digit) tokens

    @classmethod
    def of(cls, batch: Batch | Mapping[str, torch.Tensor]) -> Batch:
        """`batch` itself, or the Batch of a dict of its fields."""
        return batch if isinstance(batch, Batch) else cls(**batch)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{name: value.to(device) for name, value in self.items()})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.items())

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in _FIELDS or getattr(self, name) is None:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return (name for name in _FIELDS if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_FIELDS = tuple(f.name for f in fields(Batch))


def collate(examples: list[Encoded], pad_id: int) -> Batch:
    """Right-padded tensors; `positions` padded with -1 where an example scores fewer."""
    S = max(len(e.input_ids) for e in examples)
    P = max(len(e.positions) for e in examples)
    B = len(examples)
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    corr_input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, S), dtype=torch.long)
    positions = torch.full((B, P), -1, dtype=torch.long)
    targets = torch.full((B, P), -1, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        corr_input_ids[i, :n] = torch.tensor(e.corr_input_ids)
        attention_mask[i, :n] = 1
        positions[i, : len(e.positions)] = torch.tensor(e.positions)
        targets[i, : len(e.targets)] = torch.tensor(e.targets)
    gt = "start_yy" in examples[0].extra
    return Batch(
        input_ids=input_ids,
        corr_input_ids=corr_input_ids,
        attention_mask=attention_mask,
        positions=positions,
        targets=targets,
        distractor=torch.tensor([e.distractor for e in examples], dtype=torch.long),
        position_valid=positions >= 0,
        start_yy=torch.tensor([e.extra["start_yy"] for e in examples]) if gt else None,
        year_tokens=torch.tensor([e.extra["year_tokens"] for e in examples]) if gt else None,
    )
