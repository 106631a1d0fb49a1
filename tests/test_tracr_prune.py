"""End to end: prune both Tracr models with the paper's hyperparameters (the
scripts' defaults, seed 42) through `run_scripts/tracr_*.sh`, and check that the
recovered circuit is exactly the ground truth and keeps 100% accuracy.

About 45 s on a 2-core CPU (reverse's 6,000 steps ~33 s, xproportion's 720 ~4 s,
plus start-up). The outcome depends on the seed: seed 42 recovers both circuits,
but over seeds 0-9 reverse is recovered exactly 6 times (the others lose a true
edge) and xproportion 9 times (the other keeps one extra, harmless edge), so a
change of seed, torch build or CPU kernel can flip this test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("task,max_steps", [("xproportion", 720), ("reverse", 6000)])
def test_pruning_recovers_the_ground_truth_circuit(tmp_path, task, max_steps):
    out = tmp_path / task
    start = time.perf_counter()
    subprocess.run(
        [str(REPO / "run_scripts" / f"tracr_{task}.sh"), str(out), "--seed", "42", "--disable_tqdm", "true"],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    truth = json.loads((REPO / "data" / "tracr_models" / f"{task}_ground_truth.json").read_text())["edges"]
    found = json.loads((out / "edges.json").read_text())
    assert sorted(map(tuple, found)) == sorted(map(tuple, truth))
    comparison = json.loads((out / "ground_truth_comparison.json").read_text())
    assert comparison["exact"] and comparison["precision"] == comparison["recall"] == 1.0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["n_examples"] == (27 if task == "reverse" else 256)  # every input
    assert results["circuit"]["accuracy"] == 1.0 and results["full_model"]["accuracy"] == 1.0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert max(steps) == max_steps  # the paper's step count ran
    print(f"{task}: {wall:.1f} s")
