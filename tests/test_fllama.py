"""FLlama against transformers' own LlamaForCausalLM with the same random weights.

Two small configs: grouped-query attention (4 heads, 2 KV heads) with tied
embeddings, and plain multi-head attention with untied embeddings, attention bias
and a linear rope scaling.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from edge_pruning.graph import CircuitGraph
from modeling.modeling_fllama import FLlamaForCausalLM
from reference import reference_fllama_logits

TOL = 1e-4
N_LAYER, N_HEAD, D, VOCAB = 2, 4, 64, 97
DH = D // N_HEAD
CONFIGS = {
    "gqa_tied": dict(num_key_value_heads=2, tie_word_embeddings=True),
    "mha_untied": dict(
        num_key_value_heads=4,
        tie_word_embeddings=False,
        attention_bias=True,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    ),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def hf_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        num_hidden_layers=N_LAYER,
        num_attention_heads=N_HEAD,
        hidden_size=D,
        intermediate_size=2 * D,
        vocab_size=VOCAB,
        max_position_embeddings=32,
        initializer_range=0.2,
        **CONFIGS[request.param],
    )
    hf = LlamaForCausalLM(cfg)
    if cfg.attention_bias:  # HF initialises biases to 0; make them matter
        with torch.no_grad():
            for layer in hf.model.layers:
                for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                    getattr(layer.self_attn, proj).bias.normal_(0.0, 0.2)
    path = tmp_path_factory.mktemp(f"hf_llama_{request.param}")
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf(hf_dir):
    return LlamaForCausalLM.from_pretrained(hf_dir).eval()


def load_fllama(hf_dir, with_embedding_nodes):
    model = FLlamaForCausalLM.from_pretrained(hf_dir, with_embedding_nodes=with_embedding_nodes)
    model.eval()
    return model


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, VOCAB, (3, 11), generator=g)
    corrupted = torch.randint(0, VOCAB, (3, 11), generator=g)
    return clean, corrupted


def binarize_all(model):
    """All deterministic masks exactly 1 (init values are sigmoid(12) otherwise)."""
    model.set_edge_threshold_for_deterministic(0.5)
    model.set_node_threshold_for_deterministic(0.5)


def rms_norm(x, norm):
    return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))


# ----------------------------------------------------------------------------- HF hooks


def run_hf(hf, ids, hooks):
    """HF logits with the given (module, kind, fn) hooks in place."""
    handles = []
    for module, kind, fn in hooks:
        register = module.register_forward_pre_hook if kind == "pre" else module.register_forward_hook
        handles.append(register(fn))
    try:
        with torch.no_grad():
            return hf(ids).logits
    finally:
        for h in handles:
            h.remove()


def head_output(o_proj, z, h):
    """Head h's share of o_proj, from o_proj's input z."""
    cols = slice(h * DH, (h + 1) * DH)
    out = z[..., cols] @ o_proj.weight[:, cols].t()
    return out if o_proj.bias is None else out + o_proj.bias / N_HEAD


def hf_writer_outputs(hf, ids):
    """Per-writer outputs of the HF model: embeds, per head, per MLP (layer order)."""
    store = {}
    hooks = []
    for layer, block in enumerate(hf.model.layers):
        hooks.append((block.self_attn.o_proj, "pre", lambda m, a, l=layer: store.__setitem__(("z", l), a[0])))
        hooks.append((block.mlp, "post", lambda m, a, o, l=layer: store.__setitem__(("mlp", l), o)))
    run_hf(hf, ids, hooks)
    out = {"embeds": hf.model.embed_tokens(ids)}
    for layer, block in enumerate(hf.model.layers):
        for h in range(N_HEAD):
            out[f"a{layer}.h{h}"] = head_output(block.self_attn.o_proj, store[("z", layer)], h)
        out[f"m{layer}"] = store[("mlp", layer)]
    return out


def hf_logits_with_reader_delta(hf, ids, reader, delta):
    """HF logits where exactly one reader's input is shifted by `delta`. For a K or V
    reader of a key/value head, that head's columns of k_proj/v_proj change, and so
    does every query head of its group."""
    llama = hf.model
    if reader == "resid_post":
        return run_hf(hf, ids, [(llama.norm, "pre", lambda m, a: (a[0] + delta,))])
    if reader.startswith("m"):
        norm = llama.layers[int(reader[1:])].post_attention_layernorm
        return run_hf(hf, ids, [(norm, "pre", lambda m, a: (a[0] + delta,))])
    name, head, kind = reader.split(".")
    block, h = llama.layers[int(name[1:])], int(head[1:])
    saved = {}
    cols = slice(h * DH, (h + 1) * DH)

    def splice(module, args, output):
        alt = torch.nn.functional.linear(rms_norm(saved["x"] + delta, block.input_layernorm), module.weight, module.bias)
        output = output.clone()
        output[..., cols] = alt[..., cols]
        return output

    proj = getattr(block.self_attn, f"{kind}_proj")
    return run_hf(
        hf, ids, [(block.input_layernorm, "pre", lambda m, a: saved.__setitem__("x", a[0])), (proj, "post", splice)]
    )


# ----------------------------------------------------------------------------- tests


def test_edge_counts_smollm2_shape():
    assert CircuitGraph.layered(30, 9, 3, ["embeds"]).n_edges == 70651


@pytest.mark.parametrize("with_embedding_nodes", [False, True])
def test_initial_masks_equal_hf(hf_dir, hf, inputs, with_embedding_nodes):
    model = load_fllama(hf_dir, with_embedding_nodes)
    la = model.circuit_masks.edge_log_alphas[model.circuit_masks.edge_valid]
    assert abs(la.mean().item() - 10) < 0.01 and 0.005 < la.std().item() < 0.015
    clean, _ = inputs
    with torch.no_grad():
        ours = model(clean).logits
        ref = hf(clean).logits
        with model.full_model():
            full = model(clean).logits
    assert (ours - ref).abs().max() <= TOL
    assert (full - ref).abs().max() <= TOL


def test_all_edges_removed_gives_corrupted_run(hf_dir, hf, inputs):
    model = load_fllama(hf_dir, True)
    clean, corrupted = inputs
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        model.circuit_masks.edge_log_alphas.fill_(-20.0)
        ours = model(clean, corr_x=corr_x).logits
        ref = hf(corrupted).logits
    assert model.get_edge_sparsity() == 1.0
    assert (ours - ref).abs().max() <= TOL


def test_writer_states_equal_hf_writer_outputs(hf_dir, hf, inputs):
    model = load_fllama(hf_dir, True)
    clean, _ = inputs
    writers = hf_writer_outputs(hf, clean)
    with torch.no_grad():
        out = model(clean, output_writer_states=True)
    assert (out.logits - hf(clean).logits).abs().max() <= TOL
    for i, w in enumerate(model.circuit_graph.writers):
        assert (out.writer_states[i] - writers[w.name]).abs().max() <= TOL, w.name


@pytest.mark.parametrize(
    "writer,reader",
    [
        ("a0.h2", "a1.h3.q"),  # Q reader
        ("m0", "a1.h1.k"),  # K reader of KV head 1 (query heads 2, 3 under GQA)
        ("embeds", "a0.h0.v"),  # V reader from the embedding
        ("a0.h1", "m1"),  # MLP reader
        ("a0.h0", "m0"),  # MLP reads its own layer's heads
        ("a1.h2", "resid_post"),
        ("m1", "resid_post"),
    ],
)
def test_single_edge_removal_matches_hf_hooks(hf_dir, hf, inputs, writer, reader):
    model = load_fllama(hf_dir, True)
    binarize_all(model)
    clean, corrupted = inputs
    writers = hf_writer_outputs(hf, clean)
    writers_c = hf_writer_outputs(hf, corrupted)
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        model.add_or_remove_edge(writer, reader, remove=True)
        ours = model(clean, corr_x=corr_x).logits
        unchanged = hf(clean).logits
    expected = hf_logits_with_reader_delta(hf, clean, reader, writers_c[writer] - writers[writer])
    assert (ours - expected).abs().max() <= TOL
    assert (expected - unchanged).abs().max() > 1e-3  # the edge mattered
    assert (writer, reader) not in model.get_edges()
    assert len(model.get_edges()) == model.circuit_graph.n_edges - 1


def test_node_mask_zero_equals_corrupting_the_head(hf_dir, hf, inputs):
    model = load_fllama(hf_dir, False)
    binarize_all(model)
    clean, corrupted = inputs
    layer, head = 0, 2
    node = model.circuit_graph.writer_index[f"a{layer}.h{head}"]
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        model.circuit_masks.node_log_alphas[node] = -20.0
        ours = model(clean, corr_x=corr_x).logits
    saved = {}
    o_proj = hf.model.layers[layer].self_attn.o_proj
    cols = slice(head * DH, (head + 1) * DH)
    run_hf(hf, corrupted, [(o_proj, "pre", lambda m, a: saved.__setitem__("z", a[0]))])

    def swap(m, a):
        z = a[0].clone()
        z[..., cols] = saved["z"][..., cols]
        return (z,)

    expected = run_hf(hf, clean, [(o_proj, "pre", swap)])
    assert (ours - expected).abs().max() <= TOL
    assert (expected - hf(clean).logits).abs().max() > 1e-3
    assert model.get_node_sparsity() == pytest.approx(1 / model.circuit_graph.n_writers)


@pytest.mark.parametrize("with_embedding_nodes", [False, True])
def test_fast_path_matches_literal_reference(hf_dir, inputs, with_embedding_nodes):
    """Logits and mask gradients of the kernel against the slow §2 formula, with
    random masks strictly inside (0, 1)."""
    model = load_fllama(hf_dir, with_embedding_nodes)
    model.freeze_model_weights()
    clean, corrupted = inputs
    graph = model.circuit_graph
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(graph.n_readers, graph.n_writers, generator=g).requires_grad_()
    nodes = torch.rand(graph.n_writers, generator=g).requires_grad_()
    valid = graph.edge_valid.float()
    model.model.effective_masks = lambda: edges * valid * nodes[None, :]
    ours = model(clean, corr_x=corr_x).logits
    ref = reference_fllama_logits(model, clean, edges, nodes, corr_x)
    assert (ours - ref).abs().max() <= TOL
    weights = torch.randn_like(ours)
    g_ours = torch.autograd.grad((ours * weights).sum(), [edges, nodes])
    g_ref = torch.autograd.grad((ref * weights).sum(), [edges, nodes])
    for a, b in zip(g_ours, g_ref):
        a = a * valid if a.dim() == 2 else a
        b = b * valid if b.dim() == 2 else b
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), (a - b).abs().max()


def test_gradient_checkpointing_keeps_mask_gradients(hf_dir, inputs):
    """Checkpointed layers (in training mode) give the same mask gradients."""
    model = load_fllama(hf_dir, True)
    model.freeze_model_weights()
    model.train()
    clean, corrupted = inputs
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
    log_alpha = torch.randn(model.circuit_graph.n_readers, model.circuit_graph.n_writers).requires_grad_()
    valid = model.circuit_masks.edge_valid
    model.model.effective_masks = lambda: torch.sigmoid(log_alpha) * valid  # fixed masks, not sampled

    def mask_grad():
        loss = model(clean, corr_x=corr_x).logits.logsumexp(-1).mean()
        return torch.autograd.grad(loss, log_alpha)[0]

    plain = mask_grad()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.model.layers)
    checkpointed = mask_grad()
    assert plain.abs().sum() > 0
    assert torch.allclose(plain, checkpointed, atol=1e-6)


def test_padding_mask_matches_hf(hf_dir, hf, inputs):
    model = load_fllama(hf_dir, True)
    clean, _ = inputs
    attn = torch.ones_like(clean)
    attn[0, 7:] = 0
    with torch.no_grad():
        ours = model(clean, attention_mask=attn).logits
        ref = hf(clean, attention_mask=attn).logits
    assert (ours[0, :7] - ref[0, :7]).abs().max() <= TOL
    assert (ours[1:] - ref[1:]).abs().max() <= TOL
    positions = torch.tensor([[6, -1], [10, 3], [0, 10]])
    with torch.no_grad():
        picked = model(clean, attention_mask=attn, output_positions=positions).logits
    assert picked.shape == (3, 2, VOCAB)
    assert torch.allclose(picked[1], ours[1, [10, 3]], atol=1e-5) and torch.allclose(picked[0, 0], ours[0, 6], atol=1e-5)


def test_save_and_load_round_trip(hf_dir, hf, tmp_path):
    model = load_fllama(hf_dir, True)
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_()
        model.circuit_masks.node_log_alphas.normal_()
        model.circuit_masks.sparsity_lambda_edges_1.fill_(0.5)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["with_embedding_nodes"] is True and config["model_type"] == "fllama"
    again = FLlamaForCausalLM.from_pretrained(tmp_path)  # no flag needed
    assert again.config.with_embedding_nodes
    assert again.config.rope_parameters == hf.config.rope_parameters
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    tied = again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()
    assert tied == hf.config.tie_word_embeddings
    assert torch.equal(again.lm_head.weight, hf.lm_head.weight)


def test_wrong_architecture_checkpoint_is_refused(tmp_path):
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=8)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="gpt2"):
        FLlamaForCausalLM.from_pretrained(tmp_path)
