"""ACDC: the fast implementation (prefix cache, dead readers, batching, resume) against
a literal slow one on tiny random models, and the Tracr ground truths recovered."""

from __future__ import annotations

from conftest import ATTRIBUTION_VOCAB, random_encoded_examples

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from edge_pruning.ablation import Ablation
from edge_pruning.acdc import STATE_FILE, ACDCConfig, ACDCMetric, CircuitMetric, acdc_main, run_acdc
from edge_pruning.errors import UserError
from edge_pruning.models import load_tracr_model
from edge_pruning.tasks import IOITask, collate, get_tracr_task
from modeling.modeling_fllama import FLlamaForCausalLM
from modeling.modeling_fpt2 import FPT2LMHeadModel

VOCAB = ATTRIBUTION_VOCAB


def gpt2(tmp_path):
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=32, initializer_range=0.3)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    return FPT2LMHeadModel.from_pretrained(tmp_path, with_embedding_nodes=True)


def llama_gqa(tmp_path):
    torch.manual_seed(1)
    cfg = LlamaConfig(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
                      intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=32, initializer_range=0.3)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    return FLlamaForCausalLM.from_pretrained(tmp_path, with_embedding_nodes=True)


@pytest.fixture(scope="module", params=["gpt2", "llama_gqa"])
def model(request, tmp_path_factory):
    m = {"gpt2": gpt2, "llama_gqa": llama_gqa}[request.param](tmp_path_factory.mktemp(request.param)).eval()
    m.freeze_model_weights()
    return m


@pytest.fixture(scope="module")
def examples():
    return random_encoded_examples((7, 7, 6, 7, 5, 7))


def slow_metric(model, task, examples, masks, metric: str) -> float:
    """KL(full || circuit) or minus the task metric, one full forward of every example."""
    batch = collate(examples, 0)
    kwargs = dict(attention_mask=batch["attention_mask"], output_positions=batch["positions"])
    with torch.no_grad():
        with model.full_model():
            full = model(batch["input_ids"], **kwargs).logits
        corr_x = model(batch["corr_input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states
        with model.masks_override(masks):
            logits = model(batch["input_ids"], corr_x=corr_x, **kwargs).logits
    if metric == "kl":
        return task.loss(logits, full, batch).item()
    return -task.attribution_metric(logits, batch).mean().item()


def slow_acdc(model, task, examples, tau: float, metric: str) -> torch.Tensor:
    """ACDC as its paper states it: every reader from the output back, every incoming
    edge from the latest writer back, a whole forward each; no cache, no skipping."""
    graph = model.circuit_graph
    current = graph.edge_valid.clone().float()
    value = slow_metric(model, task, examples, current, metric)
    for r in reversed(range(graph.n_readers)):
        for w in reversed(range(graph.n_writers)):
            if not current[r, w]:
                continue
            current[r, w] = 0.0
            trial = slow_metric(model, task, examples, current, metric)
            if trial - value < tau:
                value = trial
            else:
                current[r, w] = 1.0
    return current.bool()


def fast_metric(model, examples, metric="kl", batch_size=4):
    return CircuitMetric(model, IOITask(), examples, ACDCMetric(metric), Ablation.INTERCHANGE, batch_size, 0)


def config(model, examples, tau, metric="kl"):
    return ACDCConfig(tau, ACDCMetric(metric), Ablation.INTERCHANGE, len(examples), model.circuit_graph.n_edges)


def test_prefix_cache_is_the_full_forward(model, examples):
    """Masks changed only at readers of layer l and above: starting the forward at l
    (the full model's writer deltas below it) gives the whole forward's metric."""
    graph = model.circuit_graph
    fn = fast_metric(model, examples)
    g = torch.Generator().manual_seed(3)
    for layer in range(graph.final_site.layer + 1):
        masks = graph.edge_valid.float()
        above = torch.tensor([reader.layer >= layer for reader in graph.readers])
        random = (torch.rand(masks.shape, generator=g) < 0.5).float()
        masks[above] *= random[above]
        assert fn(masks, layer) == pytest.approx(fn(masks, None), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("metric", ["kl", "task"])
def test_acdc_matches_the_literal_implementation(model, examples, metric):
    task = IOITask()
    graph = model.circuit_graph
    fn = fast_metric(model, examples, metric)
    # A τ that keeps some edges and removes others (checked below).
    tau = 0.02 if metric == "kl" else 0.05
    state = run_acdc(model, fn, config(model, examples, tau, metric), show_progress=False)
    slow = slow_acdc(model, task, examples, tau, metric)
    assert state.finished
    assert 0 < int(slow.sum()) < graph.n_edges
    assert torch.equal(state.current, slow)
    assert state.metric == pytest.approx(slow_metric(model, task, examples, slow.float(), metric), rel=1e-4, abs=1e-6)
    # Each edge was evaluated once, or removed unevaluated with a dead reader (these
    # τs leave dead readers under the task metric).
    assert state.n_evaluations + state.n_removed_unevaluated == graph.n_edges
    assert (state.n_removed_unevaluated > 0) == (metric == "task")


def test_resume_gives_the_same_circuit(model, examples, tmp_path):
    fn = fast_metric(model, examples)
    cfg = config(model, examples, 0.02)
    whole = run_acdc(model, fn, cfg, show_progress=False)
    path = tmp_path / STATE_FILE
    starts = 0
    while True:
        starts += 1
        state = run_acdc(model, fn, cfg, path, max_evaluations=7, show_progress=False)
        if state.finished:
            break
    assert starts > 2
    assert torch.equal(state.current, whole.current)
    assert state.metric == whole.metric
    assert state.n_evaluations == whole.n_evaluations
    other = config(model, examples, 0.5)
    with pytest.raises(UserError, match="tau=0.02"):
        run_acdc(model, fn, other, path, show_progress=False)


@pytest.mark.parametrize("name", ["reverse", "xproportion"])
def test_tracr_ground_truth_recovered(name):
    """Zero ablation on every input: at τ = 1e-3 ACDC finds exactly the ground truth
    (the ACDC paper reports both recovered)."""
    task = get_tracr_task(name)
    model = load_tracr_model(task.model_path)
    model.freeze_model_weights()
    examples = task.encode_rows(task.load_split(None, "test"), model.config.token_to_id())
    graph = model.circuit_graph
    fn = CircuitMetric(model, task, examples, ACDCMetric.KL, Ablation.ZERO, 64, model.config.pad_token_id)
    cfg = ACDCConfig(1e-3, ACDCMetric.KL, Ablation.ZERO, len(examples), graph.n_edges)
    state = run_acdc(model, fn, cfg, show_progress=False)
    assert sorted(graph.edge_list(state.current)) == sorted(task.ground_truth_edges())


def test_cli_sweep_and_resume(tiny_gpt2, tmp_path):
    out = tmp_path / "acdc"
    args = ["-m", tiny_gpt2, "-t", "ioi", "-w", "-n", "4", "-b", "4", "--tau", "0.5", "0.05", "--eval-split", "validation",
            "--n-eval", "4", "-o", out, "--no-progress"]  # fmt: skip
    stopped = acdc_main([*map(str, args), "--max-minutes", "0"])
    assert len(stopped) == 1 and not stopped[0].finished and stopped[0].n_evaluations == 0
    results = acdc_main(list(map(str, args)))
    assert [r.finished for r in results] == [True, True]
    assert results[0].n_edges <= results[1].n_edges  # a larger τ removes more
    for tau in ("0.5", "0.05"):
        folder = out / f"tau_{tau}"
        circuit = json.loads((folder / "circuit.json").read_text())
        edges = json.loads((folder / "edges.json").read_text())
        result = json.loads((folder / "result.json").read_text())
        assert circuit["method"] == "acdc" and circuit["n_edges_in_circuit"] == len(edges) == result["n_edges"]
        assert sum(e["in_circuit"] for e in circuit["edges"]) == len(edges)
        assert result["evaluation"]["n_examples"] == 4 and result["evaluation"]["kl"] >= 0
    assert "edges kept" in (out / "acdc.log").read_text()
    with pytest.raises(UserError, match="--tau"):
        acdc_main(list(map(str, ["-m", tiny_gpt2, "-n", "4", "--tau", "-1", "-o", tmp_path / "bad", "--no-progress"])))


def test_tracr_roc_of_the_acdc_sweep(tmp_path):
    from edge_pruning.tracr_baselines import tracr_baselines_main

    results = tracr_baselines_main(["--tasks", "xproportion", "--methods", "eap", "--acdc", "--acdc-taus", "1e-5", "0.01", "1",
                                    "-o", str(tmp_path)])  # fmt: skip
    acdc = results[-1]
    assert acdc.method == "acdc (τ=0.001)" and acdc.precision == acdc.recall == 1.0
    assert acdc.roc[0] == (0.0, 0.0) and acdc.roc[-1] == (1.0, 1.0) and acdc.roc_auc == 1.0
    assert all(a <= b for a, b in zip(acdc.roc, acdc.roc[1:]))
    with pytest.raises(ValueError, match="TASK=DIR"):
        tracr_baselines_main(["--tasks", "xproportion", "--methods", "--ugs-runs", "nothing", "-o", str(tmp_path)])
