"""Qwen3 with edge and node masks: `FQwen3Model` and `FQwen3ForCausalLM`.

Llama's graph and block (see modeling_fllama) on transformers' Qwen3 modules: each
head's query and key pass through an RMSNorm over the head dimension (`q_norm`,
`k_norm`, shared by the heads) before the rotary embedding; sliding windows on the
layers `config.layer_types` marks.
"""

from __future__ import annotations

import torch
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import (
    Qwen3Attention,
    Qwen3MLP,
    Qwen3PreTrainedModel,
    Qwen3RMSNorm,
    Qwen3RotaryEmbedding,
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


class FQwen3Config(CircuitConfig, Qwen3Config):
    """Qwen3's config plus the graph options (`with_embedding_nodes`, `ungroup_kv`)."""

    model_type = "fqwen3"


class FQwen3Attention(LinearHeadsAttention, Qwen3Attention):
    rotary = staticmethod(apply_rotary_pos_emb)

    def position(self, q: torch.Tensor, k: torch.Tensor, inputs: LayerInputs) -> tuple[torch.Tensor, torch.Tensor]:
        return super().position(self.q_norm(q), self.k_norm(k), inputs)


class FQwen3DecoderLayer(PreNormLayer):
    attention_class, mlp_class, norm_class = FQwen3Attention, Qwen3MLP, Qwen3RMSNorm


class FQwen3PreTrainedModel(CircuitPreTrainedModel, Qwen3PreTrainedModel):
    config_class = FQwen3Config
    config: FQwen3Config


class FQwen3Model(RotaryDecoder, FQwen3PreTrainedModel):
    layer_class, norm_class, rotary_class = FQwen3DecoderLayer, Qwen3RMSNorm, Qwen3RotaryEmbedding


class FQwen3ForCausalLM(CircuitForCausalLM, FQwen3PreTrainedModel):
    base_class = FQwen3Model
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


register(FQwen3Config, causal_lm=FQwen3ForCausalLM)
