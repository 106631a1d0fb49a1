#!/usr/bin/env bash
# Tracr ROC for every method: Edge Pruning (seed 0) and UGS (--mask_sampler ugs, same
# flags) on reverse and xproportion, then EAP, EAP-IG's menu and ACDC's τ sweep against
# the ground truth. Writes assets/tracr_roc/ (tracr_ground_truth_scores.json, roc.png).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
RUNS="${RUNS:-$ROOT/data/runs}"
OUT="${OUT:-$ROOT/assets/tracr_roc}"
for task in reverse xproportion; do
  PYTHON="$PY" bash "$ROOT/run_scripts/tracr_$task.sh" "$RUNS/erazr-$task-seed0" --seed 0 > "$RUNS/erazr-$task-seed0.out" 2>&1
  PYTHON="$PY" bash "$ROOT/run_scripts/tracr_$task.sh" "$RUNS/erazr-$task-ugs-seed0" --seed 0 --mask_sampler ugs > "$RUNS/erazr-$task-ugs-seed0.out" 2>&1
done
"$PY" "$ROOT/src/eval/tracr_baselines.py" --acdc --plot -o "$OUT" \
  --ep-runs reverse="$RUNS/erazr-reverse-seed0" xproportion="$RUNS/erazr-xproportion-seed0" \
  --ugs-runs reverse="$RUNS/erazr-reverse-ugs-seed0" xproportion="$RUNS/erazr-xproportion-ugs-seed0"
