"""The GPU check behind run_scripts/gpu_check.sh: every path a GPU run takes, in one
command, with one JSON report (written after each stage, so a stopped run keeps what
it measured). On one H100/H200 it should finish in under 8 minutes.

Stages:
  environment     torch/transformers/accelerate versions, the GPU, the commit
  model_tests     the suite's model tests (tests/test_conformance.py, test_fpt2.py,
                  test_fllama.py) with CUDA as torch's default device (fp32)
  model_check     every family (tiny random configs) on CUDA in fp32 and bf16 against
                  its transformers model: full-model logits, the circuit with every
                  edge kept, one pruning step's gradients (masks only, finite)
  step_ratio      bench/bench_step.py at GPT-2 small, batch 32, seq 64 (fp32, bf16) and
                  the SmolLM2 shape (bf16): step ratios and peak GPU memory
  ioi_3000        a full IOI run with the paper's settings (3,000 steps, batch 32,
                  learning rates 0.8, edge target 1.02) on a random GPT-2 small; wall
                  time (the paper: about 46 minutes on an H100), peak memory, circuit
  fsdp_smoke      run_scripts/check_fsdp_gpu.sh on one GPU (FSDP2, NCCL, bf16)

    python bench/gpu_check.py --out gpu_check.json
    python bench/gpu_check.py --dry-run --out dry.json   # CPU, tiny shapes: the same code, in seconds

The dry run exists so that this script does not rot: CI runs it (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

import bench_step  # this script's folder is first on sys.path

from edge_pruning.evaluation import corrupted_states  # noqa: E402
from edge_pruning.pruning import prune_main, pruning_loss  # noqa: E402
from edge_pruning.tasks import get_task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL_TEST_FILES = ("tests/test_conformance.py", "tests/test_fpt2.py", "tests/test_fllama.py")
FAMILIES = ("fpt2", *bench_step.ARCH_SHAPES)
# max |circuit - transformers| / max |transformers| over the logits
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2}

# The paper's IOI settings (run_scripts/ioi_sweep.sh of the original, edge target 1.02):
# checkpoints only at the end (the original saved every 64 steps, keeping one).
PAPER_IOI = [
    "--dataset_path", REPO / "data" / "datasets" / "ioi", "--train_split", "train", "--max_seq_length", 64,
    "--per_device_train_batch_size", 32, "--per_device_eval_batch_size", 16,
    "--edge_learning_rate", 0.8, "--node_learning_rate", 0.8, "--reg_edge_learning_rate", 0.8, "--reg_node_learning_rate", 0.8,
    "--max_steps", 3000, "--warmup_steps", 200, "--num_sparsity_warmup_steps", 2500, "--warmup_type", "linear",
    "--start_edge_sparsity", 0.0, "--target_edge_sparsity", 1.02, "--start_node_sparsity", 0.0, "--target_node_sparsity", 0.72,
    "--with_embedding_nodes", "--disable_node_loss", "--eval_strategy", "steps", "--eval_steps", 64,
    "--max_eval_samples", 200, "--save_steps", 3000, "--logging_steps", 8, "--report_to", "none", "--seed", 42,
]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What each stage runs: the real sizes on a GPU, tiny ones in the dry run."""

    device: str
    pytest_args: list[str]
    check_shape: dict
    step_argvs: dict[str, list[str]]
    ioi_model: dict  # GPT2Config keywords
    ioi_overrides: list = field(default_factory=list)  # flags after PAPER_IOI (the last one wins)
    fsdp: bool = True


def make_plan(dry_run: bool) -> Plan:
    if not dry_run:
        gpt2_b32 = ["--arch", "fpt2", "--batch", "32", "--seq", "64", "--device", "cuda", "--repeats", "5"]
        return Plan(
            device="cuda",
            pytest_args=list(MODEL_TEST_FILES),
            check_shape=dict(batch=2, seq=16, layers=2, hidden=64, heads=4, vocab=512),
            step_argvs={
                "fpt2_b32_fp32": [*gpt2_b32, "--dtype", "fp32"],
                "fpt2_b32_bf16": [*gpt2_b32, "--dtype", "bf16"],
                "fllama_b32_bf16": ["--arch", "fllama", "--batch", "32", "--seq", "64", "--device", "cuda", "--dtype", "bf16",
                                    "--repeats", "5", "--no-memory"],
            },  # fmt: skip
            ioi_model={},  # GPT-2 small
        )
    tiny = ["--layers", "2", "--hidden", "32", "--heads", "2", "--vocab", "128", "--batch", "2", "--seq", "8"]
    return Plan(
        device="cpu",
        pytest_args=["tests/test_fpt2.py", "-k", "test_edge_counts_match_paper"],
        check_shape=dict(batch=2, seq=6, layers=1, hidden=16, heads=2, vocab=64),
        step_argvs={"fpt2_tiny_fp32": ["--arch", "fpt2", *tiny, "--repeats", "1", "--warmup", "0", "--no-memory"]},
        ioi_model=dict(n_layer=2, n_head=2, n_embd=32),
        ioi_overrides=[
            "--max_steps", 6, "--warmup_steps", 2, "--num_sparsity_warmup_steps", 4, "--eval_steps", 3, "--save_steps", 6,
            "--max_train_samples", 16, "--max_eval_samples", 8, "--per_device_train_batch_size", 4,
            "--per_device_eval_batch_size", 4, "--logging_steps", 1,
        ],  # fmt: skip
        fsdp=False,
    )


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


# Stages ---------------------------------------------------------------------------


def environment(plan: Plan, work: Path) -> dict:
    import accelerate
    import transformers

    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "cuda_available": torch.cuda.is_available(),
        "machine": bench_step.machine_info(),
    }
    if torch.cuda.is_available():
        out.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda, gpu_memory_gib=torch.cuda.mem_get_info()[1] / 2**30)
    out["ok"] = plan.device != "cuda" or torch.cuda.is_available()
    return out


def model_tests(plan: Plan, work: Path) -> dict:
    """The suite's model tests, made on the plan's device (a pytest plugin sets it)."""
    xml = work / "model_tests.xml"
    env = dict(os.environ, EP_TEST_DEVICE=plan.device)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "bench"), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "cuda_default_device",
           f"--junitxml={xml}", *plan.pytest_args]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]  # fmt: skip
    return {**counts, "failed": failed[:30], "tail": res.stdout[-2000:], "ok": res.returncode == 0 and counts["tests"] > 0}


def model_check(plan: Plan, work: Path) -> dict:
    """Every family against transformers, in fp32 and bf16, with one pruning step."""
    task = get_task("ioi")
    out, ok = {}, True
    for dtype in ("fp32", "bf16"):
        for arch in FAMILIES:
            shape = bench_step.Shape(arch=arch, device=plan.device, dtype=dtype, **plan.check_shape)
            circuit, plain = bench_step.build_models(shape)
            batch = bench_step.synthetic_batch(shape, circuit.config.vocab_size)
            ids, mask = batch["input_ids"], batch["attention_mask"]
            graph = circuit.circuit_graph
            with torch.no_grad():
                hf = plain(ids, attention_mask=mask).logits.float()
                with circuit.full_model():
                    full = circuit(ids, attention_mask=mask).logits.float()
                corr = corrupted_states(circuit, batch)
                ones = torch.ones(graph.n_readers, graph.n_writers, device=plan.device)
                with circuit.masks_override(ones):
                    kept = circuit(ids, attention_mask=mask, corr_x=corr).logits.float()
            scale = hf.abs().max().item()
            with torch.no_grad():  # off the saturated start (every sampled mask 1, no gradient)
                circuit.circuit_masks.edge_log_alphas.normal_(1.0, 1.0)
                circuit.circuit_masks.node_log_alphas.normal_(1.0, 1.0)
            loss, _, _ = pruning_loss(circuit, task, batch, 0.5, 0.3)
            loss.backward()
            grad = circuit.circuit_masks.edge_log_alphas.grad
            weights_grad = any(p.grad is not None for n, p in circuit.named_parameters() if "circuit_masks" not in n)
            row = {
                "full_vs_hf": (full - hf).abs().max().item() / scale,
                "all_edges_kept_vs_hf": (kept - hf).abs().max().item() / scale,
                "mask_grad_finite": bool(torch.isfinite(grad).all()),
                "mask_grad_nonzero": int((grad != 0).sum()),
                "weights_got_grad": weights_grad,
            }
            row["ok"] = (
                row["full_vs_hf"] <= TOLERANCE[dtype] and row["all_edges_kept_vs_hf"] <= TOLERANCE[dtype]
                and row["mask_grad_finite"] and row["mask_grad_nonzero"] > 0 and not weights_grad
            )  # fmt: skip
            ok &= row["ok"]
            out[f"{arch}_{dtype}"] = row
    return {"tolerance": TOLERANCE, "families": out, "ok": ok}


def step_ratio(plan: Plan, work: Path) -> dict:
    """bench_step at each configuration: the ratios, medians and peak memory."""
    out = {}
    for name, argv in plan.step_argvs.items():
        res = bench_step.main([*argv, "--json", str(work / f"step_{name}.json")])
        out[name] = {
            "ratios": {k: round(v["value"], 4) for k, v in res["ratios"].items()},
            "median_wall_s": res["median_s"],
            "peak_mib": {k: v / 2**20 for k, v in res["peak_bytes"].items()},
        }
    return {**out, "ok": True}


class TrainClock(TrainerCallback):
    """Training wall time and steps, beside the run's own logs."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds, self.steps = time.perf_counter() - self.start, state.global_step - self.first_step


def ioi_3000(plan: Plan, work: Path, tokenizer: Path) -> dict:
    """The paper's IOI run on a random GPT-2 small (the SmolLM2 tokenizer)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tokenizer)
    torch.manual_seed(0)
    model_dir, out_dir = work / "gpt2_random", work / "ioi_run"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), **plan.ioi_model)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    argv = ["--initialize_from", model_dir, "--output_dir", out_dir, "--overwrite_output_dir", "--disable_tqdm", "true",
            *PAPER_IOI, *plan.ioi_overrides]  # fmt: skip
    clock = TrainClock()
    reset_peak(plan.device)
    start = time.perf_counter()
    result = prune_main("fpt2", "ioi", [str(a) for a in argv], callbacks=[clock])
    wall = time.perf_counter() - start
    log = (out_dir / "prune.log").read_text()
    return {
        "wall_s": wall,
        "train_s": clock.seconds,
        "steps": clock.steps,
        "s_per_step": clock.seconds / max(clock.steps, 1),
        "peak_gpu_mib": peak_mib(plan.device),
        "fixed_passes": [line.split(": ", 1)[-1] for line in log.splitlines() if "fixed passes" in line],
        "n_edges": result.n_edges,
        "edge_sparsity": result.edge_sparsity,
        "validation": result.circuit,
        "paper_h100_minutes": 46,
        "ok": clock.steps > 0,
    }


def fsdp_smoke(plan: Plan, work: Path) -> dict:
    if not plan.fsdp:
        return {"skipped": "needs CUDA; tests/test_fsdp.py runs FSDP2 on the CPU", "ok": True}
    env = dict(os.environ, NGPUS="1", WORK=str(work / "fsdp"))
    res = subprocess.run(["bash", str(REPO / "run_scripts" / "check_fsdp_gpu.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = res.stdout.splitlines()
    return {
        "returncode": res.returncode,
        "summary": [line for line in lines if "s/step" in line or "peak GPU memory" in line or "passed" in line],
        "tail": (res.stdout + res.stderr)[-2000:],
        "ok": res.returncode == 0,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: the same code paths in seconds")
    ap.add_argument("--out", type=Path, required=True, help="the JSON report")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: beside the report)")
    ap.add_argument("--tokenizer", type=Path, default=REPO / "data" / "models" / "smollm2-135m")
    ap.add_argument("--stages", default=None, help="comma-separated subset of the stages")
    args = ap.parse_args(argv)
    plan = make_plan(args.dry_run)
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or --dry-run on the CPU")
    if not (args.tokenizer / "tokenizer.json").exists():
        raise SystemExit(f"no tokenizer at {args.tokenizer} (--tokenizer; carry data/models/smollm2-135m/tokenizer*)")
    work = args.work or args.out.parent / "gpu_check_work"
    work.mkdir(parents=True, exist_ok=True)
    stages = {
        "environment": lambda: environment(plan, work),
        "model_tests": lambda: model_tests(plan, work),
        "model_check": lambda: model_check(plan, work),
        "step_ratio": lambda: step_ratio(plan, work),
        "ioi_3000": lambda: ioi_3000(plan, work, args.tokenizer),
        "fsdp_smoke": lambda: fsdp_smoke(plan, work),
    }
    chosen = list(stages) if args.stages is None else [s for s in args.stages.split(",") if s]
    unknown = set(chosen) - set(stages)
    if unknown:
        raise SystemExit(f"unknown --stages {sorted(unknown)}; the stages are {', '.join(stages)}")
    report = {"mode": "dry-run" if args.dry_run else "gpu", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "stages": {}}
    total = time.perf_counter()
    for name in chosen:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            result = stages[name]()
        except Exception as exc:  # a failed stage is recorded; the others still run
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        result["seconds"] = round(time.perf_counter() - start, 2)
        report["stages"][name] = result
        report["seconds"] = round(time.perf_counter() - total, 2)
        report["ok"] = all(s["ok"] for s in report["stages"].values())
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"   {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s", flush=True)
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
