"""Benchmark one edge-pruning step against the plain Hugging Face model.

Why: method.md §9 promises a pruning step that costs about as much as the plain
model's training step (time ≤ 1.5 × (2 plain no-grad forwards + 1 forward+backward),
peak memory ≤ 2 × the plain forward+backward). This script measures both, on random
weights at a real model's shape, in one process so that the ratios share the
machine's noise (interleaved repeats, median).

    python bench/bench_step.py --arch fpt2 --batch 8 --seq 64 --threads 1 --repeats 3 --json out.json

Time: wall clock per part, and this process's CPU time (user + system, from
getrusage), which a shared machine disturbs far less when torch runs one thread.

Memory on CPU: each part runs once in a fresh subprocess, with glibc's mmap threshold
pinned low so freed tensors go back to the OS; once models and inputs are built the
kernel's peak-RSS mark is reset (/proc/self/clear_refs "5"), and the figure is VmHWM
after the run minus VmRSS before it. On CUDA: torch.cuda.max_memory_allocated minus
the allocation before the run, in-process. This is not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edge_pruning.evaluation import corrupted_states, model_logits  # noqa: E402
from edge_pruning.ablation import Ablation  # noqa: E402
from edge_pruning.pruning import mask_optimizer, pruning_loss  # noqa: E402
from edge_pruning.pruning.cache import build_fixed_pass_cache  # noqa: E402
from edge_pruning.tasks import Batch, Encoded, collate, get_task  # noqa: E402

PARTS = ("step", "clean_ref", "corrupt_fwd", "masked_fwd_bwd", "opt_step", "plain_nograd", "plain_fwd_bwd", "step_cached")
STEP_PARTS = PARTS[1:5]
TIME_TARGET = 1.5
MEM_TARGET = 2.0
LR = 0.8
TARGET_EDGE, TARGET_NODE = 0.5, 0.3


@dataclass
class Shape:
    """One benchmark configuration; `layers`/`hidden`/`heads`/`vocab` None = the arch's default."""

    arch: str = "fpt2"
    batch: int = 8
    seq: int = 64
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    vocab: int | None = None
    device: str = "cpu"
    dtype: str = "fp32"

    def cli(self) -> list[str]:
        out = []
        for key, value in asdict(self).items():
            if value is not None:
                out += [f"--{key}", str(value)]
        return out


def torch_dtype(name: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


@dataclass(frozen=True)
class ArchShape:
    """A benchmark architecture: its transformers classes and default shape.

    Real checkpoints' shapes where one is small: GPT-2 small, SmolLM2-135M,
    Pythia-160m. The families whose smallest checkpoint is 0.5B+ (Qwen2.5-0.5B,
    Qwen3-0.6B, Mistral-7B, Gemma-2B, Gemma-2-2B) at GPT-2 small's size (12 layers,
    d = 768, 12 heads of 64) with their own layout: KV heads in the ratio of their
    smallest checkpoint, gated MLP 2048 wide, a 50,304 vocabulary (theirs, 150k-256k,
    would let the plain model's full-vocabulary head dominate the denominator).
    """

    config: str  # transformers config class
    model: str  # transformers LM class
    layers: int = 12
    hidden: int = 768
    heads: int = 12
    kv_div: int = 1  # KV heads = heads // kv_div
    intermediate: int = 2048  # at `hidden`; scaled with --hidden
    vocab: int = 50304
    extra: tuple[tuple[str, object], ...] = ()


ARCH_SHAPES = {
    "fllama": ArchShape("LlamaConfig", "LlamaForCausalLM", 30, 576, 9, kv_div=3, intermediate=1536, vocab=49152,
                        extra=(("tie_word_embeddings", True),)),  # SmolLM2-135M
    "fgpt_neox": ArchShape("GPTNeoXConfig", "GPTNeoXForCausalLM", intermediate=3072),  # Pythia-160m
    "fqwen2": ArchShape("Qwen2Config", "Qwen2ForCausalLM", kv_div=6, extra=(("tie_word_embeddings", True),)),
    "fqwen3": ArchShape("Qwen3Config", "Qwen3ForCausalLM", kv_div=2, extra=(("tie_word_embeddings", True),)),
    "fmistral": ArchShape("MistralConfig", "MistralForCausalLM", kv_div=4),
    "fgemma": ArchShape("GemmaConfig", "GemmaForCausalLM", kv_div=12),
    "fgemma2": ArchShape("Gemma2Config", "Gemma2ForCausalLM", kv_div=3, extra=(("query_pre_attn_scalar", 64),)),
}  # fmt: skip


def build_models(shape: Shape, which: str = "both", seed: int = 0):
    """(circuit model, plain HF model) with the same random weights; either may be None.

    `which` is "both", "circuit" or "plain": memory children build only what they run.
    """
    import transformers

    from edge_pruning.architectures import ARCHITECTURES

    torch.manual_seed(seed)
    circuit_cls = ARCHITECTURES[shape.arch].model_class()
    if shape.arch == "fpt2":
        kw = dict(
            n_layer=shape.layers or 12,
            n_head=shape.heads or 12,
            n_embd=shape.hidden or 768,
            vocab_size=shape.vocab or 50257,
            n_positions=max(1024, shape.seq),
        )
        plain_cls, plain_cfg = transformers.GPT2LMHeadModel, transformers.GPT2Config(**kw)
    else:
        a = ARCH_SHAPES[shape.arch]
        hidden, heads = shape.hidden or a.hidden, shape.heads or a.heads
        kw = dict(
            num_hidden_layers=shape.layers or a.layers,
            hidden_size=hidden,
            num_attention_heads=heads,
            intermediate_size=a.intermediate * hidden // a.hidden,
            vocab_size=shape.vocab or a.vocab,
            max_position_embeddings=max(2048, shape.seq),
            **dict(a.extra),
        )
        if a.config != "GPTNeoXConfig":
            kw.update(num_key_value_heads=max(1, heads // a.kv_div), head_dim=hidden // heads)
        plain_cls, plain_cfg = getattr(transformers, a.model), getattr(transformers, a.config)(**kw)
    circuit_cfg = circuit_cls.config_class(**kw)
    plain_cfg.use_cache = False
    device, dtype = torch.device(shape.device), torch_dtype(shape.dtype)
    circuit = plain = None
    if which in ("both", "circuit"):
        circuit = circuit_cls(circuit_cfg).to(device=device, dtype=dtype)
        circuit.circuit_masks.float()  # masks and λs stay fp32, as under autocast
        circuit.freeze_model_weights()
        circuit.train()  # sampled masks
        with torch.no_grad():
            for lam in circuit.circuit_masks.lambdas():
                lam.fill_(0.1)  # nonzero λ: the penalty and its gradient are live
    if which in ("both", "plain"):
        attn = "eager" if shape.arch == "fgemma2" else "sdpa"  # transformers' Gemma-2 has no SDPA (soft-capping)
        plain = plain_cls._from_config(plain_cfg, attn_implementation=attn).to(device=device, dtype=dtype)
        if circuit is not None:
            state = circuit.state_dict()
            if shape.arch == "fgpt_neox":  # transformers renames Pythia's embed_out when it loads a checkpoint
                state["lm_head.weight"] = state.pop("embed_out.weight")
            missing, unexpected = plain.load_state_dict(state, strict=False)
            unexpected = [k for k in unexpected if "circuit_masks" not in k]
            if missing or unexpected:
                raise RuntimeError(f"weights do not map onto the HF model: {missing[:3]} {unexpected[:3]}")
        plain.eval()  # no dropout: the circuit model applies none either
    return circuit, plain


def synthetic_examples(shape: Shape, vocab: int, seed: int = 0) -> list[Encoded]:
    """IOI-shaped examples: random clean/corrupted ids, one scored position (the last)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (2, shape.batch, shape.seq), generator=g)
    answers = torch.randint(1, vocab, (2, shape.batch), generator=g)
    return [
        Encoded(ids[0, b].tolist(), ids[1, b].tolist(), [shape.seq - 1], [int(answers[0, b])], int(answers[1, b]))
        for b in range(shape.batch)
    ]


def synthetic_batch(shape: Shape, vocab: int, seed: int = 0) -> Batch:
    return collate(synthetic_examples(shape, vocab, seed), pad_id=0).to(shape.device)


@dataclass
class Bench:
    """The timed closures of one configuration, sharing models, batch and optimizer."""

    shape: Shape
    circuit: torch.nn.Module | None
    plain: torch.nn.Module | None
    batch: Batch
    fns: dict[str, Callable[[], None]] = field(default_factory=dict)


def make_bench(shape: Shape, which: str = "both") -> Bench:
    circuit, plain = build_models(shape, which)
    vocab = (circuit or plain).config.vocab_size
    examples = synthetic_examples(shape, vocab)
    batch = collate(examples, pad_id=0).to(shape.device)
    bench = Bench(shape, circuit, plain, batch)
    if circuit is not None:
        task = get_task("ioi")
        opt = mask_optimizer(circuit.circuit_masks, LR, LR, LR, LR, 0.01)
        with torch.no_grad():
            pre_full = model_logits(circuit, batch, circuit=False)
        pre_corr = corrupted_states(circuit, batch)

        def step() -> None:
            """Exactly one pruning step: pruning_loss, backward, AdamW."""
            opt.zero_grad(set_to_none=True)
            loss, _, _ = pruning_loss(circuit, task, batch, TARGET_EDGE, TARGET_NODE)
            loss.backward()
            opt.step()

        def clean_ref() -> None:
            with torch.no_grad():
                model_logits(circuit, batch, circuit=False)

        def corrupt_fwd() -> None:
            corrupted_states(circuit, batch)

        def masked_fwd_bwd() -> None:
            """The tail of pruning_loss with the two reference passes precomputed."""
            opt.zero_grad(set_to_none=True)
            out = circuit(
                batch["input_ids"],
                attention_mask=batch["attention_mask"],
                output_positions=batch["positions"],
                corr_x=pre_corr,
                target_edge_sparsity=TARGET_EDGE,
                target_node_sparsity=TARGET_NODE,
            )
            loss = task.loss(out.logits, pre_full, batch) + out.edge_loss + out.node_loss
            loss.backward()

        def opt_step() -> None:
            opt.step()  # grads left by the previous part

        cache = build_fixed_pass_cache(circuit, examples, 0, Ablation.INTERCHANGE, shape.batch, budget_bytes=2**62)
        index = torch.arange(shape.batch)

        def step_cached() -> None:
            """One step of a run whose fixed passes are cached: the batch's rows, then as `step`."""
            opt.zero_grad(set_to_none=True)
            fixed = cache.lookup(index, batch)
            loss, _, _ = pruning_loss(circuit, task, batch, TARGET_EDGE, TARGET_NODE, fixed=fixed)
            loss.backward()
            opt.step()

        bench.fns.update(step=step, clean_ref=clean_ref, corrupt_fwd=corrupt_fwd, masked_fwd_bwd=masked_fwd_bwd,
                         opt_step=opt_step, step_cached=step_cached)  # fmt: skip
    if plain is not None:
        labels = batch["input_ids"].roll(-1, dims=1)

        def plain_nograd() -> None:
            with torch.no_grad():
                plain(batch["input_ids"], attention_mask=batch["attention_mask"])

        def plain_fwd_bwd() -> None:
            """A plain training step's compute: every weight requires grad, CE on all logits."""
            plain.zero_grad(set_to_none=True)
            logits = plain(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten()).backward()

        bench.fns.update(plain_nograd=plain_nograd, plain_fwd_bwd=plain_fwd_bwd)
    return bench


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_parts(bench: Bench, repeats: int, parts: tuple[str, ...] = PARTS, warmup: int = 1) -> dict[str, dict[str, list[float]]]:
    """Seconds per part: {"wall"|"cpu"|"sys": {part: [...]}}; `warmup` untimed rounds,
    then `repeats` interleaved rounds.

    "cpu" is this process's user+system CPU time: on a shared machine with one torch
    thread it is far less disturbed by other processes than wall time. "sys" is the
    kernel's share (page faults of freshly mapped tensors, mostly).
    """
    times: dict[str, dict[str, list[float]]] = {k: {p: [] for p in parts} for k in ("wall", "cpu", "sys")}
    for r in range(repeats + warmup):
        for part in parts:
            sync(bench.shape.device)
            c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            bench.fns[part]()
            sync(bench.shape.device)
            t1, c1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            if r >= warmup:
                times["wall"][part].append(t1 - t0)
                times["cpu"][part].append((c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime))
                times["sys"][part].append(c1.ru_stime - c0.ru_stime)
    return times


# Memory -------------------------------------------------------------------------


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


def measure_memory_here(bench: Bench, part: str) -> int:
    """Peak bytes the part needs above what is live just before it.

    Runs the part once, cold (the child process is fresh): one run of a big
    configuration already takes many seconds, and the lazy one-off allocations
    (thread pools, kernel caches, AdamW's state for the ~30k masks) are small.
    """
    fn = bench.fns[part]
    if part == "opt_step":
        bench.fns["masked_fwd_bwd"]()  # grads for the optimizer
    gc.collect()
    if bench.shape.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _proc_status_kb("VmRSS")
    fn()
    return (_proc_status_kb("VmHWM") - base) * 1024


def measure_memory(shape: Shape, part: str) -> int:
    """Peak memory of one part; on CPU in a fresh subprocess (peak RSS is per process)."""
    if shape.device.startswith("cuda"):
        return measure_memory_here(make_bench(shape, "plain" if part.startswith("plain") else "circuit"), part)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, "--memory-child", part, "--threads", str(torch.get_num_threads()), *shape.cli()]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"memory child {part} failed:\n{res.stderr[-3000:]}")
    return int(json.loads(res.stdout.strip().splitlines()[-1])["peak_bytes"])


# Reporting ----------------------------------------------------------------------


def machine_info() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M).group(1)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg": os.getloadavg(),
    }
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "src"], capture_output=True, text=True).stdout
        info["git"] = rev + ("+dirty-src" if dirty.strip() else "")
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def ratios(med: dict[str, float], mem: dict[str, int]) -> list[tuple[str, float | None, float | None]]:
    """(name, value, target) rows; parts have no target, they say where the cost is."""
    specs = [
        ("time  step / (2 plain_nograd + plain_fwd_bwd)", med, "step", ("plain_nograd", "plain_nograd", "plain_fwd_bwd"), TIME_TARGET),
        ("time  step_cached / (2 plain_nograd + plain_fwd_bwd)", med, "step_cached", ("plain_nograd", "plain_nograd", "plain_fwd_bwd"), TIME_TARGET),
        ("time  step_cached / plain_fwd_bwd", med, "step_cached", ("plain_fwd_bwd",), None),
        ("time  step_cached / step", med, "step_cached", ("step",), None),
        ("time  clean_ref / plain_nograd", med, "clean_ref", ("plain_nograd",), None),
        ("time  corrupt_fwd / plain_nograd", med, "corrupt_fwd", ("plain_nograd",), None),
        ("time  masked_fwd_bwd / plain_fwd_bwd", med, "masked_fwd_bwd", ("plain_fwd_bwd",), None),
        ("time  opt_step / step", med, "opt_step", ("step",), None),
        ("mem   step / plain_fwd_bwd", mem, "step", ("plain_fwd_bwd",), MEM_TARGET),
        ("mem   step_cached / plain_fwd_bwd", mem, "step_cached", ("plain_fwd_bwd",), MEM_TARGET),
        ("mem   masked_fwd_bwd / plain_fwd_bwd", mem, "masked_fwd_bwd", ("plain_fwd_bwd",), None),
        ("mem   clean_ref / plain_nograd", mem, "clean_ref", ("plain_nograd",), None),
        ("mem   corrupt_fwd / plain_nograd", mem, "corrupt_fwd", ("plain_nograd",), None),
    ]
    rows: list[tuple[str, float | None, float | None]] = []
    for name, table, num, dens, target in specs:
        if num in table and all(d in table for d in dens):
            rows.append((name, table[num] / max(sum(table[d] for d in dens), 1e-12), target))
    return rows


def report(shape: Shape, times: dict[str, dict[str, list[float]]], mem: dict[str, int], extra: dict) -> dict:
    wall, cpu = times["wall"], times["cpu"]
    med = {p: statistics.median(v) for p, v in wall.items() if v}
    med_cpu = {p: statistics.median(v) for p, v in cpu.items() if v}
    med_sys = {p: statistics.median(v) for p, v in times["sys"].items() if v}
    print(f"\n== {shape.arch} batch {shape.batch} seq {shape.seq} layers {extra['layers']} "
          f"{shape.device} {shape.dtype}  ({extra['n_writers']} writers, {extra['n_edges']} edges)")
    print(f"{'part':<16}{'wall med':>9}{'min':>8}{'max':>8}{'cpu med':>9}{'sys med':>9}{'peak MiB':>10}")
    for p in dict.fromkeys([*med, *mem]):
        peak = f"{mem[p] / 2**20:10.1f}" if p in mem else f"{'-':>10}"
        if p in med:
            w = wall[p]
            print(f"{p:<16}{med[p]:9.3f}{min(w):8.3f}{max(w):8.3f}{med_cpu[p]:9.3f}{med_sys[p]:9.3f}{peak}")
        else:
            print(f"{p:<16}{'-':>9}{'':8}{'':8}{'':9}{'':9}{peak}")
    rows = ratios(med, mem)
    rows_cpu = [(name.replace("time ", "cpu  "), v, t) for name, v, t in ratios(med_cpu, {}) if name.startswith("time")]
    print(f"{'ratio (wall medians; cpu = process CPU time)':<56}{'value':>8}{'target':>8}  verdict")
    for name, value, target in rows + rows_cpu:
        verdict = "" if target is None else ("met" if value <= target else "MISSED")
        tgt = f"{target:8.2f}" if target is not None else f"{'':8}"
        print(f"{name:<56}{value:8.2f}{tgt}  {verdict}")
    return {
        "shape": asdict(shape),
        **extra,
        "times_s": times,
        "median_s": med,
        "median_cpu_s": med_cpu,
        "median_sys_s": med_sys,
        "peak_bytes": mem,
        "ratios": {name: {"value": v, "target": t} for name, v, t in rows + rows_cpu},
    }


def profile_step(bench: Bench, rows: int, out: Path | None, parts: tuple[str, ...] = STEP_PARTS) -> None:
    """torch.profiler over one step's parts, run separately: where the time and memory go."""
    from torch.profiler import ProfilerActivity, profile, record_function

    fns = bench.fns  # already warm: called after the timed rounds
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.shape.device.startswith("cuda") else [])
    with profile(activities=activities, profile_memory=True, record_shapes=True) as prof:
        for part in parts:
            with record_function(f"## {part}"):
                fns[part]()
    key = "self_device_time_total" if bench.shape.device.startswith("cuda") else "self_cpu_time_total"
    table_time = prof.key_averages().table(sort_by=key, row_limit=rows)
    table_shapes = prof.key_averages(group_by_input_shape=True).table(sort_by=key, row_limit=rows)
    table_mem = prof.key_averages().table(sort_by="self_cpu_memory_usage", row_limit=rows)
    text = (
        f"# profile: {asdict(bench.shape)}\n\n## by {key}\n{table_time}\n"
        f"## by {key}, grouped by input shape\n{table_shapes}\n## by self CPU memory\n{table_mem}\n"
    )
    print(text)
    if out is not None:
        out.write_text(text)


def run_steps(bench: Bench, steps: int) -> dict:
    """Loop the full step `steps` times (a 3,000-step run's wall time, for GPUs)."""
    bench.fns["step"]()
    sync(bench.shape.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        bench.fns["step"]()
    sync(bench.shape.device)
    wall = time.perf_counter() - t0
    res = {"steps": steps, "wall_s": wall, "s_per_step": wall / steps, "projected_3000_steps_s": 3000 * wall / steps}
    print(json.dumps(res, indent=2))
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="fpt2", choices=["fpt2", *ARCH_SHAPES], help="fllama: the SmolLM2-135M shape; see ArchShape")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--layers", type=int, default=None, help="default: the arch's (12; fllama 30)")
    ap.add_argument("--hidden", type=int, default=None, help="default: 768 (fllama 576); small shapes for scaling runs")
    ap.add_argument("--heads", type=int, default=None, help="default: 12 (fllama 9); KV heads keep the arch's ratio")
    ap.add_argument("--vocab", type=int, default=None, help="default: 50257 (fpt2), 49152 (fllama), 50304")
    ap.add_argument("--device", default="cpu", help="cpu | cuda[:N]")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds after the warm-up rounds (median reported); 0: profile/memory only")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds before the timed ones")
    ap.add_argument("--mem-parts", default=None, help="parts whose peak memory is measured (default: all timed parts)")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--profile", action="store_true", help="also print a torch.profiler summary of one step")
    ap.add_argument("--profile-out", type=Path, default=None, help="write the profile tables to this file")
    ap.add_argument("--profile-rows", type=int, default=20)
    ap.add_argument("--profile-parts", default=",".join(STEP_PARTS), help="parts run under the profiler")
    ap.add_argument("--steps", type=int, default=0, help="only loop the full step this many times and report wall time")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument(
        "--keep-denormals",
        action="store_true",
        help="do not flush denormals to zero on CPU (the pruning scripts flush them: near the full "
        "model the KL gradients are denormal-sized, and x86 arithmetic on them is ~10x slower)",
    )
    ap.add_argument(
        "--default-allocator",
        action="store_true",
        help="keep glibc's defaults (the pruning scripts serve large tensors from the heap on CPU)",
    )
    ap.add_argument("--json", type=Path, default=None, help="save raw numbers here")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.keep_denormals:
        torch.set_flush_denormal(True)
    if not args.memory_child and not args.device.startswith("cuda") and not args.default_allocator:
        from edge_pruning.pruning import reuse_freed_memory

        reuse_freed_memory()  # as the pruning scripts do on CPU
    shape = Shape(args.arch, args.batch, args.seq, args.layers, args.hidden, args.heads, args.vocab, args.device, args.dtype)
    if shape.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    if args.memory_child:
        part = args.memory_child
        bench = make_bench(shape, "plain" if part.startswith("plain") else "circuit")
        print(json.dumps({"part": part, "peak_bytes": measure_memory_here(bench, part)}))
        return {}
    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}")
    bench = make_bench(shape)
    graph = bench.circuit.circuit_graph
    extra = {
        "layers": len(graph.sites) // 2,
        "n_writers": graph.n_writers,
        "n_readers": graph.n_readers,
        "n_edges": graph.n_edges,
        "machine": machine_info(),
        "argv": sys.argv[1:] if argv is None else argv,
    }
    if args.steps:
        result = {**extra, "shape": asdict(shape), "run": run_steps(bench, args.steps)}
    else:
        profile_parts = tuple(p for p in args.profile_parts.split(",") if p)
        times = time_parts(bench, args.repeats, parts, args.warmup) if args.repeats else {"wall": {}, "cpu": {}, "sys": {}}
        if args.profile:
            if args.repeats == 0:  # nothing timed: warm the profiled parts first
                for part in profile_parts:
                    bench.fns[part]()
            profile_step(bench, args.profile_rows, args.profile_out, profile_parts)
        del bench
        gc.collect()
        mem_parts = parts if args.mem_parts is None else tuple(p for p in args.mem_parts.split(",") if p)
        mem = {} if args.no_memory else {p: measure_memory(shape, p) for p in mem_parts}
        result = report(shape, times, mem, extra)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
