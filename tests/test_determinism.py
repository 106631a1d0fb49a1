"""The same seed and command give bitwise-identical masks, λs, losses and circuits,
run to run (separate processes, string hashing varied, another process keeping a core
busy) at 1 and at 2 intra-op threads; and a run killed (SIGKILL) after a complete
checkpoint and started again ends exactly as an uninterrupted run.

Only runs with the same thread count are comparable bit for bit: with 2 threads the
reductions are split differently than with 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edge_pruning.pruning import COMPLETE_MARKER, last_complete_checkpoint

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "data" / "models" / "smollm2-135m"


def prune_argv(model: Path, out: Path, steps: int, save_steps: int = 1000) -> list[str]:
    return [
        "--initialize_from", str(model), "--output_dir", str(out), "--max_steps", str(steps),
        "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_steps", str(save_steps),
        "--report_to", "none", "--max_train_samples", "32", "--max_eval_samples", "8",
        "--num_sparsity_warmup_steps", "4", "--target_edge_sparsity", "0.9",
        "--edge_learning_rate", "0.5", "--reg_edge_learning_rate", "0.5", "--with_embedding_nodes",
        "--seed", "3", "--disable_tqdm", "true",
    ]  # fmt: skip


def env(threads: int, hash_seed: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": str(hash_seed), "TOKENIZERS_PARALLELISM": "false"}


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ta.keys() == tb.keys()
    masks = [k for k in ta if "circuit_masks" in k]
    assert len(masks) == 6  # edge and node log_alphas, four λs
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert log_rows(a) == log_rows(b)
    assert json.loads((a / "edges.json").read_text()) == json.loads((b / "edges.json").read_text())
    assert json.loads((a / "eval_results.json").read_text()) == json.loads((b / "eval_results.json").read_text())


@pytest.mark.parametrize("threads", [1, 2])
def test_separate_processes_give_identical_runs(tiny_gpt2, tmp_path, threads):
    script = [sys.executable, str(REPO / "src" / "prune" / "fpt2_ioi.py")]
    subprocess.run(script + prune_argv(tiny_gpt2, tmp_path / "a", 12), env=env(threads, 1), check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # another process keeps a core busy
    try:
        subprocess.run(script + prune_argv(tiny_gpt2, tmp_path / "b", 12), env=env(threads, 2), check=True,
                       capture_output=True, timeout=120)  # fmt: skip
    finally:
        busy.kill()
        busy.wait()
    assert_same_run(tmp_path / "a", tmp_path / "b")
    # the masks moved: the runs would differ if anything in them did
    la = load_file(tmp_path / "a" / "model.safetensors")["transformer.circuit_masks.edge_log_alphas"]
    assert (la - 10.0).abs().max() > 0.05


SLOW_RUN = """
import sys, time
from transformers import TrainerCallback
from edge_pruning.cli import run_cli
from edge_pruning.pruning import prune_main

class Slow(TrainerCallback):  # time to kill the run between two checkpoints
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.25)

run_cli(lambda argv: prune_main("fpt2", "ioi", argv, callbacks=[Slow()]))
"""


def test_killed_run_resumes_exactly(tiny_gpt2, tmp_path):
    script = tmp_path / "slow_prune.py"
    script.write_text(SLOW_RUN)
    steps, save = 10, 3
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([sys.executable, script, *prune_argv(tiny_gpt2, whole, steps, save)], env=env(1, 1), check=True,
                   capture_output=True, timeout=120)  # fmt: skip

    proc = subprocess.Popen([sys.executable, script, *prune_argv(tiny_gpt2, killed, steps, save)], env=env(1, 2),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 90
    while last_complete_checkpoint(killed) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed_from = last_complete_checkpoint(killed)
    assert resumed_from is not None and not (killed / "model.safetensors").exists()
    assert (Path(resumed_from) / COMPLETE_MARKER).exists()

    done = subprocess.run([sys.executable, script, *prune_argv(tiny_gpt2, killed, steps, save)], env=env(1, 3),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {resumed_from}" in (killed / "prune.log").read_text()
    assert_same_run(whole, killed)
    assert [r["step"] for r in log_rows(killed) if "kl_loss" in r] == list(range(1, steps + 1))


FLUSH_CHECK = """
import torch
from edge_pruning.pruning import flush_denormals_in_all_threads

torch.set_num_threads(2)
x = torch.full((4 * 10**6,), 1e-39)  # denormal; x * 1.5 is too, unless flushed
(x * 1.0).sum()  # a parallel op: the OpenMP pool exists before any flag is set

def flushed():
    y = x * 1.5
    q = y.numel() // 4
    return [bool((y[i * q:(i + 1) * q] == 0).all()) for i in range(4)]

torch.set_flush_denormal(True)
print("main_only", flushed())
print("all_threads", flush_denormals_in_all_threads(), flushed())
"""


def test_denormals_flushed_in_every_intra_op_thread():
    """torch.set_flush_denormal sets FTZ/DAZ in the calling thread only: workers of an
    existing pool keep computing their share with denormals."""
    out = subprocess.run([sys.executable, "-c", FLUSH_CHECK], env=env(2, 0), capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()  # fmt: skip
    main_only = out[0]
    assert main_only.startswith("main_only [True") and "False" in main_only  # the worker's half is not flushed
    assert out[1] == "all_threads True [True, True, True, True]"
