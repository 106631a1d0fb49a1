"""Mistral with edge and node masks: `FMistralModel` and `FMistralForCausalLM`.

Llama's graph and block (see modeling_fllama) on transformers' Mistral modules,
with sliding-window attention on every layer (`config.sliding_window`; None: full).
"""

from __future__ import annotations

from transformers import MistralConfig
from transformers.models.mistral.modeling_mistral import (
    MistralAttention,
    MistralMLP,
    MistralPreTrainedModel,
    MistralRMSNorm,
    MistralRotaryEmbedding,
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


class FMistralConfig(CircuitConfig, MistralConfig):
    """Mistral's config plus the graph options (`with_embedding_nodes`, `ungroup_kv`)."""

    model_type = "fmistral"


class FMistralAttention(LinearHeadsAttention, MistralAttention):
    rotary = staticmethod(apply_rotary_pos_emb)

    def __init__(self, config: FMistralConfig, layer: int) -> None:
        super().__init__(config, layer)
        self.window = config.sliding_window


class FMistralDecoderLayer(PreNormLayer):
    attention_class, mlp_class, norm_class = FMistralAttention, MistralMLP, MistralRMSNorm


class FMistralPreTrainedModel(CircuitPreTrainedModel, MistralPreTrainedModel):
    config_class = FMistralConfig
    config: FMistralConfig


class FMistralModel(RotaryDecoder, FMistralPreTrainedModel):
    layer_class, norm_class, rotary_class = FMistralDecoderLayer, MistralRMSNorm, MistralRotaryEmbedding


class FMistralForCausalLM(CircuitForCausalLM, FMistralPreTrainedModel):
    base_class = FMistralModel
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


register(FMistralConfig, causal_lm=FMistralForCausalLM)
