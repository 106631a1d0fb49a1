"""End to end on a tiny random GPT-2 with the shipped tokenizer: every prune entry
point, then eval, vis and draw on its output; resume; threshold search; bad input."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_pruning.evaluation import set_thresholds_for_sparsity
from edge_pruning.pruning import COMPLETE_MARKER, last_complete_checkpoint
from edge_pruning.sparsity import check_schedule, target_at_step

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "data" / "models" / "smollm2-135m"


def run_script(rel_path: str, args: list[str]) -> None:
    """Run a repo script in-process, as `python <script> <args>` would."""
    argv = sys.argv
    sys.argv = [str(REPO / rel_path), *map(str, args)]
    try:
        runpy.run_path(str(REPO / rel_path), run_name="__main__")
    finally:
        sys.argv = argv


def prune_args(model, out, steps=4, extra=()):
    return [
        "--initialize_from", model, "--output_dir", out, "--max_steps", steps,
        "--per_device_train_batch_size", 4, "--logging_steps", 1, "--save_steps", 2,
        "--report_to", "none", "--max_train_samples", 16, "--max_eval_samples", 8,
        "--num_sparsity_warmup_steps", 2, "--target_edge_sparsity", 0.9,
        "--edge_learning_rate", 0.5, "--reg_edge_learning_rate", 0.5,
        "--node_learning_rate", 0.8, "--reg_node_learning_rate", 0.8, "--target_node_sparsity", 0.7, *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "task,extra",
    [
        ("ioi", ["--with_embedding_nodes"]),
        ("gt", ["--warmup_type", "logarithmic"]),
        ("gp", ["--disable_node_loss"]),
        ("custom", ["--dataset_path", REPO / "data" / "datasets" / "example_custom.jsonl"]),
    ],
)
def test_prune_eval_vis_draw(tiny_gpt2, tmp_path, task, extra):
    out = tmp_path / "run"
    run_script(f"src/prune/fpt2_{task}.py", prune_args(tiny_gpt2, out, extra=extra))
    for name in ("model.safetensors", "config.json", "edges.json", "eval_results.json", "prune.log", "log.jsonl"):
        assert (out / name).exists(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [row for row in log if "kl_loss" in row]
    assert [row["step"] for row in steps] == [1, 2, 3, 4]
    # the target warms up from 0 to 0.9 over two steps, then stays
    assert steps[0]["target_edge_sparsity"] < 0.9 and steps[-1]["target_edge_sparsity"] == pytest.approx(0.9)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["task"] == task and results["n_examples"] > 0
    assert results["full_model"]["kl"] == 0.0 and results["circuit"]["kl"] >= -1e-6
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "fpt2"
    assert config["with_embedding_nodes"] == ("--with_embedding_nodes" in extra)

    if task != "custom":
        eval_out = tmp_path / "eval.json"
        run_script(f"src/eval/{task}.py", ["-m", out, "-s", "validation", "-n", 8, "-se", 0.5, "-o", eval_out, "--mask-rule", "global"])
        ev = json.loads(eval_out.read_text())
        assert abs(ev["edge_sparsity"] - 0.5) <= 1.0 / ev["n_edges_total"]
        if task == "gt":
            assert {"prob_difference", "kendall_tau", "kl"} <= set(ev["circuit"])
        else:
            assert {"logit_difference", "accuracy", "exact_match", "kl"} <= set(ev["circuit"])

    run_script("src/modeling/vis_fpt2.py", ["-i", out, "-se", 0.8])
    edges = json.loads((out / "edges.json").read_text())
    assert all(isinstance(e, list) and len(e) == 2 for e in edges)
    if edges:
        run_script("src/modeling/draw_fpt2.py", ["-i", out / "edges.json"])
        text = subprocess.run(["pdftotext", out / "edges.pdf", "-"], capture_output=True, text=True, check=True).stdout
        assert "Output" in text  # the original's name for resid_post, in either drawing


def test_resume_from_last_complete_checkpoint(tiny_gpt2, tmp_path):
    from edge_pruning.pruning import prune_main

    out = tmp_path / "run"
    prune_main("fpt2", "ioi", list(map(str, prune_args(tiny_gpt2, out, steps=2))))
    assert last_complete_checkpoint(out) == str(out / "checkpoint-2")
    # A checkpoint that was cut off mid-save has no marker and is never resumed from.
    partial = out / "checkpoint-3"
    partial.mkdir()
    (partial / "config.json").write_text("{")
    assert last_complete_checkpoint(out) == str(out / "checkpoint-2")
    prune_main("fpt2", "ioi", list(map(str, prune_args(tiny_gpt2, out, steps=4))))
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert "resuming from" in (out / "prune.log").read_text()
    assert (out / "checkpoint-4" / COMPLETE_MARKER).exists()


def test_threshold_search_hits_requested_sparsity_within_one_edge(tiny_gpt2):
    from modeling.modeling_fpt2 import FPT2LMHeadModel

    from edge_pruning import l0

    model = FPT2LMHeadModel.from_pretrained(tiny_gpt2, with_embedding_nodes=True)
    model.circuit_masks.mask_rule = l0.MaskRule.GLOBAL  # ours: hits any sparsity; the original's bisection does not
    n = model.circuit_graph.n_edges
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_(0.0, 3.0)
    for target in (0.0, 0.1, 0.37, 0.5, 0.9, 0.99, 1.0):
        edge_sparsity, _ = set_thresholds_for_sparsity(model, edge_sparsity=target)
        assert abs(edge_sparsity - target) <= 1.0 / n + 1e-9
    # without a request, the circuit keeps the model's own (soft) sparsity
    model.set_edge_threshold_for_deterministic(None)
    soft = model.get_edge_sparsity()
    edge_sparsity, _ = set_thresholds_for_sparsity(model)
    assert abs(edge_sparsity - soft) <= 1.0 / n + 1e-9
    with pytest.raises(ValueError, match="sparsity"):
        set_thresholds_for_sparsity(model, edge_sparsity=1.5)


def test_warmup_schedules():
    assert target_at_step(0.0, 1.1, 0, 100) == 0.0
    assert target_at_step(0.0, 1.1, 50, 100) == pytest.approx(0.55)
    assert target_at_step(0.0, 1.1, 500, 100) == 1.1
    # logarithmic: 1 - s moves geometrically from 1 - start to 1 - target
    assert 1 - target_at_step(0.0, 0.99, 50, 100, "logarithmic") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="logarithmic"):
        check_schedule(0.0, 1.02, "logarithmic")
    with pytest.raises(ValueError, match="start_edge_sparsity"):
        check_schedule(1.2, 0.5, "linear")


def test_bad_flags_get_clear_errors(tiny_gpt2, tmp_path):
    from edge_pruning.pruning import prune_main

    base = list(map(str, prune_args(tiny_gpt2, tmp_path / "x")))
    with pytest.raises(ValueError, match="logarithmic"):
        prune_main("fpt2", "ioi", base + ["--warmup_type", "logarithmic", "--target_edge_sparsity", "1.05"])
    with pytest.raises(ValueError, match="ablation"):
        prune_main("fpt2", "ioi", base + ["--ablation", "resample"])
    with pytest.raises(ValueError, match="max_seq_length"):
        prune_main("fpt2", "ioi", base + ["--max_seq_length", "5"])


def test_mean_ablation_runs_and_differs_from_interchange(tiny_gpt2, tmp_path):
    from edge_pruning.pruning import prune_main

    a = prune_main("fpt2", "ioi", list(map(str, prune_args(tiny_gpt2, tmp_path / "mean", steps=2, extra=["--ablation", "mean"]))))
    assert a.n_examples == 8 and a.circuit["kl"] >= -1e-6


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        subprocess.run([sys.executable, "-m", "edge_pruning.smollm2"], check=True)
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), max_position_embeddings=512, initializer_range=0.2, tie_word_embeddings=True,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("task", ["ioi", "gt", "gp", "boolean_expressions_ip", "boolean_expressions_fs"])
def test_fllama_entry_points(tiny_llama, tmp_path, task):
    out = tmp_path / "run"
    extra = ["--max_seq_length", 160] if task.startswith("boolean") else []
    run_script(f"src/prune/fllama_{task}.py", prune_args(tiny_llama, out, steps=2, extra=["--with_embedding_nodes", *extra]))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["n_examples"] == 8 and results["task"] == task
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "fllama" and config["with_embedding_nodes"] is True
    if task.startswith("boolean"):
        mode = "fewshot" if task.endswith("fs") else "instruction"
        run_script("src/modeling/vis_fllama.py", ["-i", out, "-se", 0.5])
        eval_out = tmp_path / "bool.json"
        run_script("src/eval/boolean_expressions.py", ["-m", out, "-M", mode, "-e", out / "edges.json", "-s", "validation", "-n", 4, "--max-seq-length", 160, "-o", eval_out])
        ev = json.loads(eval_out.read_text())
        assert ev["task"] == task
        assert ev["n_edges"] <= len(json.loads((out / "edges.json").read_text()))


def test_vis_fllama_intersection(tiny_llama, tmp_path):
    from modeling.modeling_fllama import FLlamaForCausalLM

    paths = []
    for seed in (0, 1):
        model = FLlamaForCausalLM.from_pretrained(tiny_llama, with_embedding_nodes=True)
        torch.manual_seed(seed)
        with torch.no_grad():
            model.circuit_masks.edge_log_alphas.normal_(0.0, 3.0)
        model.save_pretrained(tmp_path / f"m{seed}")
        paths.append(tmp_path / f"m{seed}")
    out = tmp_path / "both.json"
    run_script("src/modeling/vis_fllama.py", ["-m1", paths[0], "-m2", paths[1], "-o", out, "--no-sanitize"])
    run_script("src/modeling/vis_fllama.py", ["-i", paths[0], "--no-sanitize"])
    run_script("src/modeling/vis_fllama.py", ["-i", paths[1], "--no-sanitize"])
    a = {tuple(e) for e in json.loads((paths[0] / "edges.json").read_text())}
    b = {tuple(e) for e in json.loads((paths[1] / "edges.json").read_text())}
    both = {tuple(e) for e in json.loads(out.read_text())}
    assert both == a & b and 0 < len(both) < min(len(a), len(b))


def test_compare_methods_end_to_end(tiny_gpt2, tmp_path):
    from edge_pruning.compare import compare_main
    from edge_pruning.pruning import prune_main

    out = tmp_path / "cmp"
    run = tmp_path / "run"
    prune_main("fpt2", "ioi", list(map(str, prune_args(tiny_gpt2, run, steps=2, extra=["--with_embedding_nodes"]))))
    summary = compare_main(["-m", str(tiny_gpt2), "-t", "ioi", "-w", "--ep-runs", str(run), "--n-attribution", "4",
                            "--n-eval", "4", "--ig-steps", "2", "--fractions", "0.1", "1.0", "-o", str(out)])  # fmt: skip
    assert set(summary["areas"]) == {"eap", "eap-ig-inputs", "eap-ig-activations", "edge-pruning (ranked)"}
    points = json.loads((out / "faithfulness.json").read_text())["points"]
    full = [p for p in points if p["edge_fraction"] == 1.0]
    assert full and all(abs(p["kl"]) < 1e-5 for p in full)
    for name in ("faithfulness.csv", "faithfulness.png", "circuit_eap.json", f"circuit_edge-pruning_{run.name}.json"):
        assert (out / name).exists(), name


def test_one_entry_point_for_every_architecture(tiny_gpt2, tiny_llama, tmp_path):
    """`python -m edge_pruning prune --task T --initialize_from CKPT` reads the
    architecture off the checkpoint and runs as the per-architecture script does."""
    from edge_pruning.__main__ import main

    run_script("src/prune/fpt2_ioi.py", prune_args(tiny_gpt2, tmp_path / "script", steps=2))
    for model, model_type in ((tiny_gpt2, "fpt2"), (tiny_llama, "fllama")):
        out = tmp_path / model_type
        main(["prune", "--task", "ioi", *map(str, prune_args(model, out, steps=2))])
        assert json.loads((out / "config.json").read_text())["model_type"] == model_type
    for name in ("log.jsonl", "edges.json", "eval_results.json"):
        assert (tmp_path / "fpt2" / name).read_text() == (tmp_path / "script" / name).read_text(), name
    eval_out = tmp_path / "eval.json"
    main(["eval", "--task", "ioi", "-m", str(tmp_path / "fllama"), "-s", "validation", "-n", "4", "-o", str(eval_out)])
    assert json.loads(eval_out.read_text())["n_examples"] == 4
    main(["vis", "-i", str(tmp_path / "fllama"), "-se", "0.5"])
    assert json.loads((tmp_path / "fllama" / "edges.json").read_text())
    with pytest.raises(SystemExit) as exited:
        main(["prune", "--initialize_from", str(tiny_gpt2)])
    assert exited.value.code == 2


def test_ungroup_kv_flag(tiny_llama, tmp_path):
    """--ungroup_kv reads K and V per query head; a pruned checkpoint keeps its graph."""
    from edge_pruning.cli import vis_main
    from edge_pruning.models import load_circuit_model
    from edge_pruning.pruning import prune_main

    grouped = load_circuit_model(str(tiny_llama), False).circuit_graph.n_edges
    ungrouped = load_circuit_model(str(tiny_llama), False, ungroup_kv=True).circuit_graph.n_edges
    assert ungrouped > grouped
    out = tmp_path / "run"
    prune_main(None, "ioi", list(map(str, prune_args(tiny_llama, out, steps=2, extra=["--ungroup_kv"]))))
    assert json.loads((out / "config.json").read_text())["ungroup_kv"] is True
    assert load_circuit_model(str(out), False).circuit_graph.n_edges == ungrouped
    plain = tmp_path / "plain.json"
    vis_main(["-i", str(tiny_llama), "--ungroup_kv", "--no-sanitize", "-o", str(plain)])
    assert len(json.loads(plain.read_text())) == ungrouped


def test_run_settings_are_restored(tiny_gpt2, tmp_path):
    """Log handlers, levels, denormal flushing and the thread count hold for the run only."""
    import logging

    from transformers import TrainerCallback

    from edge_pruning.pruning import prune_main, runtime

    class During(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            self.handlers = len(logging.getLogger("edge_pruning").handlers)
            self.flushed = runtime._denormals_flushed

    loggers = [logging.getLogger(name) for name in runtime.RUN_LOGGERS]
    before = [(list(log.handlers), log.level) for log in loggers]
    threads = torch.get_num_threads()
    during = During()
    prune_main("fpt2", "ioi", list(map(str, prune_args(tiny_gpt2, tmp_path / "run", steps=2))), callbacks=[during])
    assert during.handlers == len(before[0][0]) + 2 and during.flushed
    assert [(list(log.handlers), log.level) for log in loggers] == before
    assert torch.get_num_threads() == threads and not runtime._denormals_flushed
