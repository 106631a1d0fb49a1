"""Attention helpers shared by the model files."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_mask_from_padding(
    attention_mask: torch.Tensor | None,
    seq_len: int,
    causal: bool = True,
    window: int | None = None,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """A boolean (B or 1, 1, S, S) mask from a (B, S) padding mask; None means plain causal.

    `window` (sliding-window attention) lets a query see only the `window` latest
    keys, itself included, as transformers' sliding-window masks do. Every query may
    attend to itself, so a padded query row is never empty (its output is ignored).
    """
    if window is not None and window >= seq_len:
        window = None  # no query reaches past the window
    if attention_mask is None and window is None:
        return None
    device = attention_mask.device if attention_mask is not None else device
    idx = torch.arange(seq_len, device=device)
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)
    if causal:
        allowed = idx[None, :] <= idx[:, None]
    if window is not None:
        allowed = allowed & (idx[None, :] > idx[:, None] - window)
    allowed = allowed[None, None]
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, None, :]
    return allowed | torch.eye(seq_len, dtype=torch.bool, device=device)


def scaled_dot_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    causal: bool = True,
    softcap: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale) v over (B, H, S, dh); K/V may have fewer heads (GQA).

    `softcap` (Gemma-2) bounds the scores to (-softcap, softcap) with tanh before the
    mask, which SDPA cannot do: that case is computed explicitly, softmax in fp32.
    """
    gqa = k.shape[1] != q.shape[1]
    if softcap is None:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale, enable_gqa=gqa
        )
    if gqa:
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.tanh(torch.matmul(q, k.transpose(-1, -2)) * scale / softcap) * softcap
    if mask is None and causal:
        mask = torch.ones(q.shape[2], q.shape[2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)
