"""The architecture layer: what every circuit model shares, written once.

A circuit model runs a decoder on a `ResidualMixer`: every layer reads its
attention's Q/K/V inputs (one per reader), computes, writes one output per head,
then reads, computes and writes its MLP. This module holds that loop and everything
around it; an architecture file only says how its attention, MLP and norms compute,
in transformers' own modules and weight names, so that its checkpoints load as they
are:

- its config: transformers' config class plus `CircuitConfig` (the graph options,
  saved in config.json);
- its attention: a `CircuitAttention` naming its per-head weights (`head_weights`,
  `out_weights`), its plain path (`project`, `output`) and its rotary/norms
  (`position`); `LinearHeadsAttention` covers q/k/v/o_proj layouts;
- its layer: a `CircuitLayer` holding the modules under transformers' names and
  saying what `attend` and `feed_forward` compute (`PreNormLayer`: Llama's block);
- its base model: `CircuitDecoder` (embeddings, layers, final norm; `RotaryDecoder`
  for Llama's layout) and its LM head: `CircuitForCausalLM`.

Adding a family: a Llama variant names its transformers classes (modeling_fqwen2.py);
another layout writes its attention's four weight accessors and its layer
(modeling_fgpt_neox.py). Then one line in `edge_pruning.architectures.ARCHITECTURES`
and one `Case` in tests/test_conformance.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from edge_pruning.attention import attention_mask_from_padding, scaled_dot_product
from edge_pruning.circuit import CircuitMasks, CircuitModelMixin, CircuitModelOutput, gather_positions
from edge_pruning.graph import CircuitGraph
from edge_pruning.mixing import ResidualMixer


@dataclass(kw_only=True)
class CircuitConfig:
    """The graph options of a circuit model, saved in its config so a reload needs no flag.

    `with_embedding_nodes`: the embeddings are writers (else always-kept inputs).
    `ungroup_kv`: with grouped-query attention, K and V are read per query head
    (the graph MIB and EAP-IG use) instead of per key/value head.
    """

    with_embedding_nodes: bool = False
    ungroup_kv: bool = False


@dataclass
class LayerInputs:
    """What every layer of one forward shares."""

    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None
    masks: dict[int | None, torch.Tensor | None]  # by sliding window (None: full attention)
    causal: bool = True


def per_head_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Each of the n inputs x (n, B, S, D) through its own head's weight (n, D, dh)
    and bias (n, dh): (B, n, S, dh), in one batched matmul."""
    n, B, S, D = x.shape
    out = torch.matmul(x.reshape(n, B * S, D), weight)
    if bias is not None:
        out = out + bias[:, None, :]
    return out.view(n, B, S, -1).transpose(0, 1)


class CircuitAttention(nn.Module):
    """Attention whose Q/K/V inputs are read per reader and whose heads write apart.

    Subclasses set `n_heads`, `n_kv_heads`, `head_dim` and `scaling` and name their
    weights; `window` (sliding window) and `softcap` are optional.
    """

    n_heads: int
    n_kv_heads: int
    head_dim: int
    scaling: float
    window: int | None = None
    softcap: float | None = None

    def head_weights(self, kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Q, K or V weights per head, (n, D, dh), and biases (n, dh) or None."""
        raise NotImplementedError

    def out_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output projection per head, (H, dh, D), and its bias (D) or None."""
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The plain path: q, k, v (B, n, S, dh) from one shared input (B, S, D)."""
        raise NotImplementedError

    def output(self, z: torch.Tensor) -> torch.Tensor:
        """The plain path: the summed output (B, S, D) of z (B, H, S, dh)."""
        raise NotImplementedError

    def position(self, q: torch.Tensor, k: torch.Tensor, inputs: LayerInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary embeddings (and per-head norms) of q and k; none by default."""
        return q, k

    def _kv_weights(self, kind: str, n_readers: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """K/V weights for `n_readers` readers: per key/value head, or, ungrouped, the
        weights of each query head's key/value head."""
        weight, bias = self.head_weights(kind)
        if n_readers == weight.shape[0]:
            return weight, bias
        index = torch.arange(n_readers, device=weight.device) // (n_readers // weight.shape[0])
        return weight[index], None if bias is None else bias[index]

    def forward(self, x: torch.Tensor, inputs: LayerInputs, per_head: bool) -> torch.Tensor:
        """x (normed): (1, B, S, D) read by every reader, or (H + 2 n, B, S, D) as Q per
        head, then K and V per key/value head (n = n_kv_heads) or per query head (n = H).

        Returns (H, B, S, D) head outputs, or their sum (1, B, S, D) when not `per_head`.
        """
        H = self.n_heads
        _, B, S, _ = x.shape
        if x.shape[0] == 1:
            q, k, v = self.project(x[0])
        else:
            n = (x.shape[0] - H) // 2
            q = per_head_linear(x[:H], *self.head_weights("q"))
            k = per_head_linear(x[H : H + n], *self._kv_weights("k", n))
            v = per_head_linear(x[H + n :], *self._kv_weights("v", n))
        q, k = self.position(q, k, inputs)
        z = scaled_dot_product(q, k, v, inputs.masks[self.window], self.scaling, inputs.causal, self.softcap)
        if not per_head:
            return self.output(z).unsqueeze(0)
        weight, bias = self.out_weights()
        out = torch.matmul(z.transpose(0, 1).reshape(H, B * S, self.head_dim), weight)
        if bias is not None:
            out = out + bias / H
        return out.view(H, B, S, -1)


class LinearHeadsAttention(CircuitAttention):
    """The q_proj / k_proj / v_proj / o_proj layout (Llama and its variants).

    Mixed in before a transformers attention class, whose `__init__` builds the
    weights under their names; its `forward` is replaced. `rotary` is the family's
    `apply_rotary_pos_emb` (a staticmethod).
    """

    q_proj: nn.Linear
    k_proj: nn.Linear
    v_proj: nn.Linear
    o_proj: nn.Linear
    rotary: Callable

    def __init__(self, config, layer: int) -> None:
        super().__init__(config, layer)
        if not getattr(self, "is_causal", True):
            raise NotImplementedError("bidirectional attention is not supported")
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.window = getattr(self, "sliding_window", None)

    def head_weights(self, kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        proj = getattr(self, f"{kind}_proj")
        weight = proj.weight.view(-1, self.head_dim, proj.in_features).transpose(1, 2)
        return weight, None if proj.bias is None else proj.bias.view(-1, self.head_dim)

    def out_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight = self.o_proj.weight.view(-1, self.n_heads, self.head_dim).permute(1, 2, 0)
        return weight, self.o_proj.bias

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, S, _ = x.shape
        q, k, v = (proj(x).view(B, S, -1, self.head_dim).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        return q, k, v

    def output(self, z: torch.Tensor) -> torch.Tensor:
        B, _, S, _ = z.shape
        return self.o_proj(z.transpose(1, 2).reshape(B, S, -1))

    def position(self, q: torch.Tensor, k: torch.Tensor, inputs: LayerInputs) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = inputs.position_embeddings
        return self.rotary(q, k, cos, sin)


class CircuitLayer(nn.Module):
    """One block on the residual stream: read → compute → write, attention then MLP.

    Subclasses hold the modules under transformers' names and define `attend`
    (norm → attention, from the Q/K/V readers' inputs) and `feed_forward` (norm →
    MLP). When the graph's MLP site has the attention's prefix (a parallel
    residual), the MLP reads what the attention reads.
    """

    def __init__(self, layer: int) -> None:
        super().__init__()
        self.layer = layer
        # Set by transformers' gradient_checkpointing_enable(), with `_gradient_checkpointing_func`.
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func: Callable | None = None

    @property
    def circuit_attention(self) -> CircuitAttention:
        """The layer's attention module (named as transformers names it)."""
        raise NotImplementedError

    def attend(self, x: torch.Tensor, inputs: LayerInputs, per_head: bool) -> torch.Tensor:
        raise NotImplementedError

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _run(self, fn: Callable, *args) -> torch.Tensor:
        """Checkpoint only the computation between a read and a write: the mixer's
        reads and writes mutate the residual stream and must run exactly once."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(fn, *args)
        return fn(*args)

    def forward(self, mixer: ResidualMixer, inputs: LayerInputs) -> None:
        attn_site, mlp_site = mixer.graph.attn_site(self.layer), mixer.graph.mlp_site(self.layer)
        attn_in = mixer.read(attn_site)
        parallel = mlp_site.n_writers_before == attn_site.n_writers_before
        mlp_in = mixer.read(mlp_site) if parallel else None
        mixer.write(self._run(self.attend, attn_in, inputs, mixer.per_writer), count=self.circuit_attention.n_heads)
        if not parallel:
            mlp_in = mixer.read(mlp_site)
        mixer.write(self._run(self.feed_forward, mlp_in), count=1)


class PreNormLayer(CircuitLayer):
    """Llama's block: input_layernorm → self_attn, post_attention_layernorm → mlp,
    from the family's attention, MLP and norm classes."""

    attention_class: type[CircuitAttention]
    mlp_class: type[nn.Module]
    norm_class: type[nn.Module]

    def __init__(self, config, layer: int) -> None:
        super().__init__(layer)
        self.self_attn = self.attention_class(config, layer)
        self.mlp = self.mlp_class(config)
        self.input_layernorm = self.norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = self.norm_class(config.hidden_size, eps=config.rms_norm_eps)

    @property
    def circuit_attention(self) -> CircuitAttention:
        return self.self_attn

    def attend(self, x: torch.Tensor, inputs: LayerInputs, per_head: bool) -> torch.Tensor:
        return self.self_attn(self.input_layernorm(x), inputs, per_head)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.post_attention_layernorm(x))


class CircuitPreTrainedModel(CircuitModelMixin):
    """Mixed in before a family's transformers `PreTrainedModel` (whose weight init it
    keeps); `accepted_model_types` come from the config class: ours and the one it extends."""

    # Masks and λs load in fp32 whatever the checkpoint or requested dtype.
    _keep_in_fp32_modules_strict = ["circuit_masks"]
    supports_gradient_checkpointing = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        config_class = cls.__dict__.get("config_class")
        if config_class is not None:
            types = (c.model_type for c in reversed(config_class.__mro__) if getattr(c, "model_type", ""))
            cls.accepted_model_types = tuple(dict.fromkeys(types))

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, CircuitMasks):
            module.reset_parameters()


class CircuitDecoder:
    """The base model every circuit model shares: embeddings, layers on a residual
    mixer, final norm; returns `last_hidden_state` (after the final norm).

    Mixed in before a `CircuitPreTrainedModel`. A subclass builds its modules, then
    calls `init_circuit`; it may override `embed`, `position_embeddings`,
    `final_norm`, `blocks` and `circuit_graph_of`.
    """

    embedding_names: tuple[str, ...] = ("embeds",)
    causal = True
    config: CircuitConfig

    def circuit_graph_of(self, config) -> CircuitGraph:
        embeddings = self.embedding_names if config.with_embedding_nodes else ()
        return CircuitGraph.layered(
            config.num_hidden_layers,
            config.num_attention_heads,
            getattr(config, "num_key_value_heads", None),
            embeddings=embeddings,
            ungroup_kv=getattr(config, "ungroup_kv", False),
            parallel_mlp=self.parallel_mlp(config),
        )

    def parallel_mlp(self, config) -> bool:
        """Whether each MLP reads the residual its layer's attention reads."""
        return False

    def init_circuit(self) -> None:
        self.circuit_masks = CircuitMasks(self.circuit_graph_of(self.config))
        self.post_init()

    def blocks(self) -> nn.ModuleList:
        return self.layers

    def embed(self, input_ids, inputs_embeds, position_ids) -> list[torch.Tensor]:
        """The embedding writers' outputs, in `embedding_names` order."""
        return [self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds]

    def position_embeddings(self, embeds: torch.Tensor, position_ids: torch.Tensor):
        return None

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)

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
        """The circuit (masked) or, under `full_model()` or with
        `output_writer_states=True`, the full model. `inputs_embeds` replaces the
        token embeddings; `corr_x` holds the writers' corrupted outputs (None in the
        circuit: zero ablation); `mask_grad_deltas` replaces the deltas of the mask
        gradient (attribution baselines)."""
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids or inputs_embeds")
        S = (input_ids if inputs_embeds is None else inputs_embeds).shape[1]
        device = (input_ids if inputs_embeds is None else inputs_embeds).device
        if position_ids is None:
            position_ids = torch.arange(S, device=device).unsqueeze(0)
        embeds = self.embed(input_ids, inputs_embeds, position_ids)
        if self.config.with_embedding_nodes:
            mixer = self.make_mixer(torch.zeros_like(embeds[0]), corr_x, output_writer_states, mask_grad_deltas)
            if mixer.n_written == 0:  # else resumed past them (a prefix cache)
                mixer.write(torch.stack(embeds), count=len(embeds))
        else:
            mixer = self.make_mixer(sum(embeds[1:], embeds[0]), corr_x, output_writer_states, mask_grad_deltas)
        windows = {layer.circuit_attention.window for layer in self.blocks()}
        masks = {w: attention_mask_from_padding(attention_mask, S, self.causal, w, device) for w in windows}
        inputs = LayerInputs(self.position_embeddings(embeds[0], position_ids), masks, self.causal)
        for layer in self.blocks()[mixer.first_layer :]:
            layer(mixer, inputs)
        hidden = self.final_norm(mixer.read(self.circuit_graph.final_site)[0])
        return self.circuit_output(
            mixer, None, output_writer_states, target_edge_sparsity, target_node_sparsity, last_hidden_state=hidden
        )


class RotaryDecoder(CircuitDecoder):
    """Llama's base model: embed_tokens, layers, norm, rotary_emb, from the family's
    layer, norm and rotary classes (`make_embedding` for another embedding)."""

    layer_class: type[CircuitLayer]
    norm_class: type[nn.Module]
    rotary_class: type[nn.Module]

    def __init__(self, config) -> None:
        super().__init__(config)
        self.embed_tokens = self.make_embedding(config)
        self.layers = nn.ModuleList([self.layer_class(config, i) for i in range(config.num_hidden_layers)])
        self.norm = self.norm_class(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = self.rotary_class(config)
        self.init_circuit()

    def make_embedding(self, config) -> nn.Embedding:
        return nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)

    def position_embeddings(self, embeds: torch.Tensor, position_ids: torch.Tensor):
        return self.rotary_emb(embeds, position_ids)


class CircuitForCausalLM:
    """The LM head on a `CircuitDecoder` (`base_class`), stored under the family's
    prefix and head name so checkpoints load as they are; mixed in before a
    `CircuitPreTrainedModel`."""

    base_class: type
    head_name = "lm_head"
    base_model_prefix: str

    def __init__(self, config) -> None:
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_class(config))
        setattr(self, self.head_name, nn.Linear(config.hidden_size, config.vocab_size, bias=False))
        self.post_init()

    @property
    def circuit_masks(self) -> CircuitMasks:
        return self.base_model.circuit_masks

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.base_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return getattr(self, self.head_name)

    def set_output_embeddings(self, value: nn.Linear) -> None:
        setattr(self, self.head_name, value)

    def final_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits from the head's output (Gemma-2 soft-caps them)."""
        return logits

    def forward(
        self, input_ids: torch.Tensor | None = None, output_positions: torch.Tensor | None = None, **kwargs
    ) -> CircuitModelOutput:
        """Logits of the circuit (masked) or, under `full_model()` or with
        `output_writer_states=True`, of the full model. `output_positions` (B, P)
        restricts the logits to those positions (B, P, V): vocabularies are large."""
        out = self.base_model(input_ids, **kwargs)
        hidden = gather_positions(out.last_hidden_state, output_positions)
        out["logits"] = self.final_logits(self.get_output_embeddings()(hidden))
        return out


def register(config_class: type, causal_lm: type | None = None, base: type | None = None) -> None:
    """Checkpoints saved by these classes load through transformers' Auto classes too."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    if causal_lm is not None:
        AutoModelForCausalLM.register(config_class, causal_lm, exist_ok=True)
    if base is not None:
        AutoModel.register(config_class, base, exist_ok=True)
