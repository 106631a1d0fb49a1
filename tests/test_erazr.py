"""ErazrModel against the Tracr export's numpy reference and edge-level forward,
Tracr's own jax model, the ground-truth circuits, and the Tracr tasks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_pruning import tasks
from edge_pruning.attention import attention_mask_from_padding, scaled_dot_product
from edge_pruning.evaluation import evaluate_circuit
from edge_pruning.tasks import collate
from edge_pruning.tracr_tasks import get_tracr_task
from modeling.modeling_erazr import ErazrModel
from tracrx import circuit, reference
from tracrx.export import load_weights

ROOT = Path(__file__).resolve().parents[1]
TASK_NAMES = ["reverse", "xproportion"]
ATOL = 1e-5


class Setup:
    """One task's export, model, every input and the encoded examples."""

    def __init__(self, name: str) -> None:
        self.task = get_tracr_task(name)
        self.weights = load_weights(self.task.model_path)
        self.rows = self.task.load_split(None, "test")
        self.ids = np.array([r["input_ids"] for r in self.rows])
        self.model = ErazrModel.from_tracr(self.task.model_path)
        self.examples = self.task.encode_rows(self.rows, self.model.config.token_to_id())

    def logits(self, model: ErazrModel | None = None, full: bool = False) -> np.ndarray:
        model = model or self.model
        with torch.no_grad():
            if full:
                with model.full_model():
                    return model(torch.tensor(self.ids)).logits.double().numpy()
            return model(torch.tensor(self.ids)).logits.double().numpy()

    def edge_forward(self, edges) -> np.ndarray:
        g = circuit.graph_of(self.weights)
        return circuit.edge_forward(self.weights, self.ids, circuit.circuit_mask(g, edges)).logits


@pytest.fixture(scope="module", params=TASK_NAMES)
def setup(request) -> Setup:
    return Setup(request.param)


def targets_of(s: Setup) -> np.ndarray:
    key = "target_ids" if s.weights.config.categorical_output else "target"
    return np.array([r[key][1:] for r in s.rows], dtype=float)


def test_full_model_matches_numpy_reference_on_every_input(setup):
    s = setup
    n_tokens = len(s.weights.input_vocab) - 2  # without BOS and PAD
    assert len({tuple(i) for i in s.ids}) == len(s.ids) == n_tokens**s.weights.config.n_tokens
    ref = reference.forward(s.weights, s.ids).logits
    s.model.load_edges(s.model.circuit_graph.edge_list())  # every mask exactly 1
    for logits in (s.logits(full=True), s.logits()):
        assert logits.shape == ref.shape
        assert np.abs(logits - ref).max() <= ATOL
        pred, ref_pred = reference.predict(s.weights, logits)[:, 1:], reference.predict(s.weights, ref)[:, 1:]
        if s.weights.config.categorical_output:
            assert np.array_equal(pred, ref_pred)
            assert np.array_equal(pred, targets_of(s))
        else:
            assert np.abs(pred - ref_pred).max() <= ATOL
            assert np.abs(pred - targets_of(s)).max() <= 1e-3


def test_matches_tracr_jax_model(setup):
    """Tracr's own compiled model, decoded predictions on every input."""
    pytest.importorskip("tracr")
    import jax
    import jax.numpy as jnp

    from tracrx.export import compile_task
    from tracrx.programs import TASKS

    compiled = compile_task(TASKS[setup.task.name])
    tracr_out = np.asarray(jax.jit(compiled.model.forward)(compiled.model.params, jnp.asarray(setup.ids)).unembedded_output)
    ours = setup.logits(full=True)
    if setup.weights.config.categorical_output:
        assert np.array_equal(ours.argmax(-1)[:, 1:], tracr_out[:, 1:])
    else:
        assert np.abs(ours[:, 1:, 0] - tracr_out[:, 1:]).max() <= ATOL


def test_writer_states_match_edge_level_forward(setup):
    s = setup
    ref = circuit.edge_forward(s.weights, s.ids).writer_outputs
    with torch.no_grad():
        states = s.model(torch.tensor(s.ids), output_writer_states=True).writer_states
    for i, writer in enumerate(s.model.circuit_graph.writers):
        assert np.abs(states[i].double().numpy() - ref[writer.name]).max() <= ATOL, writer.name


def test_circuits_match_edge_level_zero_ablation(setup):
    """Random circuits, the ground truth and the empty one, against tracrx's edge forward."""
    s = setup
    graph = s.model.circuit_graph
    all_edges = graph.edge_list()
    rng = np.random.default_rng(0)
    circuits = [[e for e in all_edges if rng.random() < 0.6] for _ in range(4)]
    circuits += [s.task.ground_truth_edges(), []]
    for edges in circuits:
        s.model.load_edges(edges)
        assert sorted(s.model.get_edges("masks")) == sorted(edges)
        assert np.abs(s.logits() - s.edge_forward(edges)).max() <= ATOL


def test_all_edges_removed_is_zero_ablation(setup):
    """Nothing reaches resid_post: the residual, hence every logit, is zero."""
    s = setup
    s.model.load_edges([])
    assert s.model.get_edge_sparsity() == 1.0
    assert np.abs(s.logits()).max() == 0.0
    assert np.abs(s.logits(full=True)).max() > 0.5


def test_removed_node_is_zero_ablated_in_every_reader(setup):
    s = setup
    graph = s.model.circuit_graph
    node = "m0" if s.task.name == "reverse" else "a1.h0"
    s.model.load_edges(graph.edge_list())
    with torch.no_grad():
        s.model.circuit_masks.node_log_alphas[graph.writer_index[node]] = -20.0
    kept = [e for e in graph.edge_list() if e[0] != node]
    assert np.abs(s.logits() - s.edge_forward(kept)).max() <= ATOL
    assert node not in {w for w, _ in s.model.get_edges()}


def test_ground_truth_circuit_is_fully_accurate(setup):
    s = setup
    s.model.load_edges(s.task.ground_truth_path)
    result = evaluate_circuit(s.model, s.task, s.examples, "test", ablation="zero", search_thresholds=False)
    assert result.n_edges == len(s.task.ground_truth_edges())
    assert result.circuit["accuracy"] == 1.0 and result.full_model["accuracy"] == 1.0
    assert result.circuit["exact_match"] == 1.0
    assert result.circuit["kl"] < 1e-6
    s.model.load_edges(s.task.ground_truth_edges()[1:])  # one true edge fewer breaks it
    broken = evaluate_circuit(s.model, s.task, s.examples, "test", ablation="zero", search_thresholds=False)
    assert broken.circuit["accuracy"] < 1.0


def test_threshold_setters_act_on_their_own_masks(setup):
    """The original Tracr model applied the node threshold to edges and vice versa."""
    model = setup.model
    masks = model.circuit_masks
    with torch.no_grad():  # soft masks sigmoid(6) ≈ 0.9975, none zeroed
        masks.edge_log_alphas.fill_(5.0)
        masks.node_log_alphas.fill_(5.0)
    soft = 1 / (1 + math.exp(-6.0))
    model.set_edge_threshold_for_deterministic(0.999)
    model.set_node_threshold_for_deterministic(None)
    assert model.get_edge_sparsity() == 1.0
    assert model.get_node_sparsity() == pytest.approx(1 - soft, abs=1e-6)
    model.set_edge_threshold_for_deterministic(None)
    model.set_node_threshold_for_deterministic(0.999)
    assert model.get_node_sparsity() == 1.0
    assert model.get_edge_sparsity() == pytest.approx(1 - soft, abs=1e-6)
    assert model.get_edges() == []  # every writer removed
    model.set_node_threshold_for_deterministic(None)


def test_causal_mask_equals_tracr_replace_semantics():
    """SDPA's causal mask against Tracr's scores[j > i] = -1e30 on large scores."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 7, generator=g) * 30 for _ in range(3))
    scores = (q @ k.transpose(-1, -2)) * 0.4
    future = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    expected = torch.softmax(scores.masked_fill(future, -1e30), -1) @ v
    ones = torch.ones(2, 5, dtype=torch.long)
    for mask in (None, attention_mask_from_padding(ones, 5, causal=True)):
        assert torch.allclose(scaled_dot_product(q, k, v, mask, 0.4, causal=True), expected, atol=1e-4, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    model = ErazrModel.from_tracr(get_tracr_task("reverse").model_path)
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_()
        model.circuit_masks.node_log_alphas.normal_()
        model.circuit_masks.sparsity_lambda_edges_1.fill_(0.5)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "erazr" and config["with_embedding_nodes"] is True
    again = ErazrModel.from_pretrained(tmp_path)
    assert again.config.token_to_id() == model.config.token_to_id() == load_weights(
        get_tracr_task("reverse").model_path
    ).input_vocab  # integer tokens survive JSON
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.tensor([[3, 0, 1, 2]])
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, again(ids).logits)
    with pytest.raises(ValueError, match="embedding nodes"):
        ErazrModel.from_pretrained(tmp_path, with_embedding_nodes=False)


def test_fresh_masks_start_near_one():
    model = ErazrModel.from_tracr(get_tracr_task("xproportion").model_path)
    la = model.circuit_masks.edge_log_alphas[model.circuit_masks.edge_valid]
    assert abs(la.mean().item() - 10) < 0.02 and 0.003 < la.std().item() < 0.02
    assert model.circuit_graph.n_edges == 32


def test_tasks_are_registered_and_encode_every_position():
    assert {"reverse", "xproportion"} <= set(tasks.TASKS)
    assert tasks.get_task("reverse").name == "reverse"
    xp = get_tracr_task("xproportion")
    rows = xp.load_split(None, "validation")
    examples = xp.encode_rows(rows)
    batch = collate(examples, pad_id=4)
    fractions = batch["targets"].float() / batch["positions"].float()
    assert torch.allclose(fractions, torch.tensor([r["target"][1:] for r in rows]))
    assert all(e.positions == [1, 2, 3, 4] and e.corr_input_ids == e.input_ids for e in examples)
    with pytest.raises(tasks.TaskDataError, match="vocab"):
        xp.encode_rows(rows[:1], {"BOS": 0})


@pytest.mark.parametrize("name", TASK_NAMES)
def test_losses_and_metrics(name):
    task = get_tracr_task(name)
    model = ErazrModel.from_tracr(task.model_path)
    examples = task.encode_rows(task.load_split(None, "train")[:16], model.config.token_to_id())
    batch = collate(examples, model.config.pad_token_id)
    with torch.no_grad(), model.full_model():
        full = model(batch["input_ids"], output_positions=batch["positions"]).logits
    assert task.loss(full, full, batch).item() == pytest.approx(0.0, abs=1e-7)
    shifted = full.clone()
    shifted[:, 0, 0] += 1.0  # one position wrong
    assert task.loss(shifted, full, batch).item() > 0.01
    ok, off = task.metrics(full, full, batch), task.metrics(shifted, full, batch)
    assert ok["accuracy"].mean() == ok["exact_match"].mean() == ok["full_accuracy"].mean() == 1.0
    if name == "xproportion":
        assert off["accuracy"].sum() == 0 and off["exact_match"].sum() == 0
        # the loss is a softmax across positions: a shift common to all is invisible to it
        assert task.loss(full + 0.3, full, batch).item() == pytest.approx(0.0, abs=1e-6)
        assert task.metrics(full + 0.3, full, batch)["accuracy"].sum() == 0
