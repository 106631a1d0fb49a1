#!/usr/bin/env bash
# Prune the Tracr reverse model with the paper's hyperparameters and compare the circuit
# with the ground truth. Usage: tracr_reverse.sh [OUTPUT_DIR] [more flags, e.g. --seed 1]
# Output defaults to data/runs/erazr-reverse; an unfinished run there is resumed
# (add --overwrite_output_dir true to start afresh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/data/runs/erazr-reverse}"
shift || true
exec "${PYTHON:-python}" "$ROOT/src/prune/erazr_reverse.py" --output_dir "$OUT" "$@"
