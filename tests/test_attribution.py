"""EAP / EAP-IG scores and circuit selection on a tiny GPT-2."""

from __future__ import annotations

from conftest import ATTRIBUTION_VOCAB

import pytest
import torch

from edge_pruning.attribution import edge_attribution
from edge_pruning.faithfulness import area_summaries, circuit_metric
from edge_pruning.selection import greedy_connected_edges, top_n_edges
from edge_pruning.tasks import Encoded, IOITask, collate

VOCAB = ATTRIBUTION_VOCAB


@pytest.fixture(scope="module")
def model(attribution_gpt2):
    return attribution_gpt2


@pytest.fixture(scope="module")
def examples():
    g = torch.Generator().manual_seed(5)
    out = []
    for _ in range(6):
        ids = torch.randint(0, VOCAB, (7,), generator=g).tolist()
        corr = torch.randint(0, VOCAB, (7,), generator=g).tolist()
        target, wrong = torch.randint(0, VOCAB, (2,), generator=g).tolist()
        out.append(Encoded(ids, corr, [6], [target], wrong))
    return out


def metric_with_masks(model, task, examples, masks):
    """Mean task metric with explicit masks (corrupted states patched in)."""
    batch = collate(examples, 0)
    with torch.no_grad():
        corr_x = model(batch["corr_input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states
        with model.masks_override(masks):
            logits = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_positions=batch["positions"], corr_x=corr_x).logits
    return task.attribution_metric(logits, batch).mean().item()


def test_eap_is_the_mask_gradient_at_the_full_model(model, examples):
    """Central finite differences of the metric in single edge masks."""
    task = IOITask()
    scores = edge_attribution(model, task, examples, "eap", batch_size=6, show_progress=False).scores
    graph = model.circuit_graph
    ones = torch.ones(graph.n_readers, graph.n_writers)
    big = torch.topk((scores.abs() * graph.edge_valid).flatten(), 5).indices
    eps = 1e-2
    for idx in big.tolist():
        r, w = divmod(idx, graph.n_writers)
        up, down = ones.clone(), ones.clone()
        up[r, w] += eps
        down[r, w] -= eps
        fd = (metric_with_masks(model, task, examples, up) - metric_with_masks(model, task, examples, down)) / (2 * eps)
        assert fd == pytest.approx(scores[r, w].item(), rel=2e-2, abs=1e-4)


def test_eap_predicts_single_edge_ablation_on_edges_into_the_output(model, examples):
    """Removing one edge into resid_post: the first-order estimate has the sign of
    the true change and ranks the largest effects first."""
    task = IOITask()
    scores = edge_attribution(model, task, examples, "eap", batch_size=6, show_progress=False).scores
    graph = model.circuit_graph
    r = graph.reader_index["resid_post"]
    ones = torch.ones(graph.n_readers, graph.n_writers)
    full = metric_with_masks(model, task, examples, ones)
    true_effects = []
    for w in range(graph.n_writers):
        cut = ones.clone()
        cut[r, w] = 0.0
        true_effects.append(full - metric_with_masks(model, task, examples, cut))
    true_effects = torch.tensor(true_effects)
    est = scores[r]
    strong = true_effects.abs() > 0.2 * true_effects.abs().max()
    assert strong.sum() >= 2
    assert torch.equal(torch.sign(est[strong]), torch.sign(true_effects[strong]))
    assert torch.argmax(est.abs()) == torch.argmax(true_effects.abs())


def test_eap_ig_with_one_step_equals_eap(model, examples):
    task = IOITask()
    eap = edge_attribution(model, task, examples, "eap", batch_size=4, show_progress=False).scores
    ig = edge_attribution(model, task, examples, "eap-ig-inputs", steps=1, batch_size=4, show_progress=False).scores
    assert torch.allclose(eap, ig, atol=1e-6, rtol=1e-5)


def test_eap_ig_activations_is_complete(model, examples):
    """Integrated gradients in mask space sum to metric(full) - metric(all removed)."""
    task = IOITask()
    graph = model.circuit_graph
    scores = edge_attribution(model, task, examples, "eap-ig-activations", steps=40, batch_size=6, show_progress=False).scores
    ones = torch.ones(graph.n_readers, graph.n_writers)
    gap = metric_with_masks(model, task, examples, ones) - metric_with_masks(model, task, examples, torch.zeros_like(ones))
    assert scores.sum().item() == pytest.approx(gap, rel=2e-2, abs=1e-3)


def test_eap_ig_inputs_differs_from_eap_with_more_steps(model, examples):
    task = IOITask()
    eap = edge_attribution(model, task, examples, "eap", batch_size=6, show_progress=False).scores
    ig = edge_attribution(model, task, examples, "eap-ig-inputs", steps=5, batch_size=6, show_progress=False).scores
    assert not torch.allclose(eap, ig, atol=1e-4)
    assert (ig * ~model.circuit_graph.edge_valid).abs().sum() == 0


@pytest.mark.parametrize("n", [0, 1, 7, 50])
def test_top_n_keeps_exactly_n(model, n):
    graph = model.circuit_graph
    scores = torch.randn(graph.n_readers, graph.n_writers)
    chosen = top_n_edges(graph, scores, n)
    assert int(chosen.sum()) == n
    assert not (chosen.bool() & ~graph.edge_valid).any()
    if n:
        kept = scores.abs()[chosen.bool()]
        dropped = scores.abs()[graph.edge_valid & ~chosen.bool()]
        assert kept.min() >= dropped.max()


@pytest.mark.parametrize("n", [1, 5, 20])
def test_greedy_selection_is_connected_to_the_output(model, n):
    graph = model.circuit_graph
    scores = torch.randn(graph.n_readers, graph.n_writers)
    chosen = greedy_connected_edges(graph, scores, n)
    assert int(chosen.sum()) == n
    # every chosen edge's writer reaches resid_post through chosen edges
    on_path = torch.zeros(graph.n_writers, dtype=torch.bool)
    for w in range(graph.n_writers - 1, -1, -1):
        readers = chosen[:, w].bool()
        into_output = readers[graph.reader_index["resid_post"]]
        into_kept_node = (readers[:, None] & graph.feeds & on_path[None, :]).any()
        on_path[w] = bool(into_output or into_kept_node)
    writers_used = chosen.bool().any(0)
    assert torch.equal(on_path & writers_used, writers_used)


def test_area_summaries():
    assert area_summaries([0.0, 0.5, 1.0], [1.0, 1.0, 1.0]) == {"f_area": 1.0, "one_minus_f_area": 0.0}
    assert area_summaries([0.0, 1.0], [0.0, 1.0]) == pytest.approx({"f_area": 0.5, "one_minus_f_area": 0.5})


def test_full_and_empty_circuits_bracket_the_metric(model, examples):
    task = IOITask()
    graph = model.circuit_graph
    full_metric, full_kl = circuit_metric(model, task, examples, None, 6, 0)
    all_edges = graph.edge_valid.float()
    same_metric, same_kl = circuit_metric(model, task, examples, all_edges, 6, 0)
    assert same_metric == pytest.approx(full_metric, abs=1e-4) and abs(same_kl) < 1e-5
    _, empty_kl = circuit_metric(model, task, examples, torch.zeros_like(all_edges), 6, 0)
    assert empty_kl > 1e-3


def test_eap_ig_on_llama_uses_clean_deltas(tmp_path, examples):
    """FLlama takes the same attribution inputs (inputs_embeds, mask_grad_deltas): one
    IG step equals EAP, more steps differ."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from modeling.modeling_fllama import FLlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=VOCAB, initializer_range=0.3)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    llama = FLlamaForCausalLM.from_pretrained(tmp_path, with_embedding_nodes=True).eval()
    llama.freeze_model_weights()
    task = IOITask()
    eap = edge_attribution(llama, task, examples, "eap", batch_size=6, show_progress=False).scores
    one = edge_attribution(llama, task, examples, "eap-ig-inputs", steps=1, batch_size=6, show_progress=False).scores
    five = edge_attribution(llama, task, examples, "eap-ig-inputs", steps=5, batch_size=6, show_progress=False).scores
    assert eap.abs().sum() > 0
    assert torch.allclose(eap, one, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(eap, five, atol=1e-4)


def test_roc_curve_by_hand():
    from edge_pruning.tracr_baselines import roc_curve

    points, auc = roc_curve(torch.tensor([0.9, 0.8, 0.4, 0.3]), torch.tensor([1, 0, 1, 0]))
    assert points == [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    assert auc == pytest.approx(0.75)
    _, perfect = roc_curve(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1, 1, 0]))
    assert perfect == 1.0


def test_eap_is_exact_on_a_linear_path():
    """Tracr xproportion: no layer norm and a linear read-out, so for an edge into
    resid_post removing it changes the output fraction by exactly its EAP score."""
    from edge_pruning.tracr_pruning import load_tracr_model
    from edge_pruning.tracr_tasks import get_tracr_task

    task = get_tracr_task("xproportion")
    model = load_tracr_model(task.model_path)
    model.freeze_model_weights()
    ex = task.encode_rows(task.load_split(None, "test"), model.config.token_to_id())[:32]
    scores = edge_attribution(model, task, ex, "eap", batch_size=32, show_progress=False, ablation="zero").scores
    graph = model.circuit_graph
    r = graph.reader_index["resid_post"]
    batch = collate(ex, model.config.pad_token_id)
    ones = torch.ones(graph.n_readers, graph.n_writers)

    def metric(masks):
        with torch.no_grad(), model.masks_override(masks):
            logits = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_positions=batch["positions"]).logits
        return task.attribution_metric(logits, batch).mean().item()

    full = metric(ones)
    checked = 0
    for w in range(graph.n_writers):
        cut = ones.clone()
        cut[r, w] = 0.0
        assert full - metric(cut) == pytest.approx(scores[r, w].item(), abs=1e-5)
        checked += abs(scores[r, w].item()) > 1e-3
    assert checked >= 1  # the head that computes the fraction


def test_tracr_baselines_report(tmp_path):
    from edge_pruning.tracr_baselines import tracr_baselines_main

    results = tracr_baselines_main(["--tasks", "xproportion", "--methods", "eap", "-o", str(tmp_path)])
    (r,) = results
    assert r.n_ground_truth == 5 and r.n_found == 5 and 0.0 <= r.precision <= 1.0 and 0.5 <= r.roc_auc <= 1.0
    assert (tmp_path / "tracr_ground_truth_scores.json").exists()
