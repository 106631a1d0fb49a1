#!/usr/bin/env bash
# Table 1 analogue, Edge Pruning at 400 training examples: the flags of
# run_scripts/smollm2_ioi.sh (target 0.98, 600 steps, batch 8) on the train_400 split,
# then the same test-split evaluation (200 prompts).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-$ROOT/data/models/smollm2-135m}"
OUT="${OUT:-$ROOT/data/runs/smollm2-ioi-es0.98-train400}"
"$PY" "$ROOT/src/prune/fllama_ioi.py" \
  --initialize_from "$MODEL" --dataset_path "$ROOT/data/datasets/ioi" --train_split train_400 \
  --max_seq_length 64 --per_device_train_batch_size 8 \
  --edge_learning_rate 0.8 --node_learning_rate 0.8 --reg_edge_learning_rate 0.8 --reg_node_learning_rate 0.8 \
  --max_steps 600 --warmup_steps 20 --lr_scheduler_type constant_with_warmup --num_sparsity_warmup_steps 450 \
  --target_edge_sparsity 0.98 --target_node_sparsity 0.7 --with_embedding_nodes --disable_node_loss \
  --max_eval_samples 100 --per_device_eval_batch_size 16 --output_dir "$OUT" --save_steps 100 --logging_steps 5 --report_to none --seed 42
"$PY" "$ROOT/src/eval/ioi.py" -m "$OUT" -s test -n 200 -b 16
