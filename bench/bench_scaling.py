"""How the pruning step's time and peak memory grow with batch, sequence and layers.

Why: the original kept a per-layer copy of the residual "outbox", so its memory grew
as layers × writers × batch × seq × hidden (method.md §8). The efficient design
keeps one writer-major buffer, so peak memory should be a roughly constant multiple
of writers × batch × seq × hidden (writers = layers × (heads + 1)), whatever the
number of layers. This script varies one dimension at a time around a small base
shape and prints peak / (W·B·S·D·bytes), which stays flat if that holds and grows
with the layer count if not.

    python bench/bench_scaling.py --threads 1 --json bench/results/scaling.json

Memory is measured as in bench_step.py (fresh subprocess, peak RSS growth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step as bs  # noqa: E402

PARTS = ("step", "masked_fwd_bwd", "plain_nograd", "plain_fwd_bwd")


def sweep(base: bs.Shape, batches: list[int], seqs: list[int], layers: list[int]) -> list[tuple[str, bs.Shape]]:
    """One-at-a-time variations around `base`, each distinct shape once."""
    out: list[tuple[str, bs.Shape]] = []
    seen: set[tuple] = set()
    for name, values, key in (("batch", batches, "batch"), ("seq", seqs, "seq"), ("layers", layers, "layers")):
        for v in values:
            shape = replace(base, **{key: v})
            ident = tuple(asdict(shape).values())
            if ident not in seen:
                seen.add(ident)
                out.append((name, shape))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="fpt2", choices=["fpt2", *bs.ARCH_SHAPES])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8, help="base batch")
    ap.add_argument("--seq", type=int, default=64, help="base sequence length")
    ap.add_argument("--layers", type=int, default=6, help="base layer count")
    ap.add_argument("--batches", default="4,8,16")
    ap.add_argument("--seqs", default="32,64,128")
    ap.add_argument("--layer-counts", default="3,6,12")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    base = bs.Shape(args.arch, args.batch, args.seq, args.layers, args.hidden, args.heads, args.vocab, args.device, args.dtype)
    elem = torch.tensor([], dtype=bs.torch_dtype(args.dtype)).element_size()
    rows = []
    for varied, shape in sweep(base, ints(args.batches), ints(args.seqs), ints(args.layer_counts)):
        bench = bs.make_bench(shape)
        graph = bench.circuit.circuit_graph
        hidden = bench.circuit.config.hidden_size
        times = bs.time_parts(bench, args.repeats, PARTS, warmup=1)
        del bench
        mem = {p: bs.measure_memory(shape, p) for p in ("step", "plain_fwd_bwd")}
        med = {p: statistics.median(v) for p, v in times["cpu"].items()}
        buffer = graph.n_writers * shape.batch * shape.seq * hidden * elem  # one (W, B, S, D) tensor
        row = {
            "varied": varied,
            "shape": asdict(shape),
            "n_writers": graph.n_writers,
            "n_edges": graph.n_edges,
            "buffer_bytes": buffer,
            "median_cpu_s": med,
            "times_s": times,
            "peak_bytes": mem,
            "step_peak_per_buffer": mem["step"] / buffer,
            "time_ratio": med["step"] / (2 * med["plain_nograd"] + med["plain_fwd_bwd"]),
            "mem_ratio": mem["step"] / mem["plain_fwd_bwd"],
        }
        rows.append(row)
        print(
            f"{varied:>6} B={shape.batch:<3} S={shape.seq:<4} L={shape.layers:<3} W={graph.n_writers:<4} "
            f"step {med['step']:7.3f}s masked {med['masked_fwd_bwd']:7.3f}s plain_fb {med['plain_fwd_bwd']:7.3f}s "
            f"| peak step {mem['step'] / 2**20:8.1f} MiB plain_fb {mem['plain_fwd_bwd'] / 2**20:7.1f} MiB "
            f"| buffer {buffer / 2**20:6.1f} MiB peak/buffer {row['step_peak_per_buffer']:5.2f} "
            f"| time ratio {row['time_ratio']:4.2f} mem ratio {row['mem_ratio']:4.2f}",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": bs.machine_info(), "argv": sys.argv[1:], "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
