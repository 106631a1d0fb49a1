#!/usr/bin/env bash
# Prune the Tracr xproportion model with the paper's hyperparameters (the original
# run_scripts/tracr_xproportion.sh's flags) and compare the circuit with the ground truth.
#   tracr_xproportion.sh [OUTPUT_DIR] [more flags, e.g. --seed 1]
# Output defaults to data/runs/erazr-xproportion, started afresh (--overwrite_output_dir, as
# the original); pass --overwrite_output_dir false to resume an unfinished run there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/data/runs/erazr-xproportion}"
shift || true
EDGE_SPARSITY=0.92
NODE_SPARSITY=0.4
ELR=1
LLR=1
RELR=0.0001
RLLR=0.0001
TOTAL=720
WARMUP=640
# --logging_steps/--save_steps: ours (the original evaluated and
# saved every 8 steps, logged every 4); --zero_ablation: our Tracr data has no corrupted inputs.
exec "${PYTHON:-python}" "$ROOT/src/prune/erazr_xproportion.py" \
    --report_to none \
    --do_train \
    --dataset_path "$ROOT/data/datasets/xproportion" \
    --initialize_from "$ROOT/data/tracr_models/xproportion.tracr.pkl" \
    --seq_length 5 \
    --per_device_train_batch_size 16 \
    --per_device_eval_batch_size 16 \
    --edge_learning_rate $ELR \
    --node_learning_rate $LLR \
    --reg_edge_learning_rate $RELR \
    --reg_node_learning_rate $RLLR \
    --max_steps $TOTAL \
    --warmup_steps 96 \
    --save_steps 1000 \
    --logging_steps 20 \
    --save_total_limit 1 \
    --start_edge_sparsity 0.00 \
    --target_edge_sparsity $EDGE_SPARSITY \
    --start_node_sparsity 0.00 \
    --target_node_sparsity $NODE_SPARSITY \
    --num_sparsity_warmup_steps $WARMUP \
    --max_train_samples 100000 \
    --max_eval_samples 100000 \
    --output_dir "$OUT" \
    --remove_unused_columns false \
    --dataloader_num_workers 0 \
    --label_names labels \
    --warmup_type linear \
    --zero_ablation \
    --overwrite_output_dir \
    "$@"
