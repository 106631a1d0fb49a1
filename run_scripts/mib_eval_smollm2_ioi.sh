#!/usr/bin/env bash
# MIB's evaluation (CPR, CMD, f_k) on SmolLM2-135M IOI with the offline MIB-layout data:
#   bash run_scripts/mib_eval_smollm2_ioi.sh attribution   # EAP, EAP-IG (inputs, activations)
#   bash run_scripts/mib_eval_smollm2_ioi.sh edge-pruning  # the nine circuits and final masks of mib_smollm2_ioi.sh
#   bash run_scripts/mib_eval_smollm2_ioi.sh table         # both in one table and plot (no new circuits)
# Both on the --ungroup_kv graph (K/V per query head, as MIB reads them), 100 validation
# prompts, batch 20 (MIB's default); attribution on 100 train prompts, IG with 5 steps (MIB's defaults).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-$ROOT/data/models/smollm2-135m}"
DATA="${DATA:-$ROOT/data/datasets/mib_ioi}"
RUN="${RUN:-$ROOT/data/runs/smollm2-mib-ioi}"
OUT="${OUT:-$ROOT/data/runs/mib-eval-smollm2-ioi}"
N="${N:-100}"
[ -d "$DATA" ] || "$PY" "$ROOT/scripts/make_mib_ioi.py" --out "$DATA"
COMMON=(-m "$MODEL" -t mib-ioi -d "$DATA" -s validation -n "$N" -b 20 --ungroup_kv --mib-model smollm2)
case "${1:-}" in
  attribution)
    "$PY" "$ROOT/src/eval/mib.py" "${COMMON[@]}" --attribute eap eap-ig-inputs eap-ig-activations \
      --n-attribution 100 --ig-steps 5 -o "$OUT/attribution" ;;
  edge-pruning)
    "$PY" "$ROOT/src/eval/mib.py" "${COMMON[@]}" --circuit "edge-pruning=$RUN/ioi_smollm2" \
      --circuit "edge-pruning-final=$RUN" -o "$OUT/edge-pruning" ;;
  table)
    "$PY" "$ROOT/src/eval/mib.py" "${COMMON[@]}" --include "$OUT/attribution" "$OUT/edge-pruning" -o "$OUT/all" ;;
  *) echo "usage: $0 attribution|edge-pruning|table" >&2; exit 2 ;;
esac
