"""The rest of EAP-IG's menu on a tiny GPT-2: clean-corrupted, node and neuron scores
and circuits, information flow routes, mean-positional ablation; against finite
differences and literal computations."""

from __future__ import annotations

from conftest import ATTRIBUTION_VOCAB, random_encoded_examples

import pytest
import torch

from edge_pruning.ablation import mean_writer_states
from edge_pruning.attribution import (
    edge_attribution,
    information_flow_routes,
    neuron_attribution,
    neuron_circuit,
    node_circuit,
    node_scores,
)
from edge_pruning.tasks import IOITask, collate

VOCAB = ATTRIBUTION_VOCAB
EPS = 1e-2


@pytest.fixture(scope="module")
def model(attribution_gpt2):
    return attribution_gpt2


@pytest.fixture(scope="module")
def examples():
    return random_encoded_examples((7, 7, 5, 7, 6, 7))


def metric(model, examples, masks, tokens="input_ids", corr_x=None, neurons=None):
    """Mean task metric of the masked model on `tokens`, removed edges carrying `corr_x`
    (default: the corrupted input's writer states)."""
    batch = collate(examples, 0)
    with torch.no_grad():
        if corr_x is None:
            corr_x = model(batch["corr_input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states
        with model.masks_override(masks):
            kwargs = dict(attention_mask=batch["attention_mask"], output_positions=batch["positions"], corr_x=corr_x)
            if neurons is None:
                logits = model(batch[tokens], **kwargs).logits
            else:
                with model.neuron_masks_override(neurons):
                    logits = model(batch[tokens], **kwargs).logits
    return IOITask().attribution_metric(logits, batch).mean().item()


def states(model, examples, tokens):
    batch = collate(examples, 0)
    with torch.no_grad():
        return model(batch[tokens], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states


def largest(scores, valid, k=4):
    return torch.topk((scores.abs() * valid).flatten(), k).indices.tolist()


def test_clean_corrupted_is_the_mean_of_the_two_end_gradients(model, examples):
    """At the corrupted input every delta is 0, so the gradient there is taken with a
    baseline shifted by the clean delta (c - (x - c)): removing an edge then moves its
    reader's input by exactly the clean delta. Finite differences at both ends."""
    graph = model.circuit_graph
    scores = edge_attribution(model, IOITask(), examples, "clean-corrupted", batch_size=6, show_progress=False).scores
    ones = torch.ones(graph.n_readers, graph.n_writers)
    clean, corr = states(model, examples, "input_ids"), states(model, examples, "corr_input_ids")
    shifted = corr - (clean - corr)
    for idx in largest(scores, graph.edge_valid):
        r, w = divmod(idx, graph.n_writers)
        up, down = ones.clone(), ones.clone()
        up[r, w] += EPS
        down[r, w] -= EPS
        at_clean = (metric(model, examples, up) - metric(model, examples, down)) / (2 * EPS)
        at_corr = (metric(model, examples, up, "corr_input_ids", shifted) - metric(model, examples, down, "corr_input_ids", shifted)) / (2 * EPS)
        assert scores[r, w].item() == pytest.approx((at_clean + at_corr) / 2, rel=2e-2, abs=1e-4)


def test_node_scores_are_node_mask_gradients(model, examples):
    graph = model.circuit_graph
    edges = edge_attribution(model, IOITask(), examples, "eap", batch_size=6, show_progress=False)
    nodes = node_scores(edges).scores
    ones = torch.ones(graph.n_readers, graph.n_writers)
    for w in torch.topk(nodes.abs(), 3).indices.tolist():
        up, down = ones.clone(), ones.clone()
        up[:, w] *= 1 + EPS
        down[:, w] *= 1 - EPS
        fd = (metric(model, examples, up) - metric(model, examples, down)) / (2 * EPS)
        assert nodes[w].item() == pytest.approx(fd, rel=2e-2, abs=1e-4)


def test_node_circuit_by_hand(model):
    graph = model.circuit_graph
    scores = torch.zeros(graph.n_writers)
    keep = [graph.writer_index[n] for n in ("tok_embeds", "a0.h1", "m1")]
    scores[keep] = torch.tensor([3.0, -2.0, 1.0])
    scores[graph.writer_index["m0"]] = 0.5
    circuit = node_circuit(graph, type("S", (), {"scores": scores})(), 3)
    expected = {
        ("tok_embeds", "a0.h1.q"), ("tok_embeds", "a0.h1.k"), ("tok_embeds", "a0.h1.v"), ("tok_embeds", "m1"),
        ("a0.h1", "m1"), ("tok_embeds", "resid_post"), ("a0.h1", "resid_post"), ("m1", "resid_post"),
    }  # fmt: skip
    assert set(graph.edge_list(circuit)) == expected


def test_neuron_scores(model, examples):
    """Finite differences of single neuron masks; their sum over dimensions is the node score."""
    graph = model.circuit_graph
    task = IOITask()
    neurons = neuron_attribution(model, task, examples, batch_size=4, show_progress=False)
    nodes = node_scores(edge_attribution(model, task, examples, "eap", batch_size=6, show_progress=False)).scores
    assert torch.allclose(neurons.sum(1), nodes, rtol=1e-4, atol=1e-6)
    ones = graph.edge_valid.float()
    full = torch.ones_like(neurons)
    for idx in torch.topk(neurons.abs().flatten(), 4).indices.tolist():
        w, d = divmod(idx, neurons.shape[1])
        up, down = full.clone(), full.clone()
        up[w, d] += EPS
        down[w, d] -= EPS
        fd = (metric(model, examples, ones, neurons=up) - metric(model, examples, ones, neurons=down)) / (2 * EPS)
        assert neurons[w, d].item() == pytest.approx(fd, rel=2e-2, abs=1e-4)


def test_neuron_circuits_at_the_ends(model, examples):
    """All neurons kept is the full model, none kept is every edge removed."""
    graph = model.circuit_graph
    neurons = neuron_attribution(model, IOITask(), examples, batch_size=6, show_progress=False)
    ones, zeros = graph.edge_valid.float(), torch.zeros(graph.n_readers, graph.n_writers)
    everything, nothing = neuron_circuit(neurons, neurons.numel()), neuron_circuit(neurons, 0)
    assert metric(model, examples, ones, neurons=everything) == pytest.approx(metric(model, examples, ones), abs=1e-6)
    assert metric(model, examples, ones, neurons=nothing) == pytest.approx(metric(model, examples, zeros), abs=1e-5)
    assert int(neuron_circuit(neurons, 7).sum()) == 7


def test_information_flow_routes_literal(model, examples):
    """Per example, position and reader: the reader's input z = Σ of the writers before
    it, proximity max(0, |z|_1 - |z - x_w|_1), normalised, averaged over real positions
    (EAP-IG divides 0 by 0 where no writer is near; here those score 0)."""
    graph = model.circuit_graph
    scores = information_flow_routes(model, examples, batch_size=4, show_progress=False).scores
    expected = torch.zeros(graph.n_readers, graph.n_writers)
    for ex in examples:
        x = states(model, [ex], "input_ids")[:, 0].double()  # (W, S, D)
        for r in range(graph.n_readers):
            p = int(graph.reader_prefix[r])
            for s in range(len(ex.input_ids)):
                z = x[:p, s].sum(0)
                prox = torch.stack([(z.abs().sum() - (z - x[w, s]).abs().sum()).clamp(min=0) for w in range(p)])
                if prox.sum() > 0:  # else no writer is near: all score 0
                    expected[r, :p] += (prox / prox.sum()).float() / len(ex.input_ids)
    assert torch.allclose(scores, expected / len(examples), atol=1e-5)


def test_mean_positional_ablation(model, examples):
    """Per-position means: averaged with their counts they are the overall means; EAP
    against them is the finite difference with the means patched in."""
    graph = model.circuit_graph
    overall = mean_writer_states(model, examples, 0, batch_size=4)
    positional = mean_writer_states(model, examples, 0, batch_size=4, per_position=True)
    counts = torch.tensor([sum(len(e.input_ids) > s for e in examples) for s in range(positional.shape[2])], dtype=torch.float32)
    assert torch.allclose((positional[:, 0] * counts[None, :, None]).sum(1) / counts.sum(), overall[:, 0, 0], atol=1e-5)
    scores = edge_attribution(model, IOITask(), examples, "eap", batch_size=6, show_progress=False,
                              ablation="mean-positional", mean_states=positional).scores  # fmt: skip
    ones = torch.ones(graph.n_readers, graph.n_writers)
    corr = positional[:, :, : max(len(e.input_ids) for e in examples)]
    for idx in largest(scores, graph.edge_valid, 3):
        r, w = divmod(idx, graph.n_writers)
        up, down = ones.clone(), ones.clone()
        up[r, w] += EPS
        down[r, w] -= EPS
        fd = (metric(model, examples, up, corr_x=corr) - metric(model, examples, down, corr_x=corr)) / (2 * EPS)
        assert scores[r, w].item() == pytest.approx(fd, rel=2e-2, abs=1e-4)
    with pytest.raises(ValueError, match="interpolates inputs"):
        edge_attribution(model, IOITask(), examples, "clean-corrupted", ablation="mean", mean_states=overall)
