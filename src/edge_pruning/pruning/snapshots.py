"""MIB's nine circuits from one pruning run: a Trainer callback that saves the circuit
each time the masks' expected size first drops to one of MIB's sizes.

A submission of circuits to the MIB circuit track is a folder `{task}_{model}` with a
circuit of at most 0.1, 0.2, 0.5, 1, 2, 5, 10, 20 and 50 % of MIB's edges. Run with a
sparsity target rising to 0.999 or beyond (a logarithmic warm-up spends equal steps
per size, as MIB's sizes are spaced); at the first step where the expected fraction of
kept edges, Σ P(z > 0) / |E|, is at most k, the callback writes the top int(k |E|)
MIB edges by Edge Pruning's score (`mib.edge_pruning_scores`, the mask order) as
`{k}.pt` in MIB's format, with that score. Sizes the run never reached are written
from the final masks at the end and marked so. `snapshots.json` records each
snapshot's step, expected size and wall-clock time since the start of training.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..mib import SUBMISSION_FRACTIONS, MIBGraph, edge_pruning_scores, mib_map, node_rule, top_n

logger = logging.getLogger("edge_pruning")


@dataclass
class Snapshot:
    fraction: float
    n_edges: int  # int(fraction * MIB's edge count), edges in the written circuit
    step: int
    expected_kept_fraction: float
    seconds: float  # since training began
    reached: bool  # False: written from the final masks, the run never got this small
    file: str


class MIBSnapshots(TrainerCallback):
    """Writes MIB's nine circuits into `output_dir/folder` during one run."""

    def __init__(self, folder: str, fractions: tuple[float, ...] = SUBMISSION_FRACTIONS) -> None:
        self.folder = folder
        self.fractions = tuple(sorted(fractions, reverse=True))
        self.snapshots: dict[float, Snapshot] = {}
        self.out: Path | None = None
        self.start = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.out = Path(args.output_dir) / self.folder
        self.start = time.time()
        record = self.out / "snapshots.json"
        if record.exists():  # a resumed run keeps what it already wrote
            self.snapshots = {s["fraction"]: Snapshot(**s) for s in json.loads(record.read_text())["snapshots"]}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or not state.is_world_process_zero:
            return
        with torch.no_grad():
            kept = 1.0 - float(model.circuit_masks.expected_edge_sparsity())
        for fraction in self.fractions:
            if fraction not in self.snapshots and kept <= fraction:
                self.write(model, fraction, state.global_step, kept, reached=True)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None or not state.is_world_process_zero:
            return
        with torch.no_grad():
            kept = 1.0 - float(model.circuit_masks.expected_edge_sparsity())
        for fraction in self.fractions:
            if fraction not in self.snapshots:
                self.write(model, fraction, state.global_step, kept, reached=False)

    def write(self, model, fraction: float, step: int, kept: float, reached: bool) -> None:
        mapping = mib_map(model)
        scores = mapping.to_mib(edge_pruning_scores(model))
        n = int(fraction * int(mapping.real.sum()))
        in_graph = top_n(mapping.cfg, scores, n, absolute=True)
        graph = MIBGraph(mapping.cfg, scores, in_graph, node_rule(mapping.cfg, in_graph))
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{fraction}.pt"
        graph.save(path)
        self.snapshots[fraction] = Snapshot(fraction, n, step, kept, time.time() - self.start, reached, path.name)
        logger.info(f"MIB snapshot {fraction}: {n} edges at step {step} (expected kept {kept:.4f}{'' if reached else ', not reached'})")
        record = {"snapshots": [asdict(self.snapshots[f]) for f in sorted(self.snapshots)]}
        tmp = self.out / "snapshots.json.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.out / "snapshots.json")


def snapshot_main(arch: str, argv: list[str] | None = None):
    """`src/prune/{arch}_mib.py`: one pruning run (every flag of the task's pruning
    script) that also writes MIB's nine circuits into `--output_dir/--mib_folder`."""
    from .run import prune_main

    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--task", default="ioi")
    p.add_argument("--mib_folder", required=True, help="MIB's {task}_{model} folder name, e.g. ioi_gpt2")
    options, rest = p.parse_known_args(argv)
    return prune_main(arch, options.task, rest, callbacks=[MIBSnapshots(options.mib_folder)])
