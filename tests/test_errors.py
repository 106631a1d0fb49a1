"""User errors at every kind of entry point are one line `error: <what>, <where>` on
stderr with exit status 2 and no traceback (`--debug` shows it); a non-finite loss or
gradient stops a run at that step and leaves the last complete checkpoint untouched."""

from __future__ import annotations

import hashlib
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from edge_pruning.cli import run_cli
from edge_pruning.pruning import COMPLETE_MARKER, NonFiniteLossError, prune_main

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "data" / "models" / "smollm2-135m"


@pytest.fixture(scope="module")
def damaged(tiny_gpt2, tmp_path_factory) -> Path:
    """A copy of the checkpoint with model.safetensors cut in half."""
    path = tmp_path_factory.mktemp("damaged") / "ckpt"
    shutil.copytree(tiny_gpt2, path)
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return path


def run_entry(rel_path: str, args: list) -> tuple[int, str]:
    """Run a repo script in-process as `python <script> <args>`; its exit status and stderr."""
    argv = sys.argv
    sys.argv = [str(REPO / rel_path), *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exited:
            runpy.run_path(str(REPO / rel_path), run_name="__main__")
    finally:
        sys.argv = argv
    return exited.value.code, ""


def check_error(capsys, rel_path: str, args: list, *fragments: str, status: int = 2) -> str:
    capsys.readouterr()
    code, _ = run_entry(rel_path, args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == status, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def prune_args(model, out, *extra) -> list:
    return [
        "--initialize_from", model, "--output_dir", out, "--max_steps", 2, "--per_device_train_batch_size", 4,
        "--report_to", "none", "--max_train_samples", 8, "--max_eval_samples", 4, "--disable_tqdm", "true",
        "--logging_steps", 1, *extra,
    ]  # fmt: skip


def test_bad_flag_value(capsys, tiny_gpt2, tmp_path):
    check_error(capsys, "src/prune/fpt2_ioi.py", prune_args(tiny_gpt2, tmp_path, "--max_steps", "abc"),
                "invalid int value: 'abc'", "argument --max_steps")  # fmt: skip
    check_error(capsys, "src/eval/ioi.py", ["-m", tiny_gpt2, "-n", "many"], "invalid int value", "-n/--num-examples")


def test_unknown_flag(capsys, tiny_gpt2, tmp_path):
    check_error(capsys, "src/prune/fpt2_gp.py", prune_args(tiny_gpt2, tmp_path, "--no_such_flag", "1"), "--no_such_flag")
    check_error(capsys, "src/eval/gp.py", ["-m", tiny_gpt2, "--no-such-flag"], "unrecognized arguments")


def test_bad_flag_choice(capsys, tiny_gpt2, tmp_path):
    check_error(capsys, "src/prune/fpt2_ioi.py", prune_args(tiny_gpt2, tmp_path, "--ablation", "resample"), "--ablation")
    check_error(capsys, "src/prune/fpt2_ioi.py", prune_args(tiny_gpt2, tmp_path, "--sparsity_penalty", "both"),
                "--sparsity_penalty")  # fmt: skip
    check_error(capsys, "src/eval/boolean_expressions.py", ["-m", tiny_gpt2, "-M", "zeroshot"], "zeroshot", "-M/--mode")


def test_missing_checkpoint_directory(capsys, tmp_path):
    missing = tmp_path / "no" / "such" / "run"
    for script, args in [
        ("src/prune/fpt2_ioi.py", prune_args(missing, tmp_path / "out")),
        ("src/prune/fllama_ioi.py", prune_args(missing, tmp_path / "out")),
        ("src/eval/ioi.py", ["-m", missing]),
        ("src/modeling/vis_fpt2.py", ["-i", missing]),
        ("src/modeling/vis_fllama.py", ["-m1", missing]),
    ]:
        line = check_error(capsys, script, args, "checkpoint directory not found", str(missing))
        assert "Repo id" not in line
    check_error(capsys, "src/prune/erazr_reverse.py", ["--initialize_from", tmp_path / "x.pkl", "--max_steps", 1,
                                                       "--output_dir", tmp_path / "t"], "Tracr model file not found")  # fmt: skip


def test_damaged_weights_are_named(capsys, damaged, tmp_path):
    weights = str(damaged / "model.safetensors")
    check_error(capsys, "src/prune/fpt2_ioi.py", prune_args(damaged, tmp_path / "out"), "damaged weight file", weights)
    check_error(capsys, "src/eval/gt.py", ["-m", damaged], "damaged weight file", weights)


def test_damaged_config_is_named(capsys, tiny_gpt2, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_gpt2, ckpt)
    (ckpt / "config.json").write_text('{"model_type": "gpt2", ')
    check_error(capsys, "src/eval/ioi.py", ["-m", ckpt], "damaged config.json", str(ckpt / "config.json"))
    (ckpt / "config.json").unlink()
    check_error(capsys, "src/eval/ioi.py", ["-m", ckpt], "no config.json", str(ckpt))


def test_wrong_architecture(capsys, tiny_gpt2, tmp_path):
    check_error(capsys, "src/prune/fllama_ioi.py", prune_args(tiny_gpt2, tmp_path / "out"),
                "a 'gpt2' checkpoint", "fllama", str(tiny_gpt2))  # fmt: skip
    check_error(capsys, "src/modeling/vis_fllama.py", ["-i", tiny_gpt2], "a 'gpt2' checkpoint", str(tiny_gpt2))


def test_unknown_edge_name(capsys, tiny_gpt2, tmp_path):
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps([["a0.h0", "m1"], ["a7.h3", "resid_post"]]))
    check_error(capsys, "src/eval/ioi.py", ["-m", tiny_gpt2, "-e", edges, "-n", 2], "edge not in this model",
                "'a7.h3'", str(edges))  # fmt: skip
    check_error(capsys, "src/eval/ioi.py", ["-m", tiny_gpt2, "-e", tmp_path / "none.json"], "edges file not found")
    edges.write_text("[[")
    check_error(capsys, "src/eval/ioi.py", ["-m", tiny_gpt2, "-e", edges], "damaged edges file", str(edges))


def test_bad_data(capsys, tiny_gpt2, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 4 = <predict>5</predict>"}\n{"clean": 1\n')
    line = check_error(capsys, "src/prune/fpt2_custom.py", prune_args(tiny_gpt2, tmp_path / "out", "--dataset_path", data),
                       str(data))  # fmt: skip
    assert "2" in line  # the line
    check_error(capsys, "src/eval/ioi.py", ["-m", tiny_gpt2, "-d", tmp_path / "nodata"], "nodata")


def test_draw_missing_input(capsys, tmp_path):
    check_error(capsys, "src/modeling/draw_fpt2.py", ["-i", tmp_path / "edges.json"], str(tmp_path / "edges.json"))


def test_real_process_exit_status_and_debug(tmp_path):
    missing = str(tmp_path / "missing")
    cmd = [sys.executable, str(REPO / "src" / "eval" / "ioi.py"), "-m", missing]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [f"error: checkpoint directory not found, {missing}"]
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "CheckpointError" in debug.stderr


# ----------------------------------------------------------------------------- non-finite steps


class Poison(TrainerCallback):
    """Before step 3, make the loss (a NaN log_alpha) or only the gradient (a hook) non-finite."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.saved: dict[str, str] = {}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step != 2:
            return
        checkpoint = Path(args.output_dir) / "checkpoint-2"
        self.saved = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in checkpoint.iterdir() if p.is_file()}
        masks = model.circuit_masks
        if self.where == "loss":
            with torch.no_grad():
                masks.edge_log_alphas[-1, 0] = float("nan")
        else:
            masks.edge_log_alphas.register_hook(lambda g: g * float("inf"))


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_non_finite_step_stops_the_run(tiny_gpt2, tmp_path, where):
    out = tmp_path / "run"
    poison = Poison(where)
    args = [str(a) for a in prune_args(tiny_gpt2, out, "--max_steps", 4, "--save_steps", 1, "--edge_learning_rate", 0.5)]
    with pytest.raises(NonFiniteLossError) as raised:
        prune_main("fpt2", "ioi", args, callbacks=[poison])
    message = str(raised.value)
    assert "at step 3" in message and str(out / "checkpoint-2") in message and "untouched" in message
    assert ("loss nan" if where == "loss" else "gradient of edge_log_alphas") in message
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / COMPLETE_MARKER).exists()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in checkpoint.iterdir() if p.is_file()} == poison.saved
    assert not (out / "checkpoint-3").exists() and not (out / "model.safetensors").exists()
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 2


def test_non_finite_step_on_the_command_line(capsys, tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    args = prune_args(tiny_gpt2, out, "--max_steps", 4, "--save_steps", 1)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run_cli(lambda argv: prune_main("fpt2", "ioi", argv, callbacks=[Poison("loss")]), args)
    err = capsys.readouterr().err
    assert exited.value.code == 1
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "non-finite loss nan at step 3" in lines[0] and "Traceback" not in err


def test_module_entry_point_errors_are_one_line(tmp_path):
    missing = str(tmp_path / "missing")
    for args, expected in [
        (["eval", "--task", "ioi", "-m", missing], f"error: checkpoint directory not found, {missing}"),
        (["prune", "--task", "ioi", "--initialize_from", missing, "--output_dir", str(tmp_path / "o")],
         f"error: checkpoint directory not found, {missing}"),
        (["frob"], "error: unknown command 'frob' (choose from prune, eval, vis, draw, view, export-mib, import-mib, acdc, probe), edge-pruning"),
        (["eval", "-m", missing], "error: the following arguments are required: --task, edge-pruning eval"),
    ]:  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "edge_pruning", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == expected, done.stderr[-2000:]
