"""Scale-out: FSDP2 through `accelerate launch` on CPU (gloo, 2 ranks), and the
`--bf16` / `--gradient_checkpointing` flags, on a tiny random FLlama with IOI.

The FSDP run goes through the same launch path as the GPU scripts:
`accelerate launch --config_file run_scripts/fsdp_configs/fsdp_cpu_test.yaml`, which
starts the ranks with torchrun; tests/fsdp_prune.py lifts the one accelerate check that
keeps FSDP off on CPU (see its docstring).

Why the FSDP and single-process losses can be compared exactly: the Trainer seeds every
rank with the same seed, so every rank draws the same hard-concrete noise, i.e. the same
mask sample, at every step, and the same noise as a single process with that seed.
Batches are sharded so that 2 ranks x 2 examples see the same 4 examples per step as one
process with a batch of 4, and the mask gradients are averaged over ranks. The two runs
therefore compute the same steps, up to the order of floating-point reductions. Masks
start far from 1 (see `make_tiny_fllama`), so that the KL, and the noise, matter.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fsdp_prune import TOKENIZER_DIR, make_tiny_fllama

REPO = Path(__file__).resolve().parents[1]
HELPER = REPO / "tests" / "fsdp_prune.py"
CPU_CONFIG = REPO / "run_scripts" / "fsdp_configs" / "fsdp_cpu_test.yaml"
SCRIPTS = REPO / "run_scripts"
LAUNCH_SCRIPTS = [*sorted(SCRIPTS.glob("launch_fllama_*.sh")), SCRIPTS / "check_fsdp_gpu.sh"]
STEPS, GLOBAL_BATCH, WORLD = 3, 4, 2


@pytest.fixture(scope="module")
def tiny_fllama(tmp_path_factory) -> Path:
    """2 layers, hidden 32, 4 heads, 2 KV heads, the SmolLM2 vocabulary."""
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        subprocess.run([sys.executable, "-m", "edge_pruning.smollm2"], check=True)
    path = tmp_path_factory.mktemp("tiny_fllama")
    make_tiny_fllama(path)
    return path


def prune_args(model: Path, out: Path, batch: int, *extra: str) -> list[str]:
    return [
        "--initialize_from", str(model), "--output_dir", str(out), "--max_steps", str(STEPS),
        "--per_device_train_batch_size", str(batch), "--logging_steps", "1", "--save_steps", "2",
        "--report_to", "none", "--max_train_samples", "16", "--max_eval_samples", "8",
        "--target_edge_sparsity", "0.9", "--seed", "7", "--use_cpu",
        # the masks make_tiny_fllama saved (N(1, 1)) are kept; the learning rates and node
        # target are given, not the original scripts' defaults
        "--keep_masks", "--edge_learning_rate", "0.8", "--node_learning_rate", "0.8",
        "--reg_edge_learning_rate", "0.8", "--reg_node_learning_rate", "0.8", "--target_node_sparsity", "0.7", *extra,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"


def prune_single(*args: str) -> None:
    run([sys.executable, str(HELPER), *args])


def prune_fsdp(*args: str) -> None:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_CONFIG)]
    run([*launch, "--num_processes", str(WORLD), "--main_process_port", str(free_port()), str(HELPER), *args])


def step_losses(out: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {line["step"]: line["loss"] for line in lines if "loss" in line}


def rank_state(out: Path, rank: int) -> dict:
    return torch.load(out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def runs(tiny_fllama, tmp_path_factory) -> dict[str, Path]:
    """One process with a batch of 4; 2 FSDP ranks with 2 each (and gradient
    checkpointing, as the paper's runs); the FSDP run again, resumed from its step-2
    checkpoint."""
    root = tmp_path_factory.mktemp("fsdp_runs")
    dirs = {name: root / name for name in ("single", "fsdp", "resumed")}
    prune_single(*prune_args(tiny_fllama, dirs["single"], GLOBAL_BATCH))
    prune_fsdp(*prune_args(tiny_fllama, dirs["fsdp"], GLOBAL_BATCH // WORLD, "--gradient_checkpointing"))
    dirs["resumed"].mkdir()
    shutil.copytree(dirs["fsdp"] / "checkpoint-2", dirs["resumed"] / "checkpoint-2")
    prune_fsdp(*prune_args(tiny_fllama, dirs["resumed"], GLOBAL_BATCH // WORLD, "--gradient_checkpointing"))
    return dirs


def test_ranks_hold_identical_masks(runs, tiny_fllama):
    from safetensors.torch import load_file

    initial = load_file(tiny_fllama / "model.safetensors")
    ranks = [rank_state(runs["fsdp"], r) for r in range(WORLD)]
    assert all(state["sharded"] and all(state["checkpointed"]) for state in ranks)
    assert not rank_state(runs["single"], 0)["sharded"]
    for name, value in ranks[0]["masks"].items():
        assert value.dtype == torch.float32
        assert torch.equal(value, ranks[1]["masks"][name]), name
        assert not torch.equal(value, initial[f"model.circuit_masks.{name}"]), f"{name} did not train"


def test_loss_matches_single_process(runs):
    single, fsdp = step_losses(runs["single"]), step_losses(runs["fsdp"])
    assert sorted(fsdp) == list(range(1, STEPS + 1)) and sorted(single) == sorted(fsdp)
    assert single[1] > 1e-3  # masks are far from 1: the KL is not trivially 0
    assert fsdp[1] == pytest.approx(single[1], rel=1e-5)
    for step in range(2, STEPS + 1):
        assert fsdp[step] == pytest.approx(single[step], rel=1e-4), step
    for name, value in rank_state(runs["single"], 0)["masks"].items():
        assert torch.allclose(rank_state(runs["fsdp"], 0)["masks"][name], value, atol=1e-4), name


def test_saved_checkpoints_load(runs, tiny_fllama):
    """The final model and a mid-run checkpoint are plain save_pretrained folders."""
    from modeling.modeling_fllama import FLlamaForCausalLM

    initial = FLlamaForCausalLM.from_pretrained(tiny_fllama).state_dict()
    for path in (runs["fsdp"], runs["fsdp"] / "checkpoint-2"):
        model = FLlamaForCausalLM.from_pretrained(path)
        for name, value in model.state_dict().items():
            if ".circuit_masks." not in name:
                assert torch.equal(value, initial[name]), name  # frozen weights, gathered from the shards
    final = FLlamaForCausalLM.from_pretrained(runs["fsdp"])
    for name, value in rank_state(runs["fsdp"], 0)["masks"].items():
        assert torch.equal(final.circuit_masks.get_parameter(name), value), name
    assert (runs["fsdp"] / "edges.json").exists() and (runs["fsdp"] / "eval_results.json").exists()


def test_resume_continues_exactly(runs):
    assert step_losses(runs["resumed"]) == {STEPS: step_losses(runs["fsdp"])[STEPS]}
    resumed, uninterrupted = rank_state(runs["resumed"], 0)["masks"], rank_state(runs["fsdp"], 0)["masks"]
    for name, value in uninterrupted.items():
        assert torch.equal(resumed[name], value), name


@pytest.mark.parametrize("flag", ["--bf16", "--gradient_checkpointing"])
def test_single_process_flags(runs, tiny_fllama, tmp_path, flag):
    """Masks stay fp32 under --bf16 (the frozen weights are bf16); checkpointing changes nothing."""
    from safetensors.torch import load_file

    prune_single(*prune_args(tiny_fllama, tmp_path, GLOBAL_BATCH, flag))
    state, baseline = rank_state(tmp_path, 0), rank_state(runs["single"], 0)
    losses, baseline_losses = step_losses(tmp_path), step_losses(runs["single"])
    saved = load_file(tmp_path / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in state["masks"].values())
    assert all(v.dtype == torch.float32 for k, v in saved.items() if ".circuit_masks." in k)
    if flag == "--bf16":
        assert saved["model.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16
        assert losses[1] == pytest.approx(baseline_losses[1], rel=2e-2)
    else:
        assert all(state["checkpointed"])
        assert losses == pytest.approx(baseline_losses, rel=1e-5)
        for name, value in baseline["masks"].items():
            assert torch.allclose(state["masks"][name], value, atol=1e-5), name


def test_fpt2_gradient_checkpointing_keeps_mask_gradients():
    """FPT2's checkpointed layers (between the mixer's reads and writes) give the same mask gradients."""
    from modeling.modeling_fpt2 import FPT2Config, FPT2LMHeadModel

    torch.manual_seed(0)
    model = FPT2LMHeadModel(FPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=16))
    model.freeze_model_weights()
    model.train()
    clean, corrupted = torch.randint(0, 50, (2, 2, 8))
    with torch.no_grad():
        corr_x = model(corrupted, output_writer_states=True).writer_states
    log_alpha = torch.randn(model.circuit_graph.n_readers, model.circuit_graph.n_writers, requires_grad=True)
    model.circuit_masks.override = torch.sigmoid(log_alpha)

    def mask_grad() -> torch.Tensor:
        loss = model(clean, corr_x=corr_x).logits.logsumexp(-1).mean()
        return torch.autograd.grad(loss, log_alpha, retain_graph=True)[0]

    plain = mask_grad()
    model.activation_checkpointing_enable()
    assert all(block.gradient_checkpointing for block in model.transformer.h)
    assert plain.abs().sum() > 0
    assert torch.allclose(plain, mask_grad(), atol=1e-6)


def test_gpu_config_has_the_cpu_test_fsdp_values():
    import yaml

    configs = {p.stem: yaml.safe_load(p.read_text()) for p in CPU_CONFIG.parent.glob("*.yaml")}
    gpu, cpu = configs["fsdp_gpu_bf16"], configs["fsdp_cpu_test"]
    assert gpu["fsdp_config"] == cpu["fsdp_config"]
    assert gpu["fsdp_config"]["fsdp_version"] == 2
    assert (gpu["mixed_precision"], cpu["mixed_precision"]) == ("bf16", "no")


@pytest.mark.parametrize("script", LAUNCH_SCRIPTS, ids=lambda p: p.name)
def test_launch_scripts_parse_and_name_existing_files(script):
    import re

    subprocess.run(["bash", "-n", str(script)], check=True)
    for path in re.findall(r"\b(?:src|run_scripts|tests)/[\w./-]+\.(?:py|sh|yaml)\b", script.read_text()):
        assert (REPO / path).exists(), f"{script.name} names {path}, which does not exist"
