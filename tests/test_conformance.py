"""Every architecture against its transformers class, with the same random weights.

One suite, parametrized over `CASES`: a small random config per architecture (GQA
ones also with `ungroup_kv`). Adding an architecture is one line there; its
`Layout` says where the transformers model keeps what the hooks need. Checks: every
mask 1 is the HF model; every edge removed is HF on the corrupted input; removing
one edge shifts exactly that reader's input (HF forward hooks on the reader's
projection columns, MLP norm or final norm); a node mask of 0 replaces exactly that
writer's output by its corrupted one; save/load; gradients reach only masks and λs;
the fast path equals the literal reference; other checkpoints are refused.

Ungrouped K/V readers are checked against the MHA twin of the GQA model (every
key/value head repeated for its query heads), whose per-KV-head readers they are.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from typing import Callable

import pytest
import torch
from torch import nn
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PretrainedConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

import edge_pruning
from edge_pruning.architectures import architecture_of
from reference import reference_logits

TOL = 1e-4
VOCAB, BATCH, SEQ = 97, 3, 11


@dataclass(frozen=True)
class Layout:
    """Where a transformers model keeps what the hooks need (paths below a layer or the model)."""

    layers: str
    attn_norm: str
    # (layer, kind, head, head_dim, n_heads) -> the projection computing a Q/K/V reader, its columns
    qkv: Callable[[nn.Module, str, int, int, int], tuple[nn.Module, slice]]
    out_proj: str  # its input is the heads' concatenated outputs
    mlp_norm: str
    mlp_out: str  # its output is the MLP writer's
    final_norm: str
    embeddings: Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]
    post_norm: str | None = None  # a (1 + w) RMSNorm of the heads' sum (Gemma-2)


def _cols(start: int, width: int) -> slice:
    return slice(start, start + width)


LLAMA = Layout(
    layers="model.layers",
    attn_norm="input_layernorm",
    qkv=lambda layer, kind, h, dh, H: (layer.self_attn.get_submodule(f"{kind}_proj"), _cols(h * dh, dh)),
    out_proj="self_attn.o_proj",
    mlp_norm="post_attention_layernorm",
    mlp_out="mlp",
    final_norm="model.norm",
    embeddings=lambda hf, ids: {"embeds": hf.model.embed_tokens(ids)},
)
GEMMA2 = replace(
    LLAMA, mlp_norm="pre_feedforward_layernorm", mlp_out="post_feedforward_layernorm", post_norm="post_attention_layernorm"
)
GPT2 = Layout(
    layers="transformer.h",
    attn_norm="ln_1",
    qkv=lambda layer, kind, h, dh, H: (layer.attn.c_attn, _cols("qkv".index(kind) * H * dh + h * dh, dh)),
    out_proj="attn.c_proj",
    mlp_norm="ln_2",
    mlp_out="mlp",
    final_norm="transformer.ln_f",
    embeddings=lambda hf, ids: {
        "tok_embeds": hf.transformer.wte(ids),
        "pos_embeds": hf.transformer.wpe(torch.arange(ids.shape[1]))[None].expand(ids.shape[0], -1, -1),
    },
)
NEOX = Layout(
    layers="gpt_neox.layers",
    attn_norm="input_layernorm",
    qkv=lambda layer, kind, h, dh, H: (layer.attention.query_key_value, _cols(h * 3 * dh + "qkv".index(kind) * dh, dh)),
    out_proj="attention.dense",
    mlp_norm="post_attention_layernorm",
    mlp_out="mlp",
    final_norm="gpt_neox.final_layer_norm",
    embeddings=lambda hf, ids: {"embeds": hf.gpt_neox.embed_in(ids)},
)


@dataclass(frozen=True)
class Case:
    name: str
    hf_class: type
    config: PretrainedConfig
    layout: Layout
    ungroup_kv: bool = False

    @property
    def grouped(self) -> bool:
        kv = getattr(self.config, "num_key_value_heads", None)
        return kv is not None and kv < self.config.num_attention_heads


SMALL = dict(
    num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
    vocab_size=VOCAB, max_position_embeddings=32, initializer_range=0.2,
)  # fmt: skip
LINEAR_ROPE = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
SOFTCAPS = dict(query_pre_attn_scalar=16, attn_logit_softcapping=2.0, final_logit_softcapping=3.0)
CASES = [
    Case("gpt2", GPT2LMHeadModel, GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=32, initializer_range=0.2), GPT2),
    Case("llama-gqa", LlamaForCausalLM, LlamaConfig(**SMALL, num_key_value_heads=2, tie_word_embeddings=True), LLAMA),
    Case("llama-mha", LlamaForCausalLM, LlamaConfig(**SMALL, attention_bias=True, rope_parameters=LINEAR_ROPE), LLAMA),
    Case("qwen2", Qwen2ForCausalLM, Qwen2Config(**SMALL, num_key_value_heads=2, use_sliding_window=True, sliding_window=4, max_window_layers=1), LLAMA),
    Case("qwen3", Qwen3ForCausalLM, Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=16), LLAMA),
    Case("mistral", MistralForCausalLM, MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=4), LLAMA),
    Case("pythia", GPTNeoXForCausalLM, GPTNeoXConfig(**SMALL), NEOX),
    Case("gpt-neox-sequential", GPTNeoXForCausalLM, GPTNeoXConfig(**SMALL, use_parallel_residual=False, rotary_pct=0.5), NEOX),
    Case("gemma", GemmaForCausalLM, GemmaConfig(**SMALL, num_key_value_heads=2, head_dim=16), LLAMA),
    Case("gemma2", Gemma2ForCausalLM, Gemma2Config(**SMALL, num_key_value_heads=2, head_dim=16, sliding_window=4, **SOFTCAPS), GEMMA2),
]  # fmt: skip
CASES += [replace(c, name=f"{c.name}-ungrouped", ungroup_kv=True) for c in CASES if c.grouped]


# ----------------------------------------------------------------------------- HF side


def run_hf(hf, ids, hooks=()):
    """HF logits with the given (module, "pre"|"post", fn) hooks in place."""
    handles = [(m.register_forward_pre_hook if kind == "pre" else m.register_forward_hook)(fn) for m, kind, fn in hooks]
    try:
        with torch.no_grad():
            return hf(ids).logits
    finally:
        for h in handles:
            h.remove()


def mha_twin(case: Case, hf: nn.Module) -> nn.Module:
    """The same model with every key/value head repeated for each of its query heads."""
    cfg = copy.deepcopy(hf.config)
    H, G = cfg.num_attention_heads, cfg.num_key_value_heads
    cfg.num_key_value_heads = H
    state = hf.state_dict()
    for key, t in state.items():
        if any(f"{p}_proj." in key for p in "kv"):
            state[key] = t.view(G, -1, *t.shape[1:]).repeat_interleave(H // G, 0).flatten(0, 1)
    twin = case.hf_class(cfg).eval()
    twin.load_state_dict(state)
    return twin


@dataclass
class World:
    """One case's HF model, checkpoint, circuit models and inputs, built once."""

    case: Case
    hf: nn.Module  # the HF reference (the MHA twin when ungrouped)
    path: str
    clean: torch.Tensor
    corrupted: torch.Tensor
    n_heads: int
    head_dim: int
    models: dict

    def model(self, with_embedding_nodes: bool = True):
        """A fresh circuit model (its own masks), all masks exactly 1."""
        if with_embedding_nodes not in self.models:
            self.models[with_embedding_nodes] = edge_pruning.from_pretrained(
                self.path, with_embedding_nodes=with_embedding_nodes, ungroup_kv=self.case.ungroup_kv
            ).eval()
        model = copy.deepcopy(self.models[with_embedding_nodes])
        model.set_edge_threshold_for_deterministic(0.5)
        model.set_node_threshold_for_deterministic(0.5)
        return model

    def layers(self) -> nn.ModuleList:
        return self.hf.get_submodule(self.case.layout.layers)

    def writer_outputs(self, ids) -> dict[str, torch.Tensor]:
        """Per-writer outputs of the HF model: a head's is its z columns through the
        output projection (plus bias / H), its share of the post-norm (Gemma-2)."""
        lay, H, dh = self.case.layout, self.n_heads, self.head_dim
        zs, mlps = {}, {}
        hooks = []
        for l, layer in enumerate(self.layers()):
            hooks.append((layer.get_submodule(lay.out_proj), "pre", lambda m, a, l=l: zs.__setitem__(l, a[0])))
            hooks.append((layer.get_submodule(lay.mlp_out), "post", lambda m, a, o, l=l: mlps.__setitem__(l, o)))
        run_hf(self.hf, ids, hooks)
        out = lay.embeddings(self.hf, ids)
        with torch.no_grad():
            for l, layer in enumerate(self.layers()):
                proj = layer.get_submodule(lay.out_proj)
                heads = []
                for h in range(H):
                    only = torch.zeros_like(zs[l])
                    only[..., _cols(h * dh, dh)] = zs[l][..., _cols(h * dh, dh)]
                    head = proj.forward(only)
                    heads.append(head if proj.bias is None else head - proj.bias * (1 - 1 / H))
                if lay.post_norm is not None:
                    norm, total = layer.get_submodule(lay.post_norm), sum(heads)
                    scale = (1 + norm.weight) * torch.rsqrt(total.pow(2).mean(-1, keepdim=True) + norm.eps)
                    heads = [head * scale for head in heads]
                for h, head in enumerate(heads):
                    out[f"a{l}.h{h}"] = head
                out[f"m{l}"] = mlps[l]
        return out

    def logits_with_reader_delta(self, reader: str, delta: torch.Tensor) -> torch.Tensor:
        """HF logits on the clean input where exactly one reader's input is shifted by
        `delta`: a Q/K/V reader's columns of its projection are recomputed from its
        norm of the shifted residual; an MLP's or the final norm's input is shifted."""
        lay = self.case.layout
        shift = lambda m, a: (a[0] + delta,)  # noqa: E731
        if reader == "resid_post":
            return run_hf(self.hf, self.clean, [(self.hf.get_submodule(lay.final_norm), "pre", shift)])
        if reader.startswith("m"):
            return run_hf(self.hf, self.clean, [(self.layers()[int(reader[1:])].get_submodule(lay.mlp_norm), "pre", shift)])
        name, head, kind = reader.split(".")
        layer = self.layers()[int(name[1:])]
        norm = layer.get_submodule(lay.attn_norm)
        proj, cols = lay.qkv(layer, kind, int(head[1:]), self.head_dim, self.n_heads)
        saved = {}

        def splice(module, args, output):
            output = output.clone()
            output[..., cols] = proj.forward(norm.forward(saved["x"] + delta))[..., cols]
            return output

        return run_hf(self.hf, self.clean, [(norm, "pre", lambda m, a: saved.__setitem__("x", a[0])), (proj, "post", splice)])

    def logits_with_writer_delta(self, writer: str, delta: torch.Tensor) -> torch.Tensor:
        """HF logits where one head's or MLP's output is shifted by `delta` (added to
        the attention's or MLP's output, as the residual adds it)."""
        lay, layer = self.case.layout, self.layers()[int(writer.split(".")[0][1:])]
        module = layer.get_submodule(lay.mlp_out if writer.startswith("m") else lay.post_norm or lay.out_proj)
        return run_hf(self.hf, self.clean, [(module, "post", lambda m, a, o: o + delta)])


def _randomize(hf: nn.Module) -> None:
    """Biases and norm weights off their init (0 or 1), so that they matter."""
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def world(request, tmp_path_factory) -> World:
    case: Case = request.param
    torch.manual_seed(0)
    hf = case.hf_class(copy.deepcopy(case.config)).eval()
    _randomize(hf)
    path = tmp_path_factory.mktemp(case.name)
    hf.save_pretrained(path)
    g = torch.Generator().manual_seed(1)
    clean, corrupted = (torch.randint(0, VOCAB, (BATCH, SEQ), generator=g) for _ in range(2))
    w = World(case, mha_twin(case, hf) if case.ungroup_kv else hf, str(path), clean, corrupted, 0, 0, {})
    attn = w.model().base_model.blocks()[0].circuit_attention
    w.n_heads, w.head_dim = attn.n_heads, attn.head_dim
    return w


@pytest.fixture(scope="session")
def foreign_checkpoints(tmp_path_factory) -> dict[str, str]:
    """A tiny GPT-2 and a tiny Llama checkpoint, for the model-type check."""
    out = {}
    for name, model in (
        ("gpt2", GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=8))),
        ("llama", LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=50))),
    ):
        out[name] = str(tmp_path_factory.mktemp(f"foreign_{name}"))
        model.save_pretrained(out[name])
    return out


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("with_embedding_nodes", [True, False])
def test_all_masks_one_equal_hf(world, with_embedding_nodes):
    model = world.model(with_embedding_nodes)
    ref = run_hf(world.hf, world.clean)
    with torch.no_grad():
        ours = model(world.clean).logits
        with model.full_model():
            full = model(world.clean).logits
    assert (ours - ref).abs().max() <= TOL
    assert (full - ref).abs().max() <= TOL


def test_all_edges_removed_equal_hf_on_corrupted(world):
    model = world.model()
    with torch.no_grad():
        corr_x = model(world.corrupted, output_writer_states=True).writer_states
        model.circuit_masks.edge_log_alphas.fill_(-20.0)
        ours = model(world.clean, corr_x=corr_x).logits
    assert model.get_edge_sparsity() == 1.0
    assert (ours - run_hf(world.hf, world.corrupted)).abs().max() <= TOL


EMBED = "<first embedding>"
EDGES = [
    ("a0.h2", "a1.h3.q"),  # Q
    ("m0", "a1.h1.k"),  # K: key/value head 1 (grouped), query head 1 (ungrouped)
    (EMBED, "a0.h0.v"),  # V, from an embedding
    ("a0.h1", "m1"),  # MLP
    ("a1.h2", "resid_post"),
    ("m1", "resid_post"),
]


@pytest.mark.parametrize("writer,reader", EDGES, ids=[f"{w}->{r}" for w, r in EDGES])
def test_removing_one_edge_shifts_exactly_that_reader(world, writer, reader):
    model = world.model()
    writer = model.circuit_graph.writers[0].name if writer == EMBED else writer
    x, c = world.writer_outputs(world.clean), world.writer_outputs(world.corrupted)
    with torch.no_grad():
        corr_x = model(world.corrupted, output_writer_states=True).writer_states
        model.add_or_remove_edge(writer, reader, remove=True)
        ours = model(world.clean, corr_x=corr_x).logits
    expected = world.logits_with_reader_delta(reader, c[writer] - x[writer])
    assert (ours - expected).abs().max() <= TOL
    assert (expected - run_hf(world.hf, world.clean)).abs().max() > 1e-3  # the edge mattered
    assert len(model.get_edges()) == model.circuit_graph.n_edges - 1


@pytest.mark.parametrize("writer", ["a0.h2", "m0"])
def test_node_mask_zero_equals_corrupting_that_writer(world, writer):
    model = world.model(with_embedding_nodes=False)
    x, c = world.writer_outputs(world.clean), world.writer_outputs(world.corrupted)
    with torch.no_grad():
        corr_x = model(world.corrupted, output_writer_states=True).writer_states
        model.circuit_masks.node_log_alphas[model.circuit_graph.writer_index[writer]] = -20.0
        ours = model(world.clean, corr_x=corr_x).logits
    expected = world.logits_with_writer_delta(writer, c[writer] - x[writer])
    assert (ours - expected).abs().max() <= TOL
    assert (expected - run_hf(world.hf, world.clean)).abs().max() > 1e-3


def test_writer_states_equal_hf_writer_outputs(world):
    model = world.model()
    x = world.writer_outputs(world.clean)
    with torch.no_grad():
        states = model(world.clean, output_writer_states=True).writer_states
    for i, w in enumerate(model.circuit_graph.writers):
        assert (states[i] - x[w.name]).abs().max() <= TOL, w.name


def test_save_and_load_round_trip(world, tmp_path):
    model = world.model()
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_()
        model.circuit_masks.node_log_alphas.normal_()
        model.circuit_masks.sparsity_lambda_edges_1.fill_(0.5)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == type(model.config).model_type
    assert config["with_embedding_nodes"] is True and config["ungroup_kv"] is world.case.ungroup_kv
    again = edge_pruning.from_pretrained(tmp_path).eval()  # no flags needed
    again.set_edge_threshold_for_deterministic(0.5)
    again.set_node_threshold_for_deterministic(0.5)
    assert type(again) is type(model)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    tied = again.get_output_embeddings().weight.data_ptr() == again.get_input_embeddings().weight.data_ptr()
    assert tied == bool(world.hf.config.tie_word_embeddings)
    with torch.no_grad():
        assert torch.equal(model(world.clean).logits, again(world.clean).logits)


def test_gradients_reach_masks_and_lambdas_only(world):
    model = world.model()
    model.freeze_model_weights()
    model.train()
    masks = model.circuit_masks
    with torch.no_grad():
        corr_x = model(world.corrupted, output_writer_states=True).writer_states
        masks.edge_log_alphas.normal_(0.0, 1.0)  # away from saturation: samples pass gradients
        masks.node_log_alphas.normal_(0.0, 1.0)
        embeds = [i for i, w in enumerate(model.circuit_graph.writers) if w.kind == "embed"]
        masks.node_log_alphas[embeds] = 10.0  # else often all inputs are corrupted and nothing differs
    out = model(world.clean, corr_x=corr_x, target_edge_sparsity=0.5, target_node_sparsity=0.3)
    (out.logits.logsumexp(-1).mean() + out.edge_loss + out.node_loss).backward()
    assert masks.edge_log_alphas.grad[masks.edge_valid].abs().sum() > 0
    assert masks.node_log_alphas.grad.abs().sum() > 0
    assert all(lam.grad is not None and lam.grad.abs() > 0 for lam in masks.lambdas())
    mask_ids = {id(p) for p in masks.parameters()}
    assert [n for n, p in model.named_parameters() if id(p) not in mask_ids and p.grad is not None] == []


@pytest.mark.parametrize("with_embedding_nodes", [True, False])
def test_fast_path_equals_literal_reference(world, with_embedding_nodes):
    """Logits and mask gradients of the kernel against the slow §2 formula, with
    random masks strictly inside (0, 1)."""
    model = world.model(with_embedding_nodes)
    model.freeze_model_weights()
    graph = model.circuit_graph
    with torch.no_grad():
        corr_x = model(world.corrupted, output_writer_states=True).writer_states
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(graph.n_readers, graph.n_writers, generator=g).requires_grad_()
    nodes = torch.rand(graph.n_writers, generator=g).requires_grad_()
    valid = graph.edge_valid.float()
    with model.masks_override(edges * nodes[None, :]):
        ours = model(world.clean, corr_x=corr_x).logits
    ref = reference_logits(model, world.clean, edges * valid, nodes, corr_x)
    assert (ours - ref).abs().max() <= TOL
    weights = torch.randn_like(ours)
    g_ours = torch.autograd.grad((ours * weights).sum(), [edges, nodes])
    g_ref = torch.autograd.grad((ref * weights).sum(), [edges, nodes])
    assert torch.allclose(g_ours[0] * valid, g_ref[0] * valid, atol=1e-4, rtol=1e-3)
    assert torch.allclose(g_ours[1], g_ref[1], atol=1e-4, rtol=1e-3)


def test_other_architectures_checkpoints_are_refused(world, foreign_checkpoints):
    cls = type(world.model())
    foreign = "llama" if "gpt2" in cls.accepted_model_types else "gpt2"
    with pytest.raises(ValueError, match=foreign):
        cls.from_pretrained(foreign_checkpoints[foreign])
    assert architecture_of(world.case.config.model_type).model_class() is cls
