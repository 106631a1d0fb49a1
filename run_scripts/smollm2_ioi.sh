#!/usr/bin/env bash
# The embedded default: find an IOI circuit in SmolLM2-135M (a real pretrained
# Llama-architecture model installed from PyPI by scripts/setup.sh) on the CPU,
# then evaluate it on held-out prompts, export edges.json and draw it.
#   bash run_scripts/smollm2_ioi.sh                 # 600 steps, ~20-30 min on 2 CPU cores
#   STEPS=40 WARMUP=30 bash run_scripts/smollm2_ioi.sh   # a quick look
#   bash run_scripts/smollm2_ioi.sh --no_cache_fixed_passes   # extra flags go to the pruning script
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-$ROOT/data/models/smollm2-135m}"
STEPS="${STEPS:-600}"
WARMUP="${WARMUP:-$((STEPS * 3 / 4))}"
EDGE_TARGET="${EDGE_TARGET:-0.98}"
OUT="${OUT:-$ROOT/data/runs/smollm2-ioi-es$EDGE_TARGET}"

[ -f "$MODEL/config.json" ] || "$PY" -m edge_pruning.smollm2 --output "$MODEL"
"$PY" "$ROOT/src/prune/fllama_ioi.py" \
  --initialize_from "$MODEL" --dataset_path "$ROOT/data/datasets/ioi" --train_split train \
  --max_seq_length 64 --per_device_train_batch_size "${BATCH:-8}" \
  --edge_learning_rate 0.8 --node_learning_rate 0.8 --reg_edge_learning_rate 0.8 --reg_node_learning_rate 0.8 \
  --max_steps "$STEPS" --warmup_steps 20 --lr_scheduler_type constant_with_warmup --num_sparsity_warmup_steps "$WARMUP" \
  --target_edge_sparsity "$EDGE_TARGET" --target_node_sparsity 0.7 --with_embedding_nodes --disable_node_loss \
  --max_eval_samples 100 --per_device_eval_batch_size 16 --output_dir "$OUT" --save_steps 100 --logging_steps 5 --report_to none --seed 42 "$@"
"$PY" "$ROOT/src/eval/ioi.py" -m "$OUT" -s test -n "${N_TEST:-200}" -b 16
"$PY" "$ROOT/src/modeling/vis_fllama.py" -i "$OUT"
"$PY" "$ROOT/src/modeling/draw_fllama.py" -i "$OUT/edges.json"
