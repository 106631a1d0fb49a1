#!/usr/bin/env bash
# Prune on a custom JSONL dataset (data/datasets/example_custom.jsonl):
# `clean` / `corrupted` texts with the answer in <predict>...</predict>, optional `split`.
#   MODEL=gpt2 bash run_scripts/custom_example.sh
#   MODEL=data/models/smollm2-135m ARCH=fllama STEPS=50 bash run_scripts/custom_example.sh   # offline
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${MODEL:-gpt2}"
ARCH="${ARCH:-fpt2}"
STEPS="${STEPS:-500}"
OUT="${OUT:-$ROOT/data/runs/custom-example}"
"${PYTHON:-python}" "$ROOT/src/prune/${ARCH}_custom.py" \
  --initialize_from "$MODEL" --dataset_path "$ROOT/data/datasets/example_custom.jsonl" \
  --max_seq_length 64 --per_device_train_batch_size 8 \
  --edge_learning_rate 0.8 --node_learning_rate 0.8 --reg_edge_learning_rate 0.8 --reg_node_learning_rate 0.8 \
  --max_steps "$STEPS" --warmup_steps 20 --num_sparsity_warmup_steps "$((STEPS * 5 / 6))" \
  --target_edge_sparsity 0.98 --target_node_sparsity 0.7 --with_embedding_nodes --disable_node_loss \
  --output_dir "$OUT" --save_steps 100 --logging_steps 5 --report_to none --seed 42
