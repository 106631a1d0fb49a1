"""Compiled Tracr models with edge and node masks: `ErazrConfig` and `ErazrModel`.

A Tracr model is a transformer with no layer norm, ReLU MLPs and an unembedding
straight from the final residual. `ErazrModel.from_tracr` builds one from a
`tracrx` export (`data/tracr_models/*.tracr.pkl`); `save_pretrained` and
`from_pretrained` then work as for the other circuit models. Writers are the token
and position embeddings (always nodes), every head (`z_h W_O[h] + b_O / H`) and
every MLP; readers are each head's Q, K and V input, each MLP input and
`resid_post`, as in `tracrx.circuit`. The forward pass follows
`tracrx.reference.forward`.

Causal attention: Tracr replaces the scores of future keys by -1e30 before the
softmax. Every query may attend to itself, so each row keeps a finite score, and
exp(-1e30 - max) is exactly 0 in float32: masking with -inf (SDPA's boolean or
`is_causal` mask) gives the same probabilities. Tracr never masks padding; an
`attention_mask` of ones therefore changes nothing, and one with zeros hides those
keys, as in the other circuit models.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from edge_pruning.circuit import CircuitMasks, CircuitModelOutput, gather_positions
from edge_pruning.graph import CircuitGraph

from .modeling_circuit import CircuitAttention, CircuitDecoder, CircuitLayer, CircuitPreTrainedModel, LayerInputs, register

EMBEDDINGS = ("tok_embeds", "pos_embeds")


class ErazrConfig(PretrainedConfig):
    """The Tracr export's architecture and vocabularies.

    Vocabularies are stored as [token, id] pairs, not dicts, so that integer tokens
    (reverse's 1, 2, 3) survive the JSON round trip of `config.json`.
    """

    model_type = "erazr"

    def __init__(
        self,
        task: str = "",
        n_layers: int = 1,
        n_heads: int = 1,
        d_model: int = 1,
        d_head: int = 1,
        d_mlp: int = 1,
        vocab_size: int = 1,
        n_positions: int = 1,
        n_outputs: int = 1,
        causal: bool = False,
        categorical_output: bool = True,
        attn_scale: float = 1.0,
        input_vocab: list[list[Any]] | None = None,
        output_vocab: list[list[Any]] | None = None,
        with_embedding_nodes: bool = True,
        **kwargs,
    ) -> None:
        self.with_embedding_nodes = with_embedding_nodes
        self.task = task
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.d_model = d_model
        self.d_head = d_head
        self.d_mlp = d_mlp
        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_outputs = n_outputs
        self.causal = causal
        self.categorical_output = categorical_output
        self.attn_scale = attn_scale
        self.input_vocab = [list(p) for p in input_vocab] if input_vocab is not None else []
        self.output_vocab = [list(p) for p in output_vocab] if output_vocab is not None else None
        super().__init__(**kwargs)

    def __setattr__(self, key: str, value: Any) -> None:
        """Refuse `with_embedding_nodes=False`, also when `from_pretrained` sets it."""
        if key == "with_embedding_nodes" and not value:
            raise ValueError("Tracr models always have embedding nodes (tok_embeds, pos_embeds)")
        super().__setattr__(key, value)

    @classmethod
    def from_tracr_weights(cls, weights) -> "ErazrConfig":
        """The config of a `tracrx.TracrWeights` export."""
        c = weights.config
        if c.layer_norm or c.activation != "relu":
            raise ValueError("only Tracr models without layer norm and with ReLU MLPs are supported")
        return cls(
            task=weights.task,
            n_layers=c.n_layers,
            n_heads=c.n_heads,
            d_model=c.d_model,
            d_head=c.d_head,
            d_mlp=c.d_mlp,
            vocab_size=c.vocab_size,
            n_positions=c.n_positions,
            n_outputs=c.n_outputs,
            causal=c.causal,
            categorical_output=c.categorical_output,
            attn_scale=c.attn_scale,
            input_vocab=[[t, i] for t, i in weights.input_vocab.items()],
            output_vocab=None if weights.output_vocab is None else [[v, i] for v, i in weights.output_vocab.items()],
            bos_token_id=weights.bos_id,
            pad_token_id=weights.pad_id,
        )

    def token_to_id(self) -> dict[Any, int]:
        return {t: i for t, i in self.input_vocab}


class ErazrAttention(CircuitAttention):
    """Tracr attention, in Tracr's per-head layout: w_qkv (3, H, D, K) for Q, K, V;
    w_o (H, K, D)."""

    def __init__(self, config: ErazrConfig) -> None:
        super().__init__()
        H, D, K = config.n_heads, config.d_model, config.d_head
        self.n_heads = self.n_kv_heads = H
        self.head_dim = K
        self.scaling = config.attn_scale
        self.w_qkv = nn.Parameter(torch.empty(3, H, D, K))
        self.b_qkv = nn.Parameter(torch.empty(3, H, K))
        self.w_o = nn.Parameter(torch.empty(H, K, D))
        self.b_o = nn.Parameter(torch.empty(D))

    def head_weights(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        i = "qkv".index(kind)
        return self.w_qkv[i], self.b_qkv[i]

    def out_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.w_o, self.b_o

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = torch.einsum("bsd,thdk->tbhsk", x, self.w_qkv) + self.b_qkv[:, None, :, None, :]
        return qkv[0], qkv[1], qkv[2]

    def output(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bhsk,hkd->bsd", z, self.w_o) + self.b_o


class ErazrMLP(nn.Module):
    def __init__(self, config: ErazrConfig) -> None:
        super().__init__()
        D, M = config.d_model, config.d_mlp
        self.w_in = nn.Parameter(torch.empty(D, M))
        self.b_in = nn.Parameter(torch.empty(M))
        self.w_out = nn.Parameter(torch.empty(M, D))
        self.b_out = nn.Parameter(torch.empty(D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.w_in + self.b_in) @ self.w_out + self.b_out


class ErazrLayer(CircuitLayer):
    """Attention then MLP, each added to the residual (no layer norm)."""

    def __init__(self, config: ErazrConfig, layer: int) -> None:
        super().__init__(layer)
        self.attn = ErazrAttention(config)
        self.mlp = ErazrMLP(config)

    @property
    def circuit_attention(self) -> ErazrAttention:
        return self.attn

    def attend(self, x: torch.Tensor, inputs: LayerInputs, per_head: bool) -> torch.Tensor:
        return self.attn(x, inputs, per_head)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class ErazrModel(CircuitDecoder, CircuitPreTrainedModel, PreTrainedModel):
    """A compiled Tracr model whose edges and nodes can be pruned.

    `logits` are `resid_post @ unembed`, (B, S, O): class scores for categorical
    programs (reverse: argmax), the value itself in column 0 for numerical ones
    (xproportion).
    """

    config_class = ErazrConfig
    config: ErazrConfig
    base_model_prefix = "erazr"
    embedding_names = EMBEDDINGS
    _input_embed_layer = "tok_embed"

    def __init__(self, config: ErazrConfig) -> None:
        super().__init__(config)
        self.tok_embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.n_positions, config.d_model)
        self.layers = nn.ModuleList([ErazrLayer(config, i) for i in range(config.n_layers)])
        self.unembed = nn.Linear(config.d_model, config.n_outputs, bias=False)
        self.init_circuit()

    @property
    def causal(self) -> bool:
        return self.config.causal

    def circuit_graph_of(self, config: ErazrConfig) -> CircuitGraph:
        return CircuitGraph.layered(config.n_layers, config.n_heads, embeddings=EMBEDDINGS)

    def embed(self, input_ids, inputs_embeds, position_ids) -> list[torch.Tensor]:
        tok = self.tok_embed(input_ids) if inputs_embeds is None else inputs_embeds
        return [tok, self.pos_embed(position_ids).expand_as(tok)]

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Zeros for model weights (a checkpoint or `from_tracr` supplies them);
        masks start at N(10, 0.01)."""
        from transformers import initialization as init

        if isinstance(module, CircuitMasks):
            module.reset_parameters()
        elif isinstance(module, (ErazrAttention, ErazrMLP, nn.Embedding, nn.Linear)):
            for param in module.parameters(recurse=False):
                init.zeros_(param)

    @classmethod
    def from_tracr(cls, path: str | os.PathLike) -> "ErazrModel":
        """Build the model from a `tracrx` export (a pickle of numpy arrays)."""
        from tracrx.export import load_weights

        weights = load_weights(path)
        model = cls(ErazrConfig.from_tracr_weights(weights))

        def t(array) -> torch.Tensor:
            return torch.from_numpy(array).float()

        with torch.no_grad():
            model.tok_embed.weight.copy_(t(weights.tok_embed))
            model.pos_embed.weight.copy_(t(weights.pos_embed))
            model.unembed.weight.copy_(t(weights.unembed).T)
            for layer, lw in zip(model.layers, weights.layers):
                layer.attn.w_qkv.copy_(torch.stack([t(lw.W_Q), t(lw.W_K), t(lw.W_V)]))
                layer.attn.b_qkv.copy_(torch.stack([t(lw.b_Q), t(lw.b_K), t(lw.b_V)]))
                layer.attn.w_o.copy_(t(lw.W_O))
                layer.attn.b_o.copy_(t(lw.b_O))
                layer.mlp.w_in.copy_(t(lw.W_in))
                layer.mlp.b_in.copy_(t(lw.b_in))
                layer.mlp.w_out.copy_(t(lw.W_out))
                layer.mlp.b_out.copy_(t(lw.b_out))
        return model.eval()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
        **kwargs,
    ) -> CircuitModelOutput:
        """Logits of the circuit (masked) or, under `full_model()` or with
        `output_writer_states=True`, of the full model. `corr_x` None in the circuit
        is zero ablation. `output_positions` (B, P) restricts the logits to those
        positions (B, P, O). `inputs_embeds` replaces the token embeddings and
        `mask_grad_deltas` the deltas of the mask gradient (attribution baselines)."""
        S = input_ids.shape[1]
        if S > self.config.n_positions:
            raise ValueError(f"sequence length {S} exceeds the model's {self.config.n_positions} positions")
        out = super().forward(input_ids, attention_mask=attention_mask, **kwargs)
        out["logits"] = self.unembed(gather_positions(out.last_hidden_state, output_positions))
        return out


register(ErazrConfig, base=ErazrModel)
