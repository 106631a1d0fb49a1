"""Gemma-2 with edge and node masks: `FGemma2Model` and `FGemma2ForCausalLM`.

Gemma's graph and modules (see modeling_fgemma) plus Gemma-2's: attention scores
soft-capped (tanh, `attn_logit_softcapping`) and scaled by `query_pre_attn_scalar`,
sliding windows on alternate layers (`config.layer_types`), final logits
soft-capped (`final_logit_softcapping`), and norms after the attention
(`post_attention_layernorm`) and around the MLP (`pre_/post_feedforward_layernorm`).

The post-attention norm makes head outputs non-additive: the layer adds
norm(Σ_h o_h) to the residual, not a sum of per-head terms. Each head writes its
share of the normed sum, o_h · (1 + w) / rms(Σ_j o_j), with the RMS of the layer's
summed head outputs in the same forward (gradients flow through it). The shares add
up to the normed sum, so every mask 1 is exactly Gemma-2 and every mask 0 exactly the
corrupted run (whose writers are the shares of the corrupted forward). In a partial
circuit a head's share depends on the other heads of its layer through the RMS: a
kept head's contribution is rescaled when a head of its layer reads corrupted inputs,
and a removed edge carries the writer's share in the corrupted run, normed by that
run's RMS. The MLP's post-norm is inside its single writer and changes nothing.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Gemma2Config
from transformers.models.gemma2.modeling_gemma2 import (
    Gemma2Attention,
    Gemma2MLP,
    Gemma2PreTrainedModel,
    Gemma2RMSNorm,
    Gemma2RotaryEmbedding,
    Gemma2TextScaledWordEmbedding,
    apply_rotary_pos_emb,
)

from .modeling_circuit import (
    CircuitConfig,
    CircuitForCausalLM,
    CircuitPreTrainedModel,
    LayerInputs,
    LinearHeadsAttention,
    PreNormLayer,
    RotaryDecoder,
    register,
)


class FGemma2Config(CircuitConfig, Gemma2Config):
    """Gemma-2's config plus the graph options (`with_embedding_nodes`, `ungroup_kv`)."""

    model_type = "fgemma2"


class FGemma2Attention(LinearHeadsAttention, Gemma2Attention):
    rotary = staticmethod(apply_rotary_pos_emb)

    def __init__(self, config: FGemma2Config, layer: int) -> None:
        super().__init__(config, layer)
        self.softcap = self.attn_logit_softcapping


def post_norm_shares(heads: torch.Tensor, norm: Gemma2RMSNorm) -> torch.Tensor:
    """Each head's share of norm(Σ heads), (H, B, S, D): its output times the norm's
    scale of the sum, computed in fp32 as the norm is."""
    total = heads.sum(0).float()
    scale = torch.rsqrt(total.pow(2).mean(-1, keepdim=True) + norm.eps) * (1.0 + norm.weight.float())
    return (heads.float() * scale).type_as(heads)


class FGemma2DecoderLayer(PreNormLayer):
    attention_class, mlp_class, norm_class = FGemma2Attention, Gemma2MLP, Gemma2RMSNorm

    def __init__(self, config: FGemma2Config, layer: int) -> None:
        super().__init__(config, layer)
        self.pre_feedforward_layernorm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_feedforward_layernorm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def attend(self, x: torch.Tensor, inputs: LayerInputs, per_head: bool) -> torch.Tensor:
        heads = self.self_attn(self.input_layernorm(x), inputs, per_head)
        return post_norm_shares(heads, self.post_attention_layernorm) if per_head else self.post_attention_layernorm(heads)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class FGemma2PreTrainedModel(CircuitPreTrainedModel, Gemma2PreTrainedModel):
    config_class = FGemma2Config
    config: FGemma2Config


class FGemma2Model(RotaryDecoder, FGemma2PreTrainedModel):
    layer_class, norm_class, rotary_class = FGemma2DecoderLayer, Gemma2RMSNorm, Gemma2RotaryEmbedding

    def make_embedding(self, config: FGemma2Config) -> nn.Embedding:
        return Gemma2TextScaledWordEmbedding(
            config.vocab_size, config.hidden_size, config.pad_token_id, embed_scale=config.hidden_size**0.5
        )


class FGemma2ForCausalLM(CircuitForCausalLM, FGemma2PreTrainedModel):
    base_class = FGemma2Model
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def final_logits(self, logits: torch.Tensor) -> torch.Tensor:
        cap = self.config.final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap


register(FGemma2Config, causal_lm=FGemma2ForCausalLM)
