#!/usr/bin/env bash
# Prune the Tracr reverse model with the paper's hyperparameters (the original
# run_scripts/tracr_reverse.sh's flags) and compare the circuit with the ground truth.
#   tracr_reverse.sh [OUTPUT_DIR] [more flags, e.g. --seed 1]
# Output defaults to data/runs/erazr-reverse, started afresh (--overwrite_output_dir, as
# the original); pass --overwrite_output_dir false to resume an unfinished run there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/data/runs/erazr-reverse}"
shift || true
EDGE_SPARSITY=1.02
NODE_SPARSITY=0.1
ELR=0.03
LLR=0.03
RELR=0.001
RLLR=0.001
TOTAL=6000
WARMUP=5900
# --logging_steps/--save_steps: ours (the original evaluated and
# saved every 64 steps, logged every 4); --zero_ablation: our Tracr data has no corrupted inputs.
exec "${PYTHON:-python}" "$ROOT/src/prune/erazr_reverse.py" \
    --report_to none \
    --do_train \
    --dataset_path "$ROOT/data/datasets/reverse" \
    --initialize_from "$ROOT/data/tracr_models/reverse.tracr.pkl" \
    --seq_length 4 \
    --per_device_train_batch_size 16 \
    --per_device_eval_batch_size 16 \
    --edge_learning_rate $ELR \
    --node_learning_rate $LLR \
    --reg_edge_learning_rate $RELR \
    --reg_node_learning_rate $RLLR \
    --max_steps $TOTAL \
    --warmup_steps 1500 \
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
    --disable_node_loss \
    --overwrite_output_dir \
    "$@"
