"""Llama with edge and node masks: `FLlamaModel` and `FLlamaForCausalLM`.

The weights and their names are Llama's, so any Llama checkpoint loads (a hub name
or a local directory). Writers are the heads (their slice of `o_proj`, plus its bias
/ n_heads), the MLPs and, with `with_embedding_nodes`, one `embeds` node; readers
are each query head's Q input, each key/value head's K and V inputs (grouped-query
attention is kept grouped: a K/V reader feeds every query head of its group), each
MLP input and `resid_post`. RMSNorm is applied per reader input, so a reader sees
the norm of its own mixed residual. Dropout is not applied.

The RMSNorm, rotary embedding and SwiGLU MLP are transformers' own modules, so
rope variants (`rope_parameters`) and numerics match `LlamaForCausalLM` exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, PreTrainedModel
from transformers.models.llama.modeling_llama import (
    LlamaMLP,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

from edge_pruning.attention import attention_mask_from_padding, scaled_dot_product
from edge_pruning.circuit import CircuitMasks, CircuitModelMixin, CircuitModelOutput, gather_positions
from edge_pruning.graph import CircuitGraph
from edge_pruning.mixing import ResidualMixer


class FLlamaConfig(LlamaConfig):
    """Llama's config plus `with_embedding_nodes`, saved so a reload needs no flag."""

    model_type = "fllama"

    def __init__(self, with_embedding_nodes: bool = False, **kwargs) -> None:
        self.with_embedding_nodes = with_embedding_nodes
        super().__init__(**kwargs)


def fllama_graph(config: FLlamaConfig) -> CircuitGraph:
    embeddings = ("embeds",) if config.with_embedding_nodes else ()
    return CircuitGraph.layered(
        config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, embeddings=embeddings
    )


class FLlamaAttention(nn.Module):
    """Grouped-query attention whose Q (per head) and K/V (per KV head) inputs are
    read separately and whose heads write separate outputs."""

    def __init__(self, config: FLlamaConfig) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        d, dh, bias = config.hidden_size, self.head_dim, config.attention_bias
        self.q_proj = nn.Linear(d, self.n_heads * dh, bias=bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * dh, bias=bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * dh, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * dh, d, bias=bias)

    def _per_head(self, x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        """Each of the n inputs (n, B, S, D) through its own head's rows of `proj`:
        (B, n, S, dh). One batched matmul, no repeated weights."""
        n, B, S, D = x.shape
        weight = proj.weight.view(n, self.head_dim, D).transpose(1, 2)  # (n, D, dh)
        out = torch.matmul(x.reshape(n, B * S, D), weight)
        if proj.bias is not None:
            out = out + proj.bias.view(n, 1, self.head_dim)
        return out.view(n, B, S, self.head_dim).transpose(0, 1)

    def forward(
        self,
        x: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        per_head: bool,
    ) -> torch.Tensor:
        """x (normed): (1, B, S, D) read by every reader, or (H + 2 KV, B, S, D) as
        Q per head, then K and V per KV head.

        Returns (H, B, S, D) head outputs, or their sum (1, B, S, D) when not `per_head`.
        """
        H, G, dh = self.n_heads, self.n_kv_heads, self.head_dim
        _, B, S, D = x.shape
        if x.shape[0] == 1:
            shared = x[0]
            q = self.q_proj(shared).view(B, S, H, dh).transpose(1, 2)
            k = self.k_proj(shared).view(B, S, G, dh).transpose(1, 2)
            v = self.v_proj(shared).view(B, S, G, dh).transpose(1, 2)
        else:
            q = self._per_head(x[:H], self.q_proj)
            k = self._per_head(x[H : H + G], self.k_proj)
            v = self._per_head(x[H + G :], self.v_proj)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        z = scaled_dot_product(q, k, v, mask, self.scale)  # (B, H, S, dh)
        if not per_head:
            return self.o_proj(z.transpose(1, 2).reshape(B, S, H * dh)).unsqueeze(0)
        weight = self.o_proj.weight.view(-1, H, dh).permute(1, 2, 0)  # (H, dh, D)
        out = torch.matmul(z.transpose(0, 1).reshape(H, B * S, dh), weight)
        if self.o_proj.bias is not None:
            out = out + self.o_proj.bias / H
        return out.view(H, B, S, -1)


class FLlamaDecoderLayer(nn.Module):
    def __init__(self, config: FLlamaConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.self_attn = FLlamaAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        # Set by transformers' gradient_checkpointing_enable(), with `_gradient_checkpointing_func`.
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func: Callable | None = None

    def _attend(
        self,
        x: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        per_head: bool,
    ) -> torch.Tensor:
        return self.self_attn(self.input_layernorm(x), position_embeddings, mask, per_head)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.post_attention_layernorm(x))

    def _run(self, fn: Callable, *args) -> torch.Tensor:
        """Checkpoint only the computation between a read and a write: the mixer's
        reads and writes mutate the residual stream and must run exactly once."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(fn, *args)
        return fn(*args)

    def forward(
        self, mixer: ResidualMixer, position_embeddings: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> None:
        attn_site, mlp_site = mixer.graph.sites[2 * self.layer], mixer.graph.sites[2 * self.layer + 1]
        heads = self._run(self._attend, mixer.read(attn_site), position_embeddings, mask, mixer.per_writer)
        mixer.write(heads, count=self.self_attn.n_heads)
        mixer.write(self._run(self._feed_forward, mixer.read(mlp_site)), count=1)


class FLlamaPreTrainedModel(CircuitModelMixin, PreTrainedModel):
    config_class = FLlamaConfig
    config: FLlamaConfig
    base_model_prefix = "model"
    accepted_model_types = ("llama", "fllama")
    # Masks and λs load in fp32 whatever the checkpoint or requested dtype.
    _keep_in_fp32_modules_strict = ["circuit_masks"]
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # Linear, Embedding, RMSNorm and rotary buffers
        if isinstance(module, CircuitMasks):
            module.reset_parameters()


class FLlamaModel(FLlamaPreTrainedModel):
    def __init__(self, config: FLlamaConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList([FLlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        self.circuit_masks = CircuitMasks(fllama_graph(config))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
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
        """The final residual (after the final norm) as `logits`' input; see
        FLlamaForCausalLM. `inputs_embeds`, when given, replaces the token embeddings."""
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids or inputs_embeds")
        embeds = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        S = embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(S, device=embeds.device).unsqueeze(0)
        position_embeddings = self.rotary_emb(embeds, position_ids)
        if self.config.with_embedding_nodes:
            mixer = self.make_mixer(torch.zeros_like(embeds), corr_x, output_writer_states, mask_grad_deltas)
            mixer.write(embeds.unsqueeze(0), count=1)
        else:
            mixer = self.make_mixer(embeds, corr_x, output_writer_states, mask_grad_deltas)
        mask = attention_mask_from_padding(attention_mask, S)
        for layer in self.layers:
            layer(mixer, position_embeddings, mask)
        hidden = self.norm(mixer.read(self.circuit_graph.sites[-1])[0])
        return self.circuit_output(mixer, hidden, output_writer_states, target_edge_sparsity, target_node_sparsity)


class FLlamaForCausalLM(FLlamaPreTrainedModel):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: FLlamaConfig) -> None:
        super().__init__(config)
        self.model = FLlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @property
    def circuit_masks(self) -> CircuitMasks:
        return self.model.circuit_masks

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self, input_ids: torch.Tensor | None = None, output_positions: torch.Tensor | None = None, **kwargs
    ) -> CircuitModelOutput:
        """Logits of the circuit (masked) or, under `full_model()` or with
        `output_writer_states=True`, of the full model. `output_positions` (B, P)
        restricts the logits to those positions (B, P, V): Llama vocabularies are large."""
        out = self.model(input_ids, **kwargs)
        out.logits = self.lm_head(gather_positions(out.logits, output_positions))
        return out


# Checkpoints saved by this class load through the Auto classes too.
AutoModelForCausalLM.register(FLlamaConfig, FLlamaForCausalLM, exist_ok=True)
AutoConfig.register("fllama", FLlamaConfig, exist_ok=True)
