"""What a removed edge carries (the ablation), and mean ablation's writer means (an
extension; the paper used interchange and zero ablation)."""

from __future__ import annotations

from enum import Enum

import torch

from .tasks import Encoded, collate


class Ablation(str, Enum):
    """A removed edge carries the writer's output on the corrupted input (interchange),
    nothing (zero) or the writer's mean output (mean). A str, so that it compares with
    and serialises as its name."""

    INTERCHANGE = "interchange"
    ZERO = "zero"
    MEAN = "mean"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, name: str) -> Ablation:
        """The ablation called `name`, or the error naming the flag."""
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"--ablation must be interchange, zero or mean, got {name!r}") from None


ABLATION_NAMES = [a.value for a in Ablation]


@torch.no_grad()
def mean_writer_states(model, examples: list[Encoded], pad_id: int, batch_size: int = 16, per_position: bool = False) -> torch.Tensor:
    """Each writer's output averaged over every real (unpadded) token of the clean
    inputs, shaped (W, 1, 1, D) so it broadcasts over any batch and length. With
    `per_position` (EAP-IG's mean-positional ablation) the average is taken per
    position over the examples that reach it: (W, 1, S_max, D)."""
    device = next(model.parameters()).device
    total, count = None, None
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], pad_id).to(device)
        mask = batch.attention_mask
        states = model(batch.input_ids, attention_mask=mask, output_writer_states=True).writer_states
        weighted = states.float() * mask[None, :, :, None]
        summed, n = (weighted.sum(1), mask.sum(0)) if per_position else (weighted.sum((1, 2))[:, None], mask.sum()[None])
        if total is not None and summed.shape[1] > total.shape[1]:
            total = torch.nn.functional.pad(total, (0, 0, 0, summed.shape[1] - total.shape[1]))
            count = torch.nn.functional.pad(count, (0, n.shape[0] - count.shape[0]))
        if total is None:
            total, count = summed, n.float()
        else:
            total[:, : summed.shape[1]] += summed
            count[: n.shape[0]] += n
    return (total / count.clamp(min=1)[None, :, None])[:, None]
