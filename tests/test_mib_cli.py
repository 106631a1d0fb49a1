"""MIB's task data (files written in its layout), the export-mib / import-mib
commands, the nine-circuit snapshots and src/eval/mib.py end to end on a tiny GPT-2."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from edge_pruning.__main__ import dispatch
from edge_pruning.circuit import load_edges_json, save_edges_json
from edge_pruning.mib import SUBMISSION_FRACTIONS, mib_map, read_mib
from edge_pruning.mib_eval import mib_eval_main
from edge_pruning.models import load_circuit_model
from edge_pruning.pruning.snapshots import MIBSnapshots
from edge_pruning.tasks import get_task
from edge_pruning.tasks.mib import load_mib_rows

FIXTURES = Path(__file__).parent / "fixtures" / "mib"


@pytest.fixture(scope="module")
def tokenizer(tiny_gpt2):
    return AutoTokenizer.from_pretrained(tiny_gpt2)


def test_mib_ioi_rows_labels_and_filter(tokenizer):
    task = get_task("mib-ioi")
    rows = load_mib_rows(FIXTURES / "ioi", "validation")
    examples = task.encode_rows(rows, tokenizer)
    # the fourth row's random_c (" Bartholomew") is 3 tokens: MIB's filter drops it
    assert len(rows) == 4 and len(examples) == 3
    first = examples[0]
    assert first.targets == tokenizer(" Mary", add_special_tokens=False)["input_ids"][:1]
    assert first.distractor == tokenizer(" John", add_special_tokens=False)["input_ids"][0]
    assert first.input_ids == tokenizer(rows[0]["prompt"])["input_ids"]
    assert first.corr_input_ids == tokenizer(rows[0]["s2_io_flip_counterfactual"]["prompt"])["input_ids"]
    assert first.positions == [len(first.input_ids) - 1]


def test_mib_mcqa_and_arithmetic(tokenizer):
    mcqa = get_task("mib-mcqa")
    examples = mcqa.encode_rows(load_mib_rows(FIXTURES / "copycolors_mcqa", "validation", mcqa.dataset_config), tokenizer)
    a, b = (tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in "AB")
    assert [(e.targets[0], e.distractor) for e in examples] == [(b, a), (a, b)]
    add = get_task("mib-arithmetic-addition")
    examples = add.encode_rows(load_mib_rows(FIXTURES / "arithmetic_addition", "validation"), tokenizer)
    digit = lambda d: tokenizer(str(d), add_special_tokens=False)["input_ids"][0]  # noqa: E731
    # the subtraction row and the one without a counterfactual are dropped, as MIB does
    assert [(e.targets[0], e.distractor) for e in examples] == [(digit(7), digit(8)), (digit(6), digit(8))]


def test_missing_split_is_a_clear_error():
    with pytest.raises(ValueError, match="no files of split 'test'"):
        load_mib_rows(FIXTURES / "ioi", "test")


def test_export_and_import_commands_round_trip_edges(tiny_gpt2, tmp_path):
    model = load_circuit_model(str(tiny_gpt2), with_embedding_nodes=True)
    g = model.circuit_graph
    edges = [("tok_embeds", "a0.h1.v"), ("a0.h1", "m1"), ("m1", "resid_post"), ("tok_embeds", "resid_post")]
    save_edges_json(tmp_path / "edges.json", edges)
    for suffix in ("json", "pt"):
        dispatch(["export-mib", str(tmp_path / "edges.json"), "--model", str(tiny_gpt2), "-o", str(tmp_path / f"c.{suffix}")])
        mib = read_mib(tmp_path / f"c.{suffix}")
        assert int(mib.in_graph.sum()) == len(edges)
        dispatch(["import-mib", str(tmp_path / f"c.{suffix}"), "--model", str(tiny_gpt2), "-o", str(tmp_path / "back.json")])
        back = set(load_edges_json(tmp_path / "back.json"))
        pos = {(w, r) for w, r in g.edge_list() if w == "pos_embeds"}  # no MIB node: kept
        assert back == set(edges) | pos


def test_snapshots_write_nine_circuits_of_at_most_k(tiny_gpt2, tmp_path):
    model = load_circuit_model(str(tiny_gpt2), with_embedding_nodes=True)
    callback = MIBSnapshots("ioi_tiny")
    args = types.SimpleNamespace(output_dir=str(tmp_path))
    state = types.SimpleNamespace(global_step=0, is_world_process_zero=True)
    callback.on_train_begin(args, state, None)
    torch.manual_seed(0)
    log_alphas = model.circuit_masks.edge_log_alphas
    for step, center in enumerate((2.0, -4.0, -8.0), start=1):
        with torch.no_grad():
            log_alphas.normal_(center, 3.0)
        state.global_step = step
        callback.on_step_end(args, state, None, model=model)
    callback.on_train_end(args, state, None, model=model)
    record = json.loads((tmp_path / "ioi_tiny" / "snapshots.json").read_text())["snapshots"]
    assert [s["fraction"] for s in record] == list(SUBMISSION_FRACTIONS)
    n_mib = int(mib_map(model).real.sum())
    for s in record:
        graph = read_mib(tmp_path / "ioi_tiny" / s["file"])
        assert int(graph.in_graph.sum()) == s["n_edges"] == int(s["fraction"] * n_mib)
        assert s["reached"] == (s["expected_kept_fraction"] <= s["fraction"])
        # the circuit is the top of the exported (non-negative) score
        chosen = graph.scores[graph.in_graph]
        assert (graph.scores >= 0).all() and (chosen.numel() == 0 or chosen.min() >= graph.scores[~graph.in_graph & mib_map(model).real].max())


def test_eval_script_scores_attribution_and_circuits(tiny_gpt2, tmp_path):
    model = load_circuit_model(str(tiny_gpt2), with_embedding_nodes=True)
    g = model.circuit_graph
    save_edges_json(tmp_path / "edges.json", [("tok_embeds", "resid_post"), ("tok_embeds", "a0.h0.v"), ("a0.h0", "resid_post")])
    dispatch(["export-mib", str(tmp_path / "edges.json"), "--model", str(tiny_gpt2), "-o", str(tmp_path / "c.json")])
    folder = tmp_path / "nine"
    folder.mkdir()
    mapping = mib_map(model)
    for k in SUBMISSION_FRACTIONS:
        scores = torch.zeros(g.n_readers, g.n_writers)
        mapping.export(scores, scores != 0).save(folder / f"{k}.pt")
    out = tmp_path / "out"
    summary = mib_eval_main([
        "-m", str(tiny_gpt2), "-d", str(FIXTURES / "ioi"), "--attribute", "eap", "--attribution-split", "validation",
        "--circuit", f"mine={tmp_path / 'c.json'}", "--circuit", f"empty={folder}", "-o", str(out),
    ])  # fmt: skip
    assert set(summary["scores"]) == {"eap", "mine", "empty"} and summary["n_examples"] == 3
    # nine empty circuits: f = 0 up to k = 0.5, then the full model: f = 1
    curve = json.loads((out / "results" / "empty_patching_edge" / f"ioi_{tiny_gpt2.name}_validation_abs-True.json").read_text())
    assert curve["faithfulnesses"][:9] == pytest.approx([0.0] * 9, abs=1e-6) and curve["faithfulnesses"][9] == pytest.approx(1.0, abs=1e-4)
    assert summary["scores"]["empty"]["CPR"] == pytest.approx(0.25, abs=1e-4)  # (1 - 0.5) * (0 + 1) / 2
    assert (out / "circuits" / "eap_patching_edge" / f"ioi_{tiny_gpt2.name}" / "importances.pt").exists()
    assert (out / "results" / "eap_patching_edge" / f"ioi_{tiny_gpt2.name}_validation_abs-False.pkl").exists()
    assert (out / "mib_faithfulness.png").exists() and (out / "mib_eval.log").exists()
    # a later run joins the earlier one's methods into its table
    later = mib_eval_main(["-m", str(tiny_gpt2), "-d", str(FIXTURES / "ioi"), "--circuit", f"again={tmp_path / 'c.json'}",
                           "--include", str(out), "-o", str(tmp_path / "out2")])  # fmt: skip
    assert later["scores"] == {**summary["scores"], "again": summary["scores"]["mine"]}
