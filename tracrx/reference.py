"""Plain-numpy forward pass of an exported Tracr model: the spec for PyTorch.

Why: the PyTorch model is written against this function, and this function is
tested against Tracr's own jax model (``tests/test_tracr_export.py``) on every
input of both tasks. Conventions, all taken from Tracr's
``tracr/transformer/model.py`` and ``attention.py``:

* Input: ids ``[B, T]`` with the BOS id at position 0, ``T <= n_positions``.
  ``x0 = tok_embed[ids] + pos_embed[arange(T)]``. ``pos_embed[0]`` is zero
  (BOS has no position direction), so the first real token is index 0 in
  RASP terms but sits at position 1. Every token embedding (BOS and PAD
  included) also carries a 1 on the residual direction ``"one"``.
* Layers: ``n_layers`` times [attention block, then MLP block], each added to
  the residual stream (pre-norm style but with **no layer norm at all**).
  Tracr puts each RASP operation in the first block of the right kind at the
  right depth; blocks it does not need are present with all-zero weights
  (``weights["empty_blocks"]``), and heads beyond a layer's ``heads_used`` are
  zero too. An all-zero head still "runs": its output is exactly zero.
* Attention, per head h: ``q = x W_Q[h] + b_Q[h]``, same for k, v;
  ``s = (q k^T) * attn_scale`` with ``attn_scale = 1/sqrt(d_head)``; if
  ``causal``: ``s[i, j] = mask_value (-1e30)`` for ``j > i`` (replace, not
  add); ``a = softmax_j(s)``; ``z = a v``; block output
  ``sum_h z_h W_O[h] + b_O``. There is no padding mask (Tracr builds its model
  without a pad token), so PAD is an ordinary token; our data never pads.
* MLP: ``relu(x W_in + b_in) W_out + b_out``.
* Output: ``logits = x_final @ unembed`` (no final norm). Categorical tasks
  predict ``argmax`` over the O columns (``output_vocab`` maps values to
  columns); numerical tasks output ``logits[..., 0]``. Position 0 (BOS) has
  no meaningful output.

Tracr computes in float32; this reference computes in float64 by default
(pass ``dtype=np.float32`` to mimic jax). Differences are far below 1e-5.
"""

from __future__ import annotations

import dataclasses
from typing import List, Union

import numpy as np

from tracrx.export import TracrWeights


@dataclasses.dataclass
class ForwardOutput:
    """Activations of one forward pass.

    Attributes:
      embeddings: ``[B, T, D]`` token + position embeddings.
      block_outputs: ``2 * n_layers`` arrays ``[B, T, D]``: what each block
        (attn0, mlp0, attn1, ...) added to the residual stream.
      residuals: ``2 * n_layers`` arrays ``[B, T, D]``: the residual stream
        after each block (Tracr's ``residuals``; the last is the final one).
      head_outputs: per layer ``[B, H, T, D]``: each head's share of the
        attention block output (``z_h W_O[h]``, bias excluded).
      attn_patterns: per layer ``[B, H, T, T]`` softmax weights.
      logits: ``[B, T, O]``.
    """

    embeddings: np.ndarray
    block_outputs: List[np.ndarray]
    residuals: List[np.ndarray]
    head_outputs: List[np.ndarray]
    attn_patterns: List[np.ndarray]
    logits: np.ndarray

    @property
    def final_residual(self) -> np.ndarray:
        return self.residuals[-1]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def attention_heads(
    xq: np.ndarray, xk: np.ndarray, xv: np.ndarray, w: TracrWeights, layer: int,
    dtype=np.float64,
):
    """Per-head attention with separate q/k/v inputs (used by edge forwards).

    ``xq``, ``xk``, ``xv``: ``[B, H, T, D]`` inputs for each head's query, key
    and value. Returns (head outputs ``[B, H, T, D]`` excluding ``b_O``,
    patterns ``[B, H, T, T]``).
    """
    lw = w.layers[layer]
    c = w.config
    q = np.einsum("bhtd,hdk->bhtk", xq, lw.W_Q.astype(dtype)) + lw.b_Q.astype(dtype)[None, :, None]
    k = np.einsum("bhtd,hdk->bhtk", xk, lw.W_K.astype(dtype)) + lw.b_K.astype(dtype)[None, :, None]
    v = np.einsum("bhtd,hdk->bhtk", xv, lw.W_V.astype(dtype)) + lw.b_V.astype(dtype)[None, :, None]
    scores = np.einsum("bhik,bhjk->bhij", q, k) * dtype(c.attn_scale)
    if c.causal:
        T = scores.shape[-1]
        allowed = np.tril(np.ones((T, T), dtype=bool))
        scores = np.where(allowed, scores, dtype(c.mask_value))
    pattern = softmax(scores, axis=-1)
    z = np.einsum("bhij,bhjk->bhik", pattern, v)
    out = np.einsum("bhik,hkd->bhid", z, lw.W_O.astype(dtype))
    return out, pattern


def mlp(x: np.ndarray, w: TracrWeights, layer: int, dtype=np.float64) -> np.ndarray:
    lw = w.layers[layer]
    hidden = np.maximum(x @ lw.W_in.astype(dtype) + lw.b_in.astype(dtype), 0)
    return hidden @ lw.W_out.astype(dtype) + lw.b_out.astype(dtype)


def embed(w: TracrWeights, token_ids: np.ndarray, dtype=np.float64):
    """Return (token part, position part), each ``[B, T, D]``."""
    ids = np.asarray(token_ids)
    if ids.ndim == 1:
        ids = ids[None]
    T = ids.shape[1]
    if T > w.config.n_positions:
        raise ValueError(f"sequence length {T} exceeds n_positions {w.config.n_positions}")
    tok = w.tok_embed.astype(dtype)[ids]
    pos = np.broadcast_to(w.pos_embed.astype(dtype)[:T][None], tok.shape).copy()
    return tok, pos


def forward(
    weights: Union[TracrWeights, dict], token_ids: np.ndarray, dtype=np.float64
) -> ForwardOutput:
    """Run the exported model on ``token_ids`` (``[B, T]`` or ``[T]``)."""
    w = weights if isinstance(weights, TracrWeights) else TracrWeights.from_dict(weights)
    tok, pos = embed(w, token_ids, dtype)
    x = tok + pos
    H = w.config.n_heads
    block_outputs, residuals, head_outputs, patterns = [], [], [], []
    for layer in range(w.config.n_layers):
        xs = np.broadcast_to(x[:, None], (x.shape[0], H) + x.shape[1:])
        heads, pattern = attention_heads(xs, xs, xs, w, layer, dtype)
        attn_out = heads.sum(axis=1) + w.layers[layer].b_O.astype(dtype)
        x = x + attn_out
        block_outputs.append(attn_out)
        residuals.append(x)
        head_outputs.append(heads)
        patterns.append(pattern)

        mlp_out = mlp(x, w, layer, dtype)
        x = x + mlp_out
        block_outputs.append(mlp_out)
        residuals.append(x)
    logits = x @ w.unembed.astype(dtype)
    return ForwardOutput(
        embeddings=tok + pos,
        block_outputs=block_outputs,
        residuals=residuals,
        head_outputs=head_outputs,
        attn_patterns=patterns,
        logits=logits,
    )


def predict(w: TracrWeights, logits: np.ndarray) -> np.ndarray:
    """Decoded output ids (categorical) or values (numerical), ``[B, T]``."""
    if w.config.categorical_output:
        return np.argmax(logits, axis=-1)
    return logits[..., 0]
