"""run_scripts/gpu_check.sh in its CPU dry mode (tiny shapes): every stage of the GPU
check runs and its JSON report holds what each stage measures, so that the check
does not rot while no GPU runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ["environment", "model_tests", "model_check", "step_ratio", "ioi_3000", "fsdp_smoke"]
FAMILIES = ["fpt2", "fllama", "fgpt_neox", "fqwen2", "fqwen3", "fmistral", "fgemma", "fgemma2"]


def test_gpu_check_dry_run(tmp_path):
    report = tmp_path / "report.json"
    env = dict(os.environ, REPORT=str(report), WORK=str(tmp_path / "work"), DRY_RUN="1", OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", str(REPO / "run_scripts" / "gpu_check.sh")], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    out = json.loads(report.read_text())
    assert out["mode"] == "dry-run" and out["ok"]
    assert list(out["stages"]) == STAGES
    assert all(stage["ok"] for stage in out["stages"].values())
    tests = out["stages"]["model_tests"]
    assert tests["tests"] >= 1 and tests["failures"] == tests["errors"] == 0
    families = out["stages"]["model_check"]["families"]
    assert sorted(families) == sorted(f"{a}_{d}" for a in FAMILIES for d in ("fp32", "bf16"))
    assert all(row["mask_grad_nonzero"] > 0 and not row["weights_got_grad"] for row in families.values())
    assert all(row["full_vs_hf"] <= 1e-4 for name, row in families.items() if name.endswith("fp32"))
    step = out["stages"]["step_ratio"]["fpt2_tiny_fp32"]
    assert "time  step / (2 plain_nograd + plain_fwd_bwd)" in step["ratios"] and step["median_wall_s"]["step"] > 0
    ioi = out["stages"]["ioi_3000"]
    assert ioi["steps"] == 6 and ioi["s_per_step"] > 0
    assert len(ioi["fixed_passes"]) == 1 and "fixed passes cached for 16 training examples" in ioi["fixed_passes"][0]
    assert "skipped" in out["stages"]["fsdp_smoke"]
