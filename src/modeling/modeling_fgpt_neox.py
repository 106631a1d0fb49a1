"""GPT-NeoX / Pythia with edge and node masks: `FGPTNeoXModel` and `FGPTNeoXForCausalLM`.

Writers are the heads (their slice of `dense`, plus its bias / n_heads), the MLPs
and, with `with_embedding_nodes`, one `embeds` node. The weights are GPT-NeoX's:
one fused `query_key_value` holding per head its Q, K and V rows, partial rotary
embeddings (`partial_rotary_factor` of each head's dimensions), biases everywhere,
an untied `embed_out`. With `use_parallel_residual` (Pythia's default) attention
and MLP read the same residual, so the MLP of layer l reads no head of layer l:
the graph has no such edges (`parallel_mlp`). With it off, the block is GPT-2's.
LayerNorm, rotary embedding and MLP are transformers' own; dropout is not applied.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GPTNeoXConfig
from transformers.models.gpt_neox.modeling_gpt_neox import (
    GPTNeoXAttention,
    GPTNeoXMLP,
    GPTNeoXPreTrainedModel,
    GPTNeoXRotaryEmbedding,
    apply_rotary_pos_emb,
)

from .modeling_circuit import (
    CircuitAttention,
    CircuitConfig,
    CircuitDecoder,
    CircuitForCausalLM,
    CircuitLayer,
    CircuitPreTrainedModel,
    LayerInputs,
    register,
)


class FGPTNeoXConfig(CircuitConfig, GPTNeoXConfig):
    """GPT-NeoX's config plus the graph options (`with_embedding_nodes`)."""

    model_type = "fgpt_neox"


class FGPTNeoXAttention(CircuitAttention, GPTNeoXAttention):
    """query_key_value's rows are, per head, its Q, K and V rows (H, 3, dh, D)."""

    def __init__(self, config: FGPTNeoXConfig, layer: int) -> None:
        super().__init__(config, layer)
        self.n_heads = self.n_kv_heads = config.num_attention_heads
        self.head_dim = self.head_size

    def head_weights(self, kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        i, H, dh, qkv = "qkv".index(kind), self.n_heads, self.head_dim, self.query_key_value
        weight = qkv.weight.view(H, 3, dh, -1)[:, i].transpose(1, 2)
        return weight, None if qkv.bias is None else qkv.bias.view(H, 3, dh)[:, i]

    def out_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.dense.weight.view(-1, self.n_heads, self.head_dim).permute(1, 2, 0), self.dense.bias

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, S, _ = x.shape
        q, k, v = self.query_key_value(x).view(B, S, self.n_heads, 3 * self.head_dim).transpose(1, 2).chunk(3, dim=-1)
        return q, k, v

    def output(self, z: torch.Tensor) -> torch.Tensor:
        B, _, S, _ = z.shape
        return self.dense(z.transpose(1, 2).reshape(B, S, -1))

    def position(self, q: torch.Tensor, k: torch.Tensor, inputs: LayerInputs) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = inputs.position_embeddings
        return apply_rotary_pos_emb(q, k, cos, sin)


class FGPTNeoXLayer(CircuitLayer):
    def __init__(self, config: FGPTNeoXConfig, layer: int) -> None:
        super().__init__(layer)
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = FGPTNeoXAttention(config, layer)
        self.mlp = GPTNeoXMLP(config)

    @property
    def circuit_attention(self) -> FGPTNeoXAttention:
        return self.attention

    def attend(self, x: torch.Tensor, inputs: LayerInputs, per_head: bool) -> torch.Tensor:
        return self.attention(self.input_layernorm(x), inputs, per_head)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.post_attention_layernorm(x))


class FGPTNeoXPreTrainedModel(CircuitPreTrainedModel, GPTNeoXPreTrainedModel):
    config_class = FGPTNeoXConfig
    config: FGPTNeoXConfig


class FGPTNeoXModel(CircuitDecoder, FGPTNeoXPreTrainedModel):
    _input_embed_layer = "embed_in"

    def __init__(self, config: FGPTNeoXConfig) -> None:
        super().__init__(config)
        self.embed_in = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([FGPTNeoXLayer(config, i) for i in range(config.num_hidden_layers)])
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rotary_emb = GPTNeoXRotaryEmbedding(config)
        self.init_circuit()

    def parallel_mlp(self, config: FGPTNeoXConfig) -> bool:
        return config.use_parallel_residual

    def position_embeddings(self, embeds: torch.Tensor, position_ids: torch.Tensor):
        return self.rotary_emb(embeds, position_ids)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer_norm(x)


class FGPTNeoXForCausalLM(CircuitForCausalLM, FGPTNeoXPreTrainedModel):
    base_class = FGPTNeoXModel
    head_name = "embed_out"
    _tied_weights_keys = {"embed_out.weight": "gpt_neox.embed_in.weight"}


register(FGPTNeoXConfig, causal_lm=FGPTNeoXForCausalLM)
