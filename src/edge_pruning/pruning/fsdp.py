"""FSDP2 pruning: the model weights are sharded, the masks and λs are not."""

from __future__ import annotations

import torch

# Module names (full match) that FSDP leaves whole: the masks and λs of every circuit model.
MASKS_MODULE_PATTERN = r"(.*\.)?circuit_masks"


def keep_masks_out_of_fsdp(plugin) -> None:
    """FSDP2 shards the model weights only; masks and λs stay whole and fp32 on every rank.

    fully_shard rejects the scalar λs, every rank samples the full mask matrix anyway,
    and bf16 mixed precision would round log_alphas and the expected sparsity. Their
    gradients are averaged by `average_mask_grads` instead.
    """
    if plugin.fsdp_version != 2:
        raise ValueError("FSDP pruning needs FSDP2: set fsdp_version: 2 in the accelerate config")
    plugin.ignored_modules = MASKS_MODULE_PATTERN


def average_mask_grads(masks: torch.nn.Module) -> None:
    """Average the gradients of the replicated masks and λs over ranks (one all-reduce),
    before clipping and the optimizer step, so that every rank takes the same step."""
    grads = [p.grad for p in masks.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    torch.distributed.all_reduce(flat)  # a sum: gloo has no average
    flat /= torch.distributed.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
