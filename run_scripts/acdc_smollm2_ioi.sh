#!/usr/bin/env bash
# ACDC on SmolLM2-135M IOI (KL to the full model, interchange ablation), resumable:
# run it again with the same OUT to continue. On 2 CPU cores the whole graph takes far
# longer than one start (docs/baselines.md has the per-edge cost); MAX_MINUTES caps
# each start.
#   TAU=0.05 N=20 MAX_MINUTES=20 bash run_scripts/acdc_smollm2_ioi.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-$ROOT/data/models/smollm2-135m}"
N="${N:-20}"
TAU="${TAU:-0.05}"
OUT="${OUT:-$ROOT/data/runs/acdc-smollm2-ioi-n$N}"
"$PY" "$ROOT/src/eval/acdc.py" -m "$MODEL" -t ioi -w -s train -n "$N" -b "$N" --tau $TAU \
  --eval-split test --n-eval 200 ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"} -o "$OUT"
