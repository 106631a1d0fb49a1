"""Mean ablation: removed edges carry each writer's mean output instead of a
corrupted one (an extension; the paper used interchange and zero ablation)."""

from __future__ import annotations

import torch

from .tasks import Encoded, collate


@torch.no_grad()
def mean_writer_states(model, examples: list[Encoded], pad_id: int, batch_size: int = 16) -> torch.Tensor:
    """Each writer's output averaged over every real (unpadded) token of the clean
    inputs, shaped (W, 1, 1, D) so it broadcasts over any batch and length."""
    device = next(model.parameters()).device
    total, count = None, 0
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], pad_id)
        mask = batch["attention_mask"].to(device)
        states = model(batch["input_ids"].to(device), attention_mask=mask, output_writer_states=True).writer_states
        summed = (states.float() * mask[None, :, :, None]).sum((1, 2))
        total = summed if total is None else total + summed
        count += int(mask.sum())
    return (total / count)[:, None, None, :]
