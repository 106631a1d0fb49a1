"""FPT2 against transformers' own GPT2LMHeadModel with the same random weights."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from edge_pruning.graph import CircuitGraph
from modeling.modeling_fpt2 import FPT2LMHeadModel
from reference import reference_fpt2_logits

TOL = 1e-4
N_LAYER, N_HEAD, D = 2, 4, 64
DH = D // N_HEAD


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=N_LAYER, n_head=N_HEAD, n_embd=D, vocab_size=97, n_positions=32, bos_token_id=0, eos_token_id=0, initializer_range=0.2)
    hf = GPT2LMHeadModel(cfg)
    path = tmp_path_factory.mktemp("hf_gpt2")
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf(hf_dir):
    return GPT2LMHeadModel.from_pretrained(hf_dir).eval()


def load_fpt2(hf_dir, with_embedding_nodes):
    model = FPT2LMHeadModel.from_pretrained(hf_dir, with_embedding_nodes=with_embedding_nodes)
    model.eval()
    return model


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 97, (3, 11), generator=g)
    corrupted = torch.randint(0, 97, (3, 11), generator=g)
    return clean, corrupted


def binarize_all(model):
    """All deterministic masks exactly 1 (init values are sigmoid(12) otherwise)."""
    model.set_edge_threshold_for_deterministic(0.5)
    model.set_node_threshold_for_deterministic(0.5)


# ----------------------------------------------------------------------------- HF hooks


def hf_writer_outputs(hf, ids):
    """Per-writer outputs of the HF model: tok, pos, per head, per MLP (layer order)."""
    store = {}
    hooks = []
    for layer, block in enumerate(hf.transformer.h):
        hooks.append(block.attn.c_proj.register_forward_pre_hook(lambda m, a, l=layer: store.__setitem__(("z", l), a[0])))
        hooks.append(block.mlp.register_forward_hook(lambda m, a, o, l=layer: store.__setitem__(("mlp", l), o)))
    with torch.no_grad():
        logits = hf(ids).logits
    for h in hooks:
        h.remove()
    out = {"tok_embeds": hf.transformer.wte(ids), "pos_embeds": hf.transformer.wpe(torch.arange(ids.shape[1]))[None].expand(ids.shape[0], -1, -1)}
    for layer, block in enumerate(hf.transformer.h):
        z = store[("z", layer)]
        for h in range(N_HEAD):
            rows = slice(h * DH, (h + 1) * DH)
            out[f"a{layer}.h{h}"] = z[..., rows] @ block.attn.c_proj.weight[rows] + block.attn.c_proj.bias / N_HEAD
        out[f"m{layer}"] = store[("mlp", layer)]
    return out, logits


def hf_logits_with_reader_delta(hf, ids, reader, delta):
    """HF logits where exactly one reader's input is shifted by `delta`."""
    tf = hf.transformer
    hooks = []
    if reader == "resid_post":
        hooks.append(tf.ln_f.register_forward_pre_hook(lambda m, a: (a[0] + delta,)))
    elif reader.startswith("m"):
        layer = int(reader[1:])
        hooks.append(tf.h[layer].ln_2.register_forward_pre_hook(lambda m, a: (a[0] + delta,)))
    else:
        name, head, kind = reader.split(".")
        layer, h = int(name[1:]), int(head[1:])
        block = tf.h[layer]
        saved = {}
        hooks.append(block.ln_1.register_forward_pre_hook(lambda m, a: saved.__setitem__("x", a[0])))
        offset = {"q": 0, "k": D, "v": 2 * D}[kind] + h * DH

        def splice(module, args, output):
            ln = block.ln_1
            shifted = torch.nn.functional.layer_norm(saved["x"] + delta, (D,), ln.weight, ln.bias, ln.eps)
            alt = shifted @ module.weight + module.bias
            output = output.clone()
            output[..., offset : offset + DH] = alt[..., offset : offset + DH]
            return output

        hooks.append(block.attn.c_attn.register_forward_hook(splice))
    try:
        with torch.no_grad():
            return hf(ids).logits
    finally:
        for h in hooks:
            h.remove()


# ----------------------------------------------------------------------------- tests


def test_edge_counts_match_paper():
    assert CircuitGraph.layered(12, 12, embeddings=["tok_embeds", "pos_embeds"]).n_edges == 32936
    assert CircuitGraph.layered(12, 12).n_edges == 32046


@pytest.mark.parametrize("with_embedding_nodes", [False, True])
def test_initial_masks_equal_hf(hf_dir, hf, inputs, with_embedding_nodes):
    model = load_fpt2(hf_dir, with_embedding_nodes)
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
    model = load_fpt2(hf_dir, True)
    clean, corrupted = inputs
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        model.circuit_masks.edge_log_alphas.fill_(-20.0)
        ours = model(clean, corr_x=corr_x).logits
        ref = hf(corrupted).logits
    assert model.get_edge_sparsity() == 1.0
    assert (ours - ref).abs().max() <= TOL


def test_all_edges_removed_without_embedding_nodes_keeps_clean_embeddings(hf_dir, hf, inputs):
    """Embeddings that are not nodes always reach every reader clean."""
    model = load_fpt2(hf_dir, False)
    clean, corrupted = inputs
    writers_c, _ = hf_writer_outputs(hf, corrupted)
    writers, _ = hf_writer_outputs(hf, clean)
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        model.circuit_masks.edge_log_alphas.fill_(-20.0)
        ours = model(clean, corr_x=corr_x).logits
        resid = writers["tok_embeds"] + writers["pos_embeds"]
        for name in [f"a{l}.h{h}" for l in range(N_LAYER) for h in range(N_HEAD)] + [f"m{l}" for l in range(N_LAYER)]:
            resid = resid + writers_c[name]
        ref = hf.lm_head(hf.transformer.ln_f(resid))
    assert (ours - ref).abs().max() <= TOL


def test_writer_states_equal_hf_writer_outputs(hf_dir, hf, inputs):
    model = load_fpt2(hf_dir, True)
    clean, _ = inputs
    writers, _ = hf_writer_outputs(hf, clean)
    with torch.no_grad():
        states = model(clean, output_writer_states=True).writer_states
    for i, w in enumerate(model.circuit_graph.writers):
        assert (states[i] - writers[w.name]).abs().max() <= TOL, w.name


@pytest.mark.parametrize(
    "writer,reader",
    [
        ("a0.h1", "m1"),  # MLP reader
        ("a0.h2", "a1.h3.q"),  # Q reader
        ("m0", "a1.h0.v"),  # V reader
        ("tok_embeds", "a0.h1.k"),  # K reader from an embedding
        ("a1.h2", "resid_post"),
        ("m1", "resid_post"),
        ("a0.h0", "m0"),  # MLP reads its own layer's heads
    ],
)
def test_single_edge_removal_matches_hf_hooks(hf_dir, hf, inputs, writer, reader):
    model = load_fpt2(hf_dir, True)
    binarize_all(model)
    clean, corrupted = inputs
    writers, _ = hf_writer_outputs(hf, clean)
    writers_c, _ = hf_writer_outputs(hf, corrupted)
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        model.add_or_remove_edge(writer, reader, remove=True)
        ours = model(clean, corr_x=corr_x).logits
    expected = hf_logits_with_reader_delta(hf, clean, reader, writers_c[writer] - writers[writer])
    unchanged = hf(clean).logits
    assert (ours - expected).abs().max() <= TOL
    assert (expected - unchanged).abs().max() > 1e-3  # the edge mattered
    assert (writer, reader) not in model.get_edges()
    assert len(model.get_edges()) == model.circuit_graph.n_edges - 1


def test_node_mask_zero_equals_corrupting_the_head(hf_dir, hf, inputs):
    model = load_fpt2(hf_dir, False)
    binarize_all(model)
    clean, corrupted = inputs
    layer, head = 0, 2
    node = model.circuit_graph.writer_index[f"a{layer}.h{head}"]
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        model.circuit_masks.node_log_alphas[node] = -20.0
        ours = model(clean, corr_x=corr_x).logits
    saved = {}
    block = hf.transformer.h[layer]
    rows = slice(head * DH, (head + 1) * DH)
    h1 = block.attn.c_proj.register_forward_pre_hook(lambda m, a: saved.__setitem__("z", a[0]))
    with torch.no_grad():
        hf(corrupted)
    h1.remove()

    def swap(m, a):
        z = a[0].clone()
        z[..., rows] = saved["z"][..., rows]
        return (z,)

    h2 = block.attn.c_proj.register_forward_pre_hook(swap)
    with torch.no_grad():
        expected = hf(clean).logits
    h2.remove()
    assert (ours - expected).abs().max() <= TOL
    assert model.get_node_sparsity() == pytest.approx(1 / model.circuit_graph.n_writers)
    # the original's overall sparsity: every edge out of the removed head counts as removed
    n_out = int(model.circuit_graph.edge_valid[:, node].sum())
    assert model.get_effective_edge_sparsity() == pytest.approx(n_out / model.circuit_graph.n_edges)
    # the strict count: the edges into its Q/K/V too
    n_in = 3 * layer * (N_HEAD + 1)  # Q, K, V each read every earlier writer (no embedding nodes)
    assert model.get_strict_edge_sparsity() == pytest.approx((n_out + n_in) / model.circuit_graph.n_edges)


@pytest.mark.parametrize("with_embedding_nodes", [False, True])
def test_fast_path_matches_literal_reference(hf_dir, inputs, with_embedding_nodes):
    """Logits and mask gradients of the kernel against the slow §2 formula, with
    random masks strictly inside (0, 1)."""
    model = load_fpt2(hf_dir, with_embedding_nodes)
    model.freeze_model_weights()
    clean, corrupted = inputs
    graph = model.circuit_graph
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
    g = torch.Generator().manual_seed(3)
    edges = torch.rand(graph.n_readers, graph.n_writers, generator=g).requires_grad_()
    nodes = torch.rand(graph.n_writers, generator=g).requires_grad_()
    valid = graph.edge_valid.float()
    with model.masks_override(edges * nodes[None, :]):
        ours = model(clean, corr_x=corr_x).logits
    ref = reference_fpt2_logits(model, clean, edges, nodes, corr_x)
    assert (ours - ref).abs().max() <= TOL
    weights = torch.randn_like(ours)
    g_ours = torch.autograd.grad((ours * weights).sum(), [edges, nodes])
    g_ref = torch.autograd.grad((ref * weights).sum(), [edges, nodes])
    for a, b in zip(g_ours, g_ref):
        a = a * valid if a.dim() == 2 else a
        b = b * valid if b.dim() == 2 else b
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), (a - b).abs().max()


def test_padding_mask_matches_hf(hf_dir, hf, inputs):
    model = load_fpt2(hf_dir, True)
    clean, _ = inputs
    attn = torch.ones_like(clean)
    attn[0, 7:] = 0
    with torch.no_grad():
        ours = model(clean, attention_mask=attn).logits
        ref = hf(clean, attention_mask=attn).logits
    assert (ours[0, :7] - ref[0, :7]).abs().max() <= TOL
    assert (ours[1:] - ref[1:]).abs().max() <= TOL


def test_save_and_load_round_trip(hf_dir, tmp_path):
    model = load_fpt2(hf_dir, True)
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_()
        model.circuit_masks.node_log_alphas.normal_()
        model.circuit_masks.sparsity_lambda_edges_1.fill_(0.5)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["with_embedding_nodes"] is True and config["model_type"] == "fpt2"
    again = FPT2LMHeadModel.from_pretrained(tmp_path)  # no flag needed
    assert again.config.with_embedding_nodes
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.lm_head.weight.data_ptr() == again.transformer.wte.weight.data_ptr()


def test_wrong_architecture_checkpoint_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="llama"):
        FPT2LMHeadModel.from_pretrained(tmp_path)


def test_gradients_reach_masks_and_lambdas_only(hf_dir, inputs):
    model = load_fpt2(hf_dir, True)
    model.freeze_model_weights()
    model.train()
    clean, corrupted = inputs
    masks = model.circuit_masks
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
        # Masks away from saturation, so the sampled masks pass gradients through.
        masks.edge_log_alphas.normal_(0.0, 1.0)
        masks.node_log_alphas.normal_(0.0, 1.0)
    out = model(clean, corr_x=corr_x, target_edge_sparsity=0.5, target_node_sparsity=0.3)
    loss = out.logits.logsumexp(-1).mean() + out.edge_loss + out.node_loss
    loss.backward()
    assert masks.edge_log_alphas.grad[masks.edge_valid].abs().sum() > 0
    assert masks.node_log_alphas.grad.abs().sum() > 0
    for lam in masks.lambdas():
        assert lam.grad is not None and lam.grad.abs() > 0
    mask_ids = {id(p) for p in masks.parameters()}
    for name, p in model.named_parameters():
        if id(p) not in mask_ids:
            assert p.grad is None, name
    assert 0.2 < out.model_edge_sparsity.item() < 0.8


def test_load_edges_json_gives_that_circuit(hf_dir, tmp_path):
    model = load_fpt2(hf_dir, True)
    edges = [["tok_embeds", "a0.h0.q"], ["a0.h1", "m0"], ["m1", "resid_post"]]
    path = tmp_path / "edges.json"
    path.write_text(json.dumps(edges))
    model.load_edges(path)
    assert sorted(model.get_edges("masks")) == sorted(map(tuple, edges))
    assert model.get_edge_sparsity() == pytest.approx(1 - 3 / model.circuit_graph.n_edges)
    with pytest.raises(ValueError, match="not an edge"):
        model.add_or_remove_edge("m1", "a0.h0.q")
    with pytest.raises(KeyError, match="unknown writer"):
        model.add_or_remove_edge("a9.h0", "resid_post")


def test_bf16_checkpoint_keeps_fp32_masks_and_runs(hf_dir, inputs, tmp_path):
    model = load_fpt2(hf_dir, True)
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    again = FPT2LMHeadModel.from_pretrained(tmp_path)
    assert again.transformer.wte.weight.dtype == torch.bfloat16
    assert again.circuit_masks.edge_log_alphas.dtype == torch.float32
    clean, corrupted = inputs
    with torch.no_grad():
        corr_x = again(corrupted, output_writer_states=True).writer_states
        logits = again.eval()(clean, corr_x=corr_x).logits
    with torch.no_grad():
        ref = load_fpt2(hf_dir, True)(clean).logits
    assert logits.dtype == torch.bfloat16 and (logits.float() - ref).abs().max() < 0.5
