"""The original's sparsity penalty, deterministic masks and edge accounting, against
hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config

from edge_pruning import l0
from edge_pruning.circuit import SparsityPenalty
from edge_pruning.evaluation import set_thresholds_for_sparsity
from edge_pruning.graph import CircuitGraph
from modeling.modeling_fpt2 import FPT2Config, FPT2LMHeadModel


def tiny_fpt2(with_embedding_nodes=True) -> FPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = FPT2Config(n_layer=2, n_head=3, n_embd=24, vocab_size=50, n_positions=16, with_embedding_nodes=with_embedding_nodes)
    return FPT2LMHeadModel(cfg)


def test_hard_concrete_moments_at_log_alpha_zero():
    """At log_alpha 0: P(z > 0) = sigmoid(β log 11) = 0.832 but E[z] = 0.5 (the
    stretched distribution is symmetric about 1/2): the two penalties differ."""
    la = torch.zeros(400_000)
    assert l0.prob_nonzero(la)[0].item() == pytest.approx(1 / (1 + math.exp(-(2 / 3) * math.log(11))), abs=1e-6)
    assert l0.prob_nonzero(la)[0].item() == pytest.approx(0.832, abs=1e-3)
    torch.manual_seed(0)
    assert l0.sample_mask(la).mean().item() == pytest.approx(0.5, abs=3e-3)


def test_sampled_penalty_is_one_minus_mean_drawn_mask_with_gradients():
    model = tiny_fpt2()
    model.freeze_model_weights()
    masks = model.circuit_masks
    with torch.no_grad():
        masks.edge_log_alphas.normal_(0.0, 2.0)
        masks.node_log_alphas.normal_(0.0, 2.0)
        masks.sparsity_lambda_edges_1.fill_(1.0)
    model.train()
    ids = torch.randint(0, 50, (2, 5))
    corr_x = model(torch.randint(0, 50, (2, 5)), output_writer_states=True).writer_states
    out = model(ids, corr_x=corr_x, target_edge_sparsity=0.5, target_node_sparsity=0.5)
    edges, nodes = masks.last_drawn
    valid = masks.edge_valid
    n_edges = int(valid.sum())
    assert out.model_edge_sparsity.item() == pytest.approx(1 - edges[valid].sum().item() / n_edges, abs=1e-6)
    assert out.model_node_sparsity.item() == pytest.approx(1 - nodes.mean().item(), abs=1e-6)
    assert out.sampled_edge_sparsity.item() == out.model_edge_sparsity.item()
    expected = 1 - (l0.prob_nonzero(masks.edge_log_alphas.detach()) * valid).sum().item() / n_edges
    assert out.expected_edge_sparsity.item() == pytest.approx(expected, abs=1e-6)
    # λ1 (s - t) with λ1 = 1: d/dz_e = -1/n for an edge whose sample is strictly inside (0, 1)
    masks.edge_log_alphas.grad = None
    out.edge_loss.backward()
    grad = masks.edge_log_alphas.grad
    inside = valid & (edges.detach() > 0) & (edges.detach() < 1)
    assert inside.any() and (grad[inside] < 0).all()
    assert (grad[~valid] == 0).all()

    masks.sparsity_penalty = SparsityPenalty.EXPECTED
    out = model(ids, corr_x=corr_x, target_edge_sparsity=0.5, target_node_sparsity=0.5)
    assert out.model_edge_sparsity.item() == pytest.approx(expected, abs=1e-6)


def p_nonzero(la: float) -> float:
    """P(z > 0) = sigmoid(log_alpha + β log 11), derived by hand from the stretch."""
    return 1 / (1 + math.exp(-(la + (2 / 3) * math.log(11))))


def test_original_rule_takes_top_k_per_stored_tensor_non_edges_included():
    """The original's top-k runs per stored tensor, over every entry of it."""
    graph = CircuitGraph.layered(2, 2, embeddings=("tok_embeds", "pos_embeds"))
    valid, groups = graph.edge_valid, graph.edge_mask_groups
    q1 = [graph.reader_index[f"a1.h{h}.q"] for h in range(2)]
    w0, w1 = graph.writer_index["a0.h0"], graph.writer_index["a0.h1"]

    # 1. Layer 1's Q tensor spans all 8 writers; 3 of each row are not edges (layer 1's
    #    own heads and MLP). Weight decay pulls those unused entries from 10 towards 0:
    #    at 0 each counts 1 - 0.832 = 0.168 expected zeros. With one real edge at -1
    #    (0.355), the tensor expects 3 x 0.168 + 0.355 = 0.86 -> 1 zero: the smallest
    #    soft mask, the real edge. Globally the real edges expect 0.355 -> 0 zeros.
    la = torch.full((graph.n_readers, graph.n_writers), 10.0)
    la[q1[0], ~valid[q1[0]]] = 0.0
    la[q1[0], w0] = -1.0
    assert 3 * (1 - p_nonzero(0.0)) + 1 - p_nonzero(-1.0) == pytest.approx(0.86, abs=0.01)
    assert l0.eval_mask(la, None, valid, l0.MaskRule.ORIGINAL, groups)[q1[0], w0] == 0
    assert l0.eval_mask(la, None, valid, l0.MaskRule.GLOBAL)[q1[0], w0] > 0

    # 2. Two such edges in different tensors (layer 1's Q and K): 0.355 each rounds to 0
    #    per tensor, but 0.71 rounds to 1 globally.
    la = torch.full((graph.n_readers, graph.n_writers), 10.0)
    k1 = graph.reader_index["a1.h0.k"]
    la[q1[0], w0] = -1.0
    la[k1, w1] = -1.1
    original = l0.eval_mask(la, None, valid, l0.MaskRule.ORIGINAL, groups)
    global_ = l0.eval_mask(la, None, valid, l0.MaskRule.GLOBAL)
    assert original[q1[0], w0] > 0 and original[k1, w1] > 0
    assert global_[q1[0], w0] > 0 and global_[k1, w1] == 0  # the smaller of the two goes
    # the kept value is the soft mask sigmoid(0.8 log_alpha / β)
    assert original[q1[0], w0].item() == pytest.approx(1 / (1 + math.exp(1.0 / (2 / 3) * 0.8)), abs=1e-6)


def test_original_threshold_applies_to_top_k_zeroed_masks():
    """A threshold never brings back an entry the top-k zeroed (the original's floor)."""
    graph = CircuitGraph.layered(1, 2, embeddings=("tok_embeds", "pos_embeds"))
    la = torch.full((graph.n_readers, graph.n_writers), 10.0)
    la[graph.reader_index["resid_post"], :] = torch.tensor([-3.0, -3.0, 10.0, 10.0, 10.0])
    valid = graph.edge_valid
    rule, groups = l0.MaskRule.ORIGINAL, graph.edge_mask_groups
    zeroed = l0.eval_mask(la, None, valid, rule, groups)
    r = graph.reader_index["resid_post"]
    assert (zeroed[r, :2] == 0).all()  # expected zeros 2 x 0.93 -> 2
    binary = l0.eval_mask(la, 0.0, valid, rule, groups)
    assert (binary[r, :2] == 0).all() and (binary[r, 2:] == 1).all()
    # the global rule thresholds the soft masks: threshold 0 keeps every edge
    assert (l0.eval_mask(la, 0.0, valid, l0.MaskRule.GLOBAL)[valid] == 1).all()


def test_original_node_sparsity_skips_pos_embeds():
    model = tiny_fpt2()
    masks = model.circuit_masks
    with torch.no_grad():
        masks.node_log_alphas.fill_(10.0)
        masks.node_log_alphas[model.circuit_graph.writer_index["pos_embeds"]] = -10.0
    model.eval()
    model.set_node_threshold_for_deterministic(0.5)
    assert model.get_node_sparsity() == 0.0  # the original counts the token embedding only
    masks.mask_rule = l0.MaskRule.GLOBAL
    assert model.get_node_sparsity() == pytest.approx(1 / model.circuit_graph.n_writers)


def test_bisection_reaches_the_models_own_sparsity():
    model = tiny_fpt2()
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(3))
        model.circuit_masks.node_log_alphas.fill_(10.0)
    model.eval()
    own = model.get_edge_sparsity()  # no threshold: 1 - mean of the top-k-zeroed soft masks
    reached, _ = set_thresholds_for_sparsity(model)
    n = model.circuit_graph.n_edges
    # the binarised sparsity is a multiple of 1/n within one edge of the soft target
    assert abs(reached - own) <= 1.0 / n + 1e-9
    threshold = model.circuit_masks.edge_threshold
    assert 0.0 < threshold < 1.0
    # the last midpoint of a halving of [0, 1] is an odd multiple of 2^-k
    k = math.ceil(math.log2(1e5))
    assert (threshold * 2**k) == pytest.approx(round(threshold * 2**k)) and round(threshold * 2**k) % 2 == 1
