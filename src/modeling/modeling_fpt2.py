"""GPT-2 with edge and node masks: `FPT2Model` and `FPT2LMHeadModel`.

The weights and their names are GPT-2's, so any GPT-2 checkpoint loads (a hub name
or a local directory). Writers are the heads (their share of the output projection
plus bias / n_heads), the MLPs and, with `with_embedding_nodes`, the token and
position embeddings; readers are each head's Q, K and V input, each MLP input and
`resid_post`. Dropout is not applied: circuits are found on the model as it runs
at inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import GPT2Config, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.pytorch_utils import Conv1D

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


class FPT2Config(CircuitConfig, GPT2Config):
    """GPT-2's config plus the graph options (`with_embedding_nodes`)."""

    model_type = "fpt2"


class FPT2Attention(CircuitAttention):
    """GPT-2's fused Conv1D layout: c_attn holds Q, K, V of every head, c_proj the output."""

    def __init__(self, config: FPT2Config) -> None:
        super().__init__()
        if getattr(config, "scale_attn_by_inverse_layer_idx", False) or getattr(config, "reorder_and_upcast_attn", False):
            raise NotImplementedError("scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported")
        self.n_heads = self.n_kv_heads = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scaling = 1.0 / math.sqrt(self.head_dim) if config.scale_attn_weights else 1.0
        self.c_attn = Conv1D(3 * config.n_embd, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def head_weights(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        i, H, dh = "qkv".index(kind), self.n_heads, self.head_dim
        weight = self.c_attn.weight.view(-1, 3, H, dh)[:, i].transpose(0, 1)  # (H, D, dh)
        return weight, self.c_attn.bias.view(3, H, dh)[i]

    def out_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.c_proj.weight.view(self.n_heads, self.head_dim, -1), self.c_proj.bias

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, S, _ = x.shape
        qkv = self.c_attn(x).view(B, S, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def output(self, z: torch.Tensor) -> torch.Tensor:
        B, _, S, _ = z.shape
        return self.c_proj(z.transpose(1, 2).reshape(B, S, -1))


class FPT2MLP(nn.Module):
    """GPT-2's MLP without its dropout."""

    def __init__(self, config: FPT2Config) -> None:
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)
        self.act = ACT2FN[config.activation_function]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class FPT2Block(CircuitLayer):
    def __init__(self, config: FPT2Config, layer: int) -> None:
        super().__init__(layer)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = FPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = FPT2MLP(config)

    @property
    def circuit_attention(self) -> FPT2Attention:
        return self.attn

    def attend(self, x: torch.Tensor, inputs: LayerInputs, per_head: bool) -> torch.Tensor:
        return self.attn(self.ln_1(x), inputs, per_head)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_2(x))


class FPT2PreTrainedModel(CircuitPreTrainedModel, PreTrainedModel):
    config_class = FPT2Config
    config: FPT2Config
    base_model_prefix = "transformer"
    _keys_to_ignore_on_load_unexpected = [r"attn\.bias", r"attn\.masked_bias"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        from transformers import initialization as init

        super()._init_weights(module)
        if isinstance(module, Conv1D):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.bias)


class FPT2Model(CircuitDecoder, FPT2PreTrainedModel):
    """Token and position embeddings (two writers), blocks `h`, final norm `ln_f`."""

    embedding_names = ("tok_embeds", "pos_embeds")
    _input_embed_layer = "wte"

    def __init__(self, config: FPT2Config) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([FPT2Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.init_circuit()

    def blocks(self) -> nn.ModuleList:
        return self.h

    def embed(self, input_ids, inputs_embeds, position_ids) -> list[torch.Tensor]:
        tok = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        return [tok, self.wpe(position_ids).expand_as(tok)]

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_f(x)


class FPT2LMHeadModel(CircuitForCausalLM, FPT2PreTrainedModel):
    base_class = FPT2Model
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}


register(FPT2Config, causal_lm=FPT2LMHeadModel)
