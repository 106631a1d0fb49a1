"""The original's command lines run unchanged: the flag sets of its run scripts
(run_scripts/{ioi,gt,gp}_sweep.sh, custom_example.sh, tracr_*.sh,
launch_fllama_*_prune.sh, launch_fllama_eval.sh) on tiny random models for 2 steps,
its evaluation and circuit-export flags, its defaults, and what its pruning flags do."""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from conftest import ensure_tokenizer
from edge_pruning.pruning import original_defaults, parse_args, prune_main, pruning_loss

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "data" / "models" / "smollm2-135m"
DATASETS = REPO / "data" / "datasets"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    ensure_tokenizer()
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), max_position_embeddings=512, initializer_range=0.2, tie_word_embeddings=True,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny_llama_orig")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def run_script(rel_path: str, args: list) -> None:
    """`python <script> <args>`, in-process; a non-zero exit fails the test."""
    argv = sys.argv
    sys.argv = [str(REPO / rel_path), *map(str, args)]
    try:
        runpy.run_path(str(REPO / rel_path), run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            raise AssertionError(f"{rel_path} exited with {e.code}") from e
    finally:
        sys.argv = argv


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ the original's prune command lines


def original_sweep_flags(task: str, model: Path, out: Path) -> list:
    """run_scripts/{ioi,gt,gp}_sweep.sh of the original, flag for flag; only the sizes
    (steps, batches, samples, eval/save/log intervals), paths and target are small here."""
    node = {"ioi": 0.72, "gt": 0.68, "gp": 0.69}[task]
    return [
        "--report_to", "wandb", "--do_train", "--do_eval",
        "--dataset_path", DATASETS / task, "--train_split", "train", "--initialize_from", model,
        "--max_seq_length", 64, "--per_device_train_batch_size", 4, "--per_device_eval_batch_size", 4,
        "--gradient_accumulation_steps", 1, "--eval_accumulation_steps", 16,
        "--edge_learning_rate", 0.8, "--layer_learning_rate", 0.8,
        "--reg_edge_learning_rate", 0.8, "--reg_layer_learning_rate", 0.8,
        "--max_steps", 2, "--warmup_steps", 1, "--eval_strategy", "steps", "--eval_steps", 1, "--save_steps", 1,
        "--logging_steps", 1, "--save_total_limit", 1,
        "--start_edge_sparsity", "0.00", "--target_edge_sparsity", 1.02,
        "--start_layer_sparsity", "0.00", "--target_layer_sparsity", node,
        "--num_sparsity_warmup_steps", 2, "--max_train_samples", 1000000, "--max_eval_samples", 8,
        "--output_dir", out, "--remove_unused_columns", "false", "--dataloader_num_workers", 0,
        "--warmup_type", "linear", "--with_embedding_nodes", "--disable_node_loss",
    ]  # fmt: skip


@pytest.mark.parametrize("task", ["ioi", "gt", "gp"])
def test_original_sweep_command_line(tiny_gpt2, tmp_path, monkeypatch, task):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # as the original scripts run
    out = tmp_path / "run"
    run_script(f"src/prune/fpt2_{task}.py", original_sweep_flags(task, tiny_gpt2, out))
    rows = log_rows(out)
    assert [r["step"] for r in rows if "kl_loss" in r] == [1, 2]
    evals = [r for r in rows if "eval_kl" in r]  # --do_eval --eval_strategy steps: validation during training
    assert [r["step"] for r in evals] == [1, 2] and all("eval_edge_sparsity" in r for r in evals)
    args = json.loads((out / "pruning_args.json").read_text())
    assert args["node_learning_rate"] == args["reg_node_learning_rate"] == 0.8  # the layer flags
    assert args["target_node_sparsity"] == {"ioi": 0.72, "gt": 0.68, "gp": 0.69}[task]
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-1").exists()  # save_total_limit 1
    assert json.loads((out / "config.json").read_text())["with_embedding_nodes"] is True


def test_original_custom_command_line(tiny_gpt2, tmp_path, monkeypatch):
    """run_scripts/custom_example.sh: --evaluation_strategy, transformers' old name."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "run"
    flags = original_sweep_flags("ioi", tiny_gpt2, out)
    flags[flags.index("--eval_strategy")] = "--evaluation_strategy"
    flags[flags.index("--dataset_path") + 1] = DATASETS / "example_custom.jsonl"
    flags[flags.index("--max_train_samples") + 1] = 10
    flags[flags.index("--target_edge_sparsity") + 1] = 0.95
    run_script("src/prune/fpt2_custom.py", flags)
    assert [r["step"] for r in log_rows(out) if "eval_kl" in r] == [1, 2]


TRACR_FLAGS = {
    # run_scripts/tracr_{reverse,xproportion}.sh of the original; steps and intervals small
    "reverse": ["--seq_length", 4, "--edge_learning_rate", 0.03, "--node_learning_rate", 0.03,
                "--reg_edge_learning_rate", 0.001, "--reg_node_learning_rate", 0.001, "--warmup_steps", 1,
                "--target_edge_sparsity", 1.02, "--target_node_sparsity", 0.1, "--disable_node_loss"],
    "xproportion": ["--seq_length", 5, "--edge_learning_rate", 1, "--node_learning_rate", 1,
                    "--reg_edge_learning_rate", 0.0001, "--reg_node_learning_rate", 0.0001, "--warmup_steps", 1,
                    "--target_edge_sparsity", 0.92, "--target_node_sparsity", 0.4],
}  # fmt: skip


@pytest.mark.parametrize("task", ["reverse", "xproportion"])
def test_original_tracr_command_line(tmp_path, monkeypatch, task):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "run"
    run_script(f"src/prune/erazr_{task}.py", [
        "--report_to", "wandb", "--do_train", "--do_eval", "--dataset_path", DATASETS / task,
        "--initialize_from", REPO / "data" / "tracr_models" / f"{task}.tracr.pkl",
        "--per_device_train_batch_size", 16, "--per_device_eval_batch_size", 16, "--max_steps", 2,
        "--evaluation_strategy", "steps", "--eval_steps", 1, "--save_steps", 1, "--logging_steps", 1,
        "--save_total_limit", 1, "--start_edge_sparsity", "0.00", "--start_node_sparsity", "0.00",
        "--num_sparsity_warmup_steps", 2, "--max_train_samples", 100000, "--max_eval_samples", 100000,
        "--output_dir", out, "--remove_unused_columns", "false", "--dataloader_num_workers", 0,
        "--label_names", "labels", "--warmup_type", "linear", "--zero_ablation", "--overwrite_output_dir",
        *TRACR_FLAGS[task],
    ])  # fmt: skip
    assert [r["step"] for r in log_rows(out) if "eval_kl" in r] == [1, 2]
    args = json.loads((out / "pruning_args.json").read_text())
    assert args["ablation"] == "zero" and args["seq_length"] == TRACR_FLAGS[task][1]


def test_seq_length_is_checked(tmp_path):
    from edge_pruning.tasks import TaskDataError
    from edge_pruning.tracr_pruning import tracr_prune_main

    with pytest.raises(TaskDataError, match="--seq_length 3"):
        tracr_prune_main("reverse", ["--seq_length", "3", "--max_steps", "1", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("mode", ["fs", "ip"])
def test_original_fllama_launch_command_line(tiny_llama, tmp_path, mode):
    """run_scripts/launch_fllama_{fs,instr}_prune.sh of the original (without srun/accelerate)."""
    out = tmp_path / "run"
    run_script(f"src/prune/fllama_boolean_expressions_{mode}.py", [
        "--report_to", "none", "--do_train", "--dataset_path", DATASETS / "boolean_expressions",
        "--initialize_from", tiny_llama, "--ref_initialize_from", tiny_llama, "--max_seq_length", 192,
        "--per_device_train_batch_size", 1, "--edge_learning_rate", 0.8, "--node_learning_rate", 0.8,
        "--reg_edge_learning_rate", 0.4, "--reg_node_learning_rate", 0.4, "--max_steps", 2, "--warmup_steps", 1,
        "--save_steps", 512, "--logging_steps", 1, "--save_total_limit", 1, "--start_edge_sparsity", "0.00",
        "--target_edge_sparsity", 1.2, "--start_node_sparsity", "0.00", "--target_node_sparsity", 0.7,
        "--num_sparsity_warmup_steps", 1, "--max_train_samples", 8000, "--max_eval_samples", 4,
        "--output_dir", out, "--remove_unused_columns", "false", "--dataloader_num_workers", 0,
        "--warmup_type", "linear", "--bf16", "--gradient_checkpointing", "--seed", 42, "--disable_node_loss",
        "--use_cpu",  # the one flag added: transformers refuses --bf16 on a CPU without it
    ])  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["task"] == f"boolean_expressions_{mode}" and results["n_examples"] == 4


# ------------------------------------------------------------------ sweeps


def test_sweeps_use_the_original_grids(tmp_path):
    """Each sweep's command lines, recorded by a stand-in for python."""
    record = tmp_path / "calls.jsonl"
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    grids = {"ioi": (17, 0.72, "0.94", "1.1"), "gt": (15, 0.68, "0.95", "1.1"), "gp": (19, 0.69, "0.93", "1.4")}
    for task, (n, node, first, last) in grids.items():
        record.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("EDGE_TARGETS", "NODE_TARGET", "N_TEST")}
        subprocess.run(["bash", REPO / "run_scripts" / f"{task}_sweep.sh"], env={**env, "PYTHON": str(fake), "OUT": str(tmp_path)},
                       check=True, timeout=60)  # fmt: skip
        calls = [json.loads(line) for line in record.read_text().splitlines()]
        prunes = [c for c in calls if c[0].endswith(f"src/prune/fpt2_{task}.py")]
        evals = [c for c in calls if c[0].endswith(f"src/eval/{task}.py")]
        targets = [c[c.index("--target_edge_sparsity") + 1] for c in prunes]
        assert len(prunes) == len(evals) == n and targets[0] == first and targets[-1] == last
        assert all(float(c[c.index("--target_layer_sparsity") + 1]) == node for c in prunes)
        assert all("--disable_node_loss" in c and "--do_eval" in c for c in prunes)
        assert all("-n" not in c and c[c.index("-s") + 1] == "test" for c in evals)  # the whole test split


def test_sweep_script_runs(tiny_gpt2, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "MODEL": str(tiny_gpt2), "STEPS": "2", "WARMUP": "1",
           "EDGE_TARGETS": "1.02", "N_TEST": "4", "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}  # fmt: skip
    subprocess.run(["bash", REPO / "run_scripts" / "ioi_sweep.sh"], env=env, check=True, capture_output=True, timeout=300)
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith("ioi-")]
    assert "es1.02-ns0.72-t2" in run.name
    result = json.loads((run / "eval_ioi_test.json").read_text())
    assert result["split"] == "test" and result["n_examples"] == 4


# ------------------------------------------------------------------ evaluation and circuit flags


@pytest.fixture(scope="module")
def pruned_gpt2(tiny_gpt2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pruned_gpt2") / "run"
    prune_main("fpt2", "ioi", [str(a) for a in [
        "--initialize_from", tiny_gpt2, "--output_dir", out, "--max_steps", 3, "--per_device_train_batch_size", 4,
        "--report_to", "none", "--max_train_samples", 8, "--max_eval_samples", 4, "--with_embedding_nodes",
        "--edge_learning_rate", 0.5, "--num_sparsity_warmup_steps", 2, "--disable_tqdm", "true",
    ]])  # fmt: skip
    return out


def test_eval_flags_long_and_short(pruned_gpt2, tmp_path):
    long_out, short_out = tmp_path / "long.json", tmp_path / "short.json"
    run_script("src/eval/ioi.py", [
        "--model_name_or_path", pruned_gpt2, "--with-embedding-nodes", "--sparsity-edge", 0.5, "--sparsity-node", 0.1,
        "--split", "validation", "--data-path", DATASETS / "ioi", "--num-examples", 6, "--batch-size", 4,
        "--out-path", long_out, "--device", "cpu",
    ])  # fmt: skip
    run_script("src/eval/ioi.py", ["-m", pruned_gpt2, "-w", "-se", 0.5, "-sn", 0.1, "-s", "validation",
                                   "-d", DATASETS / "ioi", "-n", 6, "-b", 3, "-o", short_out, "-D", "cpu"])  # fmt: skip
    a, b = json.loads(long_out.read_text()), json.loads(short_out.read_text())
    assert a["n_examples"] == b["n_examples"] == 6 and a["n_edges"] == b["n_edges"]
    assert a["circuit"]["kl"] == pytest.approx(b["circuit"]["kl"], abs=1e-5)
    skipped = tmp_path / "skip.json"
    run_script("src/eval/gt.py", ["-m", pruned_gpt2, "-k", 2, "-n", 3, "-s", "validation", "-o", skipped])
    assert json.loads(skipped.read_text())["n_examples"] == 3


def test_boolean_eval_original_flags(tiny_llama, tmp_path):
    out = tmp_path / "bool.json"
    run_script("src/eval/boolean_expressions.py", [
        "-m", tiny_llama, "-M", "fewshot", "-r", tiny_llama, "-d", DATASETS / "boolean_expressions", "-b", 2,
        "-k", 1, "-n", 3, "-t", "a-tag", "-bf16", "-w", "-s", "test", "--max-seq-length", 192, "-o", out,
    ])  # fmt: skip
    result = json.loads(out.read_text())
    assert result["task"] == "boolean_expressions_fs" and result["n_examples"] == 3
    run_script("src/eval/boolean_expressions.py", ["-p", tiny_llama, "-s", "test", "-n", 2, "--max-seq-length", 192, "-o", out])
    assert json.loads(out.read_text())["task"] == "boolean_expressions_ip"  # the original's default mode


def test_vis_flags(pruned_gpt2, tiny_llama, tmp_path):
    run_script("src/modeling/vis_fpt2.py", ["-i", pruned_gpt2, "-w", "-e", 0.5, "-n", 0.0, "--mask-rule", "global",
                                            "--no-sanitize", "-o", tmp_path / "e.json"])  # fmt: skip
    edges = json.loads((tmp_path / "e.json").read_text())
    n_total = 61  # 2 layers, 2 heads, embedding nodes
    assert abs(len(edges) - n_total // 2) <= 1
    run_script("src/modeling/vis_fpt2.py", ["--in_path", pruned_gpt2, "--edge_sparsity", 0.5, "--out_path", tmp_path / "f.json"])
    assert (tmp_path / "f.json").exists()
    single = tmp_path / "llama"
    from modeling.modeling_fllama import FLlamaForCausalLM

    FLlamaForCausalLM.from_pretrained(tiny_llama, with_embedding_nodes=True).save_pretrained(single)
    run_script("src/modeling/vis_fllama.py", ["-m1", single])  # alone: its own circuit, to <m1>/edges.json
    assert isinstance(json.loads((single / "edges.json").read_text()), list)


# ------------------------------------------------------------------ defaults and what the flags do


def test_defaults_are_the_original_scripts():
    for (arch, task), (edge, node) in {
        ("fpt2", "ioi"): (0.97, 0.72), ("fpt2", "gt"): (0.98, 0.68), ("fpt2", "gp"): (0.99, 0.80),
        ("fpt2", "custom"): (0.97, 0.72), ("fllama", "boolean_expressions_fs"): (1.2, 0.70),
        ("erazr", "reverse"): (0.92, 0.16), ("erazr", "xproportion"): (0.97, 0.25),
    }.items():  # fmt: skip
        pargs, targs = parse_args(["--output_dir", "x"], original_defaults(arch, task))
        assert (pargs.target_edge_sparsity, pargs.target_node_sparsity) == (edge, node)
        assert (pargs.edge_learning_rate, pargs.node_learning_rate) == (1e-2, 1.0)
        assert (pargs.reg_edge_learning_rate, pargs.reg_node_learning_rate) == (1e-2, 1.0)
        assert pargs.sparsity_penalty == "sampled" and not pargs.keep_masks
    pargs, _ = parse_args(["--output_dir", "x"], original_defaults("fpt2", "ioi"))
    assert pargs.initialize_from == "gpt2"
    pargs, _ = parse_args(["--output_dir", "x"], original_defaults("fllama", "boolean_expressions_fs"))
    assert pargs.initialize_from == "meta-llama/Llama-2-7b-hf" and pargs.max_seq_length == 72


def test_aliases_and_renamed_flags():
    pargs, targs = parse_args([
        "--output_dir", "x", "--layer_learning_rate", "0.3", "--reg_layer_learning_rate", "0.2",
        "--start_layer_sparsity", "0.1", "--target_layer_sparsity", "0.6", "--stop_optimizing_layer_if_higher_sparsity",
        "--disable_linear_regularization_term", "--zero_ablation", "--evaluation_strategy", "steps", "--eval_steps", "5",
        "--predict_with_generate", "--overwrite_cache", "--model_revision", "main",
    ])  # fmt: skip
    assert (pargs.node_learning_rate, pargs.reg_node_learning_rate) == (0.3, 0.2)
    assert (pargs.start_node_sparsity, pargs.target_node_sparsity) == (0.1, 0.6)
    assert pargs.stop_optimizing_node_if_higher_sparsity and pargs.disable_linear_reg_term
    assert pargs.ablation == "zero" and str(targs.eval_strategy.value) == "steps" and targs.eval_steps == 5
    with pytest.raises(ValueError, match="zero_ablation"):
        parse_args(["--output_dir", "x", "--zero_ablation", "--ablation", "mean"])


def test_ablation_and_penalty_are_validated_once_into_enums():
    from edge_pruning.ablation import Ablation
    from edge_pruning.circuit import SparsityPenalty

    pargs, _ = parse_args(["--output_dir", "x", "--ablation", "mean", "--sparsity_penalty", "expected"])
    assert pargs.ablation is Ablation.MEAN and pargs.sparsity_penalty is SparsityPenalty.EXPECTED
    assert f"{pargs.ablation}" == "mean" and json.loads(json.dumps(dataclasses.asdict(pargs)))["ablation"] == "mean"
    with pytest.raises(ValueError, match="--ablation must be interchange, zero or mean, got 'resample'"):
        parse_args(["--output_dir", "x", "--ablation", "resample"])


class Capture(TrainerCallback):
    """The mask parameters when training starts and when it ends."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.begin = {n: p.detach().clone() for n, p in model.circuit_masks.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.end = {n: p.detach().clone() for n, p in model.circuit_masks.named_parameters()}


def small_run(model, out, *extra, callbacks=()):
    argv = [str(a) for a in [
        "--initialize_from", model, "--output_dir", out, "--max_steps", 3, "--per_device_train_batch_size", 4,
        "--report_to", "none", "--max_train_samples", 8, "--max_eval_samples", 4, "--logging_steps", 1,
        "--edge_learning_rate", 0.5, "--reg_edge_learning_rate", 0.5, "--num_sparsity_warmup_steps", 2,
        "--target_edge_sparsity", 0.9, "--disable_tqdm", "true", *extra,
    ]]  # fmt: skip
    prune_main("fpt2", "ioi", argv, callbacks=list(callbacks))


def test_re_pruning_resets_masks_unless_keep_masks(pruned_gpt2, tmp_path):
    saved = {k.split("circuit_masks.")[1]: v for k, v in load_file(pruned_gpt2 / "model.safetensors").items() if "circuit_masks" in k}
    assert saved["sparsity_lambda_edges_2"].item() != 0.0
    reset, kept = Capture(), Capture()
    small_run(pruned_gpt2, tmp_path / "reset", "--with_embedding_nodes", callbacks=[reset])
    small_run(pruned_gpt2, tmp_path / "kept", "--with_embedding_nodes", "--keep_masks", callbacks=[kept])
    la = reset.begin["edge_log_alphas"]
    assert abs(la.mean().item() - 10.0) < 0.01 and la.std().item() < 0.02  # N(10, 0.01), as the original
    assert all(reset.begin[n].item() == 0.0 for n in reset.begin if n.startswith("sparsity_lambda"))
    for name, value in saved.items():
        assert torch.equal(kept.begin[name], value), name


def test_disable_linear_reg_term(tiny_gpt2, tmp_path):
    run = Capture()
    small_run(tiny_gpt2, tmp_path / "run", "--disable_linear_reg_term", callbacks=[run])
    assert run.end["sparsity_lambda_edges_1"].item() == 0.0 and run.end["sparsity_lambda_nodes_1"].item() == 0.0
    assert run.end["sparsity_lambda_edges_2"].item() != 0.0


def test_stop_optimizing_node_if_higher_sparsity(tiny_gpt2):
    from edge_pruning.tasks import collate, get_task
    from modeling.modeling_fpt2 import FPT2LMHeadModel
    from transformers import AutoTokenizer

    from edge_pruning.pruning import encode_split

    task = get_task("ioi")
    model = FPT2LMHeadModel.from_pretrained(tiny_gpt2)
    with torch.no_grad():
        model.circuit_masks.node_log_alphas.fill_(-10.0)  # every node off: node sparsity 1 > target 0.5
        model.circuit_masks.sparsity_lambda_nodes_2.fill_(1.0)
    batch = collate(encode_split(task, AutoTokenizer.from_pretrained(tiny_gpt2), None, "train", 64, 2), 0)
    torch.manual_seed(0)
    with_node, kl, out = pruning_loss(model, task, batch, 0.5, 0.5)
    torch.manual_seed(0)
    skipped, kl2, out2 = pruning_loss(model, task, batch, 0.5, 0.5, skip_node_loss_above_target=True)
    assert out.node_loss.item() > 0.2
    assert with_node.item() == pytest.approx((kl + out.edge_loss + out.node_loss).item())
    assert skipped.item() == pytest.approx((kl2 + out2.edge_loss).item())


def test_ref_initialize_from_is_the_reference(tiny_gpt2, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    other = tmp_path / "other"
    torch.manual_seed(1)
    config = GPT2Config.from_pretrained(tiny_gpt2)
    GPT2LMHeadModel(config).save_pretrained(other)
    one_step = ["--max_steps", 1, "--num_sparsity_warmup_steps", 0]
    small_run(tiny_gpt2, tmp_path / "self", *one_step)
    small_run(tiny_gpt2, tmp_path / "ref", *one_step, "--ref_initialize_from", other, "--tokenizer", tiny_gpt2)
    kl_self = log_rows(tmp_path / "self")[0]["kl_loss"]
    kl_ref = log_rows(tmp_path / "ref")[0]["kl_loss"]
    assert abs(kl_self) < 1e-3 < kl_ref  # masks start near 1: only another reference has a KL


def test_sparsity_penalty_flag(tiny_gpt2, tmp_path):
    small_run(tiny_gpt2, tmp_path / "e", "--sparsity_penalty", "expected")
    small_run(tiny_gpt2, tmp_path / "s")
    for name, kind in (("e", "expected"), ("s", "sampled")):
        row = [r for r in log_rows(tmp_path / name) if "kl_loss" in r][-1]
        assert {"sampled_edge_sparsity", "expected_edge_sparsity"} <= set(row)
        assert row["model_edge_sparsity"] == row[f"{kind}_edge_sparsity"]
