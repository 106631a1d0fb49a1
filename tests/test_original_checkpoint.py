"""Checkpoints saved by the original code load into ours and give the original's circuit.

The fixtures in tests/fixtures/original/ were made by running the original
implementation (see the README there): tiny random models saved with spread-out mask
parameters, and the original's own sparsities, thresholds, edge list and circuit
logits on a fixed batch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from edge_pruning.evaluation import set_thresholds_for_sparsity
from edge_pruning.original_checkpoint import OriginalCheckpointError
from modeling.modeling_fllama import FLlamaForCausalLM
from modeling.modeling_fpt2 import FPT2LMHeadModel

FIXTURES = Path(__file__).parent / "fixtures" / "original"
CASES = [("fpt2_emb", FPT2LMHeadModel), ("fpt2_noemb", FPT2LMHeadModel), ("fllama", FLlamaForCausalLM), ("fllama_emb", FLlamaForCausalLM)]
CASES = [(name, cls) for name, cls in CASES if (FIXTURES / name / "expected.json").is_file()]


def expected(name: str) -> dict:
    return json.loads((FIXTURES / name / "expected.json").read_text())


def tensors(name: str) -> dict[str, torch.Tensor]:
    with safe_open(str(FIXTURES / name / "tensors.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("name,cls", CASES)
def test_original_checkpoint_gives_the_original_circuit(name, cls):
    exp = expected(name)
    model = cls.from_pretrained(FIXTURES / name).eval()
    assert model.config.with_embedding_nodes == exp["with_embedding_nodes"]
    graph = model.circuit_graph
    assert graph.n_edges == exp["n_edges"]
    # the model's own sparsities, before any threshold (what the original's eval targets)
    assert model.get_edge_sparsity() == pytest.approx(exp["edge_sparsity"], abs=1e-6)
    assert model.get_node_sparsity() == pytest.approx(exp["node_sparsity"], abs=1e-6)
    edge_sparsity, node_sparsity = set_thresholds_for_sparsity(model)
    assert model.circuit_masks.edge_threshold == pytest.approx(exp["edge_threshold"], abs=1e-7)
    assert model.circuit_masks.node_threshold == pytest.approx(exp["node_threshold"], abs=1e-7)
    assert edge_sparsity == pytest.approx(exp["edge_sparsity_after_both_thresholds"], abs=1e-6)
    assert node_sparsity == pytest.approx(exp["node_sparsity_after_both_thresholds"], abs=1e-6)
    # the original's overall sparsity and edge list, exactly
    assert abs(model.get_effective_edge_sparsity() - exp["overall_edge_sparsity"]) <= 1 / graph.n_edges
    assert sorted(model.get_edges()) == sorted(map(tuple, exp["edges"]))
    # the circuit's logits on the fixture's batch, removed edges carrying the corrupted run
    t = tensors(name)
    with torch.no_grad():
        corr_x = model(t["corr_input_ids"], output_writer_states=True).writer_states
        logits = model(t["input_ids"], corr_x=corr_x).logits
        with model.full_model():
            full = model(t["input_ids"]).logits
    assert (logits - t["logits"]).abs().max().item() <= 1e-4
    assert (full - t["control_logits"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name,cls", CASES[:1])
def test_original_lambdas_load(name, cls):
    exp = expected(name)
    model = cls.from_pretrained(FIXTURES / name)
    masks = model.circuit_masks
    for key, value in exp["lambdas"].items():
        assert getattr(masks, key).item() == pytest.approx(value, abs=1e-6)


def copy_fixture(name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    shutil.copytree(FIXTURES / name, out)
    return out


@pytest.mark.parametrize("name,cls", CASES[:1])
def test_unknown_mask_key_is_an_error_naming_it(name, cls, tmp_path):
    path = copy_fixture(name, tmp_path)
    state = load_file(path / "model.safetensors")
    state["transformer.h.0.o_read_log_alphas"] = torch.zeros(3)
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(OriginalCheckpointError, match="o_read_log_alphas"):
        cls.from_pretrained(path)


@pytest.mark.parametrize("name,cls", CASES[:1])
def test_mask_of_the_wrong_shape_is_an_error_naming_it(name, cls, tmp_path):
    path = copy_fixture(name, tmp_path)
    state = load_file(path / "model.safetensors")
    key = next(k for k in state if k.endswith("h.1.q_read_log_alphas"))
    state[key] = state[key][:, :2].contiguous()
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(OriginalCheckpointError, match="q_read_log_alphas"):
        cls.from_pretrained(path)


def test_checkpoint_of_another_architecture_is_an_error():
    llama = next((n for n, c in CASES if c is FLlamaForCausalLM), None)
    if llama is None:
        pytest.skip("no Llama fixture")
    with pytest.raises(ValueError, match="llama"):
        FPT2LMHeadModel.from_pretrained(FIXTURES / llama)


def test_original_tracr_pickle_loads_into_erazr():
    """The original's Tracr pickle format ({model_params, config, vocab, unembedding_mtx})
    runs in our Tracr model and gives the original's outputs."""
    from modeling.modeling_erazr import ErazrModel

    folder = FIXTURES / "tracr_pickle"
    exp = json.loads((folder / "expected.json").read_text())
    model = ErazrModel.from_tracr(folder / "xproportion.original_format.pkl")
    ids = torch.tensor(exp["input_ids"])
    with torch.no_grad(), model.full_model():
        logits = model(ids).logits
    assert (logits - torch.tensor(exp["unembedded"])).abs().max().item() <= 1e-5
    shipped = ErazrModel.from_tracr(Path(__file__).parents[1] / "data" / "tracr_models" / "xproportion.tracr.pkl")
    with torch.no_grad(), shipped.full_model():
        assert torch.allclose(shipped(ids).logits, logits, atol=1e-6)
