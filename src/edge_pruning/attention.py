"""Attention helpers shared by the model files."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_mask_from_padding(attention_mask: torch.Tensor | None, seq_len: int, causal: bool = True) -> torch.Tensor | None:
    """A boolean (B, 1, S, S) mask from a (B, S) padding mask; None means plain causal.

    Every query may attend to itself, so a padded query row is never empty (its
    output is ignored anyway).
    """
    if attention_mask is None:
        return None
    keys = attention_mask.bool()[:, None, None, :]
    idx = torch.arange(seq_len, device=attention_mask.device)
    allowed = keys & (idx[None, :] <= idx[:, None]) if causal else keys.expand(-1, 1, seq_len, -1)
    return allowed | torch.eye(seq_len, dtype=torch.bool, device=attention_mask.device)


def scaled_dot_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    causal: bool = True,
) -> torch.Tensor:
    """softmax(q k^T * scale) v over (B, H, S, dh); K/V may have fewer heads (GQA)."""
    gqa = k.shape[1] != q.shape[1]
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale, enable_gqa=gqa
    )
