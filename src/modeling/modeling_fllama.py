"""Llama with edge and node masks: `FLlamaModel` and `FLlamaForCausalLM`.

The weights and their names are Llama's, so any Llama checkpoint loads (a hub name
or a local directory). Writers are the heads (their slice of `o_proj`, plus its bias
/ n_heads), the MLPs and, with `with_embedding_nodes`, one `embeds` node; readers
are each query head's Q input, each key/value head's K and V inputs (grouped-query
attention is kept grouped: a K/V reader feeds every query head of its group; with
`ungroup_kv` they are read per query head), each MLP input and `resid_post`.
RMSNorm is applied per reader input, so a reader sees the norm of its own mixed
residual. Dropout is not applied.

The attention's weights, RMSNorm, rotary embedding and SwiGLU MLP are transformers'
own modules, so rope variants (`rope_parameters`) and numerics match
`LlamaForCausalLM` exactly.
"""

from __future__ import annotations

from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import (
    LlamaAttention,
    LlamaMLP,
    LlamaPreTrainedModel,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
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


class FLlamaConfig(CircuitConfig, LlamaConfig):
    """Llama's config plus the graph options (`with_embedding_nodes`, `ungroup_kv`)."""

    model_type = "fllama"


class FLlamaAttention(LinearHeadsAttention, LlamaAttention):
    rotary = staticmethod(apply_rotary_pos_emb)


class FLlamaDecoderLayer(PreNormLayer):
    attention_class, mlp_class, norm_class = FLlamaAttention, LlamaMLP, LlamaRMSNorm


class FLlamaPreTrainedModel(CircuitPreTrainedModel, LlamaPreTrainedModel):
    config_class = FLlamaConfig
    config: FLlamaConfig


class FLlamaModel(RotaryDecoder, FLlamaPreTrainedModel):
    layer_class, norm_class, rotary_class = FLlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding


class FLlamaForCausalLM(CircuitForCausalLM, FLlamaPreTrainedModel):
    base_class = FLlamaModel
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


register(FLlamaConfig, causal_lm=FLlamaForCausalLM)
