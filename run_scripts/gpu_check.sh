#!/usr/bin/env bash
# The GPU check: one command, under 8 minutes on one H100/H200, one JSON report
# (bench/gpu_check.py says what each stage does: the model tests on CUDA, every family
# in fp32 and bf16 against transformers, the step ratio and peak memory at GPT-2 small
# batch 32, a 3,000-step IOI run with the paper's settings on a random GPT-2 small, a
# one-GPU FSDP smoke run).
#
#   bash run_scripts/gpu_check.sh                 # -> data/runs/gpu_check/report.json (REPORT=path)
#   bash run_scripts/gpu_check.sh --dry-run       # CPU, tiny shapes, seconds (DRY_RUN=1 too)
#   STAGES=model_check,ioi_3000 bash run_scripts/gpu_check.sh
#
# Needs nothing from the network. On a machine without this repo's packages, carry:
#   - .whl/ (WHEELS=dir) with transformers-5.23.0, datasets-5.2.0, dill-0.4.1, multiprocess-0.70.19
#     (py3/py312 wheels, 14 MB; `pip download --no-deps` them); torch with CUDA, accelerate,
#     tokenizers, safetensors, pyarrow, psutil and pytest must be there already;
#   - the SmolLM2 tokenizer: data/models/smollm2-135m/tokenizer.json and tokenizer_config.json
#     (TOKENIZER=dir to point elsewhere).
# The wheels are installed into a scratch folder (never over the system's packages), and
# src/ is put on PYTHONPATH when the package is not installed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DRY=()
if [[ "${1:-}" == "--dry-run" || "${DRY_RUN:-0}" == "1" ]]; then DRY=(--dry-run); fi
REPORT="${REPORT:-$ROOT/data/runs/gpu_check/report.json}"
mkdir -p "$(dirname "$REPORT")"
WORK="${WORK:-$(mktemp -d)}"
if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="${PYTHON:-$ROOT/.venv/bin/python}"; else PY="${PYTHON:-python3}"; fi
# The carried wheels (WHEELS, default .whl/; none in the dry run, which uses this machine's packages).
if [[ ${#DRY[@]} -eq 0 ]]; then WHEELS="${WHEELS:-$ROOT/.whl}"; else WHEELS="${WHEELS:-}"; fi
if [[ -n "$WHEELS" ]] && compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import edge_pruning" 2> /dev/null; then export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"; fi
# check_fsdp_gpu.sh calls `python` and `accelerate`: the same interpreter.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$(command -v "$PY")" > "$WORK/bin/python"
chmod +x "$WORK/bin/python"
export PATH="$WORK/bin:$PATH" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
echo "report $REPORT, work dir $WORK, python $PY"
exec "$PY" "$ROOT/bench/gpu_check.py" "${DRY[@]}" --out "$REPORT" --work "$WORK" \
    --tokenizer "${TOKENIZER:-$ROOT/data/models/smollm2-135m}" ${STAGES:+--stages "$STAGES"}
