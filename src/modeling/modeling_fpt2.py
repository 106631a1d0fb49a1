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
from typing import Callable

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.pytorch_utils import Conv1D

from edge_pruning.attention import attention_mask_from_padding, scaled_dot_product
from edge_pruning.circuit import CircuitMasks, CircuitModelMixin, CircuitModelOutput, gather_positions
from edge_pruning.graph import CircuitGraph
from edge_pruning.mixing import ResidualMixer


class FPT2Config(GPT2Config):
    """GPT-2's config plus `with_embedding_nodes`, saved so a reload needs no flag."""

    model_type = "fpt2"

    def __init__(self, with_embedding_nodes: bool = False, **kwargs) -> None:
        self.with_embedding_nodes = with_embedding_nodes
        super().__init__(**kwargs)


def fpt2_graph(config: FPT2Config) -> CircuitGraph:
    embeddings = ("tok_embeds", "pos_embeds") if config.with_embedding_nodes else ()
    return CircuitGraph.layered(config.n_layer, config.n_head, embeddings=embeddings)


class FPT2Attention(nn.Module):
    """Attention whose heads read separate Q/K/V inputs and write separate outputs."""

    def __init__(self, config: FPT2Config) -> None:
        super().__init__()
        if getattr(config, "scale_attn_by_inverse_layer_idx", False) or getattr(config, "reorder_and_upcast_attn", False):
            raise NotImplementedError("scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported")
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scale = 1.0 / math.sqrt(self.head_dim) if config.scale_attn_weights else 1.0
        self.c_attn = Conv1D(3 * config.n_embd, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, per_head: bool) -> torch.Tensor:
        """x: (1, B, S, D) read by every reader, or (3H, B, S, D) as Q..., K..., V... .

        Returns (H, B, S, D) head outputs, or their sum (1, B, S, D) when not `per_head`.
        """
        H, dh = self.n_head, self.head_dim
        _, B, S, D = x.shape
        if x.shape[0] == 1:
            qkv = self.c_attn(x[0]).view(B, S, 3, H, dh).permute(2, 0, 3, 1, 4)
        else:
            weight = self.c_attn.weight.view(D, 3, H, dh).permute(1, 2, 0, 3)  # (3, H, D, dh)
            qkv = torch.matmul(x.view(3, H, B * S, D), weight) + self.c_attn.bias.view(3, H, 1, dh)
            qkv = qkv.view(3, H, B, S, dh).transpose(1, 2)
        z = scaled_dot_product(qkv[0], qkv[1], qkv[2], mask, self.scale)  # (B, H, S, dh)
        if not per_head:
            return self.c_proj(z.transpose(1, 2).reshape(B, S, D)).unsqueeze(0)
        out = torch.matmul(z.transpose(0, 1).reshape(H, B * S, dh), self.c_proj.weight.view(H, dh, D))
        return (out + self.c_proj.bias / H).view(H, B, S, D)


class FPT2MLP(nn.Module):
    def __init__(self, config: FPT2Config) -> None:
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)
        self.act = ACT2FN[config.activation_function]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class FPT2Block(nn.Module):
    def __init__(self, config: FPT2Config, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = FPT2Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = FPT2MLP(config)
        # Set by transformers' activation_checkpointing_enable(), with `_gradient_checkpointing_func`.
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func: Callable | None = None

    def _attend(self, x: torch.Tensor, mask: torch.Tensor | None, per_head: bool) -> torch.Tensor:
        return self.attn(self.ln_1(x), mask, per_head)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_2(x))

    def _run(self, fn: Callable, *args) -> torch.Tensor:
        """Checkpoint only the computation between a read and a write: the mixer's
        reads and writes mutate the residual stream and must run exactly once."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(fn, *args)
        return fn(*args)

    def forward(self, mixer: ResidualMixer, mask: torch.Tensor | None) -> None:
        attn_site, mlp_site = mixer.graph.sites[2 * self.layer], mixer.graph.sites[2 * self.layer + 1]
        heads = self._run(self._attend, mixer.read(attn_site), mask, mixer.per_writer)
        mixer.write(heads, count=self.attn.n_head)
        mixer.write(self._run(self._feed_forward, mixer.read(mlp_site)), count=1)


class FPT2PreTrainedModel(CircuitModelMixin, PreTrainedModel):
    config_class = FPT2Config
    config: FPT2Config
    base_model_prefix = "transformer"
    accepted_model_types = ("gpt2", "fpt2")
    # Masks and λs load in fp32 whatever the checkpoint or requested dtype.
    _keep_in_fp32_modules_strict = ["circuit_masks"]
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_unexpected = [r"attn\.bias", r"attn\.masked_bias"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        from transformers import initialization as init

        super()._init_weights(module)
        if isinstance(module, Conv1D):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, CircuitMasks):
            module.reset_parameters()


class FPT2Model(FPT2PreTrainedModel):
    def __init__(self, config: FPT2Config) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([FPT2Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.circuit_masks = CircuitMasks(fpt2_graph(config))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        corr_x: torch.Tensor | None = None,
        output_writer_states: bool = False,
        mask_grad_deltas: torch.Tensor | None = None,
        target_edge_sparsity: float | None = None,
        target_node_sparsity: float | None = None,
        **kwargs,
    ) -> CircuitModelOutput:
        """The final residual (after ln_f) as `logits`' input; see FPT2LMHeadModel."""
        B, S = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(S, device=input_ids.device).unsqueeze(0)
        tok = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        pos = self.wpe(position_ids).expand_as(tok)
        if self.config.with_embedding_nodes:
            mixer = self.make_mixer(torch.zeros_like(tok), corr_x, output_writer_states, mask_grad_deltas)
            mixer.write(torch.stack([tok, pos]), count=2)
        else:
            mixer = self.make_mixer(tok + pos, corr_x, output_writer_states, mask_grad_deltas)
        mask = attention_mask_from_padding(attention_mask, S)
        for block in self.h:
            block(mixer, mask)
        hidden = self.ln_f(mixer.read(self.circuit_graph.sites[-1])[0])
        return self.circuit_output(mixer, hidden, output_writer_states, target_edge_sparsity, target_node_sparsity)


class FPT2LMHeadModel(FPT2PreTrainedModel):
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: FPT2Config) -> None:
        super().__init__(config)
        self.transformer = FPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    @property
    def circuit_masks(self) -> CircuitMasks:
        return self.transformer.circuit_masks

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self, input_ids: torch.Tensor, output_positions: torch.Tensor | None = None, **kwargs
    ) -> CircuitModelOutput:
        """Logits of the circuit (masked) or, under `full_model()` or with
        `output_writer_states=True`, of the full model. `output_positions` (B, P)
        restricts the logits to those positions (B, P, V)."""
        out = self.transformer(input_ids, **kwargs)
        out.logits = self.lm_head(gather_positions(out.logits, output_positions))
        return out


# Checkpoints saved by this class load through the Auto classes too.
AutoModelForCausalLM.register(FPT2Config, FPT2LMHeadModel, exist_ok=True)
AutoConfig.register("fpt2", FPT2Config, exist_ok=True)
