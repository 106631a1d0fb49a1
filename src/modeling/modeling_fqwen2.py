"""Qwen2 / Qwen2.5 with edge and node masks: `FQwen2Model` and `FQwen2ForCausalLM`.

Llama's graph and block (see modeling_fllama) on transformers' Qwen2 modules: Q/K/V
projections with biases (their bias is each head's own), an `o_proj` without one,
grouped-query attention, and sliding-window attention on the layers
`config.layer_types` marks (`use_sliding_window`).
"""

from __future__ import annotations

from transformers import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2Attention,
    Qwen2MLP,
    Qwen2PreTrainedModel,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
    apply_rotary_pos_emb,
)

from .modeling_circuit import (
    CircuitConfig,
    CircuitForCausalLM,
    CircuitPreTrainedModel,
    LinearHeadsAttention,
    PreNormLayer,
    RotaryDecoder,
    register,
)


class FQwen2Config(CircuitConfig, Qwen2Config):
    """Qwen2's config plus the graph options (`with_embedding_nodes`, `ungroup_kv`)."""

    model_type = "fqwen2"


class FQwen2Attention(LinearHeadsAttention, Qwen2Attention):
    rotary = staticmethod(apply_rotary_pos_emb)


class FQwen2DecoderLayer(PreNormLayer):
    attention_class, mlp_class, norm_class = FQwen2Attention, Qwen2MLP, Qwen2RMSNorm


class FQwen2PreTrainedModel(CircuitPreTrainedModel, Qwen2PreTrainedModel):
    config_class = FQwen2Config
    config: FQwen2Config


class FQwen2Model(RotaryDecoder, FQwen2PreTrainedModel):
    layer_class, norm_class, rotary_class = FQwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding


class FQwen2ForCausalLM(CircuitForCausalLM, FQwen2PreTrainedModel):
    base_class = FQwen2Model
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


register(FQwen2Config, causal_lm=FQwen2ForCausalLM)
