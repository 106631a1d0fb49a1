#!/usr/bin/env bash
# Edge Pruning sweep of one GPT-2 task with the paper's hyperparameters (method.md §6):
# 3,000 steps (2,500 sparsity warm-up), batch 32, sequence length 64, all four
# learning rates 0.8, node target 0.72 without the node penalty, edge targets
# from 0.94 to 1.1. Each run is then evaluated on the test split.
#   bash run_scripts/sweep.sh ioi|gt|gp
# Environment: MODEL (default gpt2, needs the HF hub; or a local checkpoint),
# DATASET, TRAIN_SPLIT, EDGE_TARGETS, NODE_TARGET, N_TEST, OUT, PYTHON.
set -euo pipefail
TASK="${1:?usage: sweep.sh ioi|gt|gp}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${MODEL:-gpt2}"
DATASET="${DATASET:-$ROOT/data/datasets/$TASK}"
TRAIN_SPLIT="${TRAIN_SPLIT:-train}"
EDGE_TARGETS="${EDGE_TARGETS:-0.94 0.96 0.98 1.0 1.02 1.05 1.1}"
NODE_TARGET="${NODE_TARGET:-0.72}"
N_TEST="${N_TEST:-1000}"
OUT="${OUT:-$ROOT/data/runs}"
PY="${PYTHON:-python}"

for ES in $EDGE_TARGETS; do
  RUN="$OUT/$TASK-$(basename "$DATASET")-$TRAIN_SPLIT-es$ES"
  "$PY" "$ROOT/src/prune/fpt2_$TASK.py" \
    --initialize_from "$MODEL" --dataset_path "$DATASET" --train_split "$TRAIN_SPLIT" \
    --max_seq_length 64 --per_device_train_batch_size 32 \
    --edge_learning_rate 0.8 --node_learning_rate 0.8 --reg_edge_learning_rate 0.8 --reg_node_learning_rate 0.8 \
    --max_steps 3000 --warmup_steps 200 --num_sparsity_warmup_steps 2500 --warmup_type linear \
    --start_edge_sparsity 0.0 --target_edge_sparsity "$ES" \
    --start_node_sparsity 0.0 --target_node_sparsity "$NODE_TARGET" \
    --with_embedding_nodes --disable_node_loss \
    --output_dir "$RUN" --save_steps 500 --logging_steps 10 --report_to none --seed 42
  "$PY" "$ROOT/src/eval/$TASK.py" -m "$RUN" -d "$DATASET" -s test -n "$N_TEST"
done
