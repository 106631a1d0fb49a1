"""Gemma with edge and node masks: `FGemmaModel` and `FGemmaForCausalLM`.

Llama's graph and block (see modeling_fllama) on transformers' Gemma modules: the
token embedding scaled by √hidden_size (the `embeds` writer is the scaled one),
RMSNorms that multiply by (1 + w), and a GeGLU MLP.
"""

from __future__ import annotations

from torch import nn
from transformers import GemmaConfig
from transformers.models.gemma.modeling_gemma import (
    GemmaAttention,
    GemmaMLP,
    GemmaPreTrainedModel,
    GemmaRMSNorm,
    GemmaRotaryEmbedding,
    GemmaTextScaledWordEmbedding,
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


class FGemmaConfig(CircuitConfig, GemmaConfig):
    """Gemma's config plus the graph options (`with_embedding_nodes`, `ungroup_kv`)."""

    model_type = "fgemma"


class FGemmaAttention(LinearHeadsAttention, GemmaAttention):
    rotary = staticmethod(apply_rotary_pos_emb)


class FGemmaDecoderLayer(PreNormLayer):
    attention_class, mlp_class, norm_class = FGemmaAttention, GemmaMLP, GemmaRMSNorm


class FGemmaPreTrainedModel(CircuitPreTrainedModel, GemmaPreTrainedModel):
    config_class = FGemmaConfig
    config: FGemmaConfig


class FGemmaModel(RotaryDecoder, FGemmaPreTrainedModel):
    layer_class, norm_class, rotary_class = FGemmaDecoderLayer, GemmaRMSNorm, GemmaRotaryEmbedding

    def make_embedding(self, config: FGemmaConfig) -> nn.Embedding:
        return GemmaTextScaledWordEmbedding(
            config.vocab_size, config.hidden_size, config.pad_token_id, embed_scale=config.hidden_size**0.5
        )


class FGemmaForCausalLM(CircuitForCausalLM, FGemmaPreTrainedModel):
    base_class = FGemmaModel
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


register(FGemmaConfig, causal_lm=FGemmaForCausalLM)
