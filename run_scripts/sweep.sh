#!/usr/bin/env bash
# Edge Pruning sweep of one GPT-2 task, with the original run_scripts/{ioi,gt,gp}_sweep.sh's
# command line (its flags, hyperparameters, target grid and node target per task):
# 3,000 steps (2,500 sparsity warm-up), batch 32, sequence length 64, all four learning
# rates 0.8, no node penalty, validation every 64 steps. Each run is then evaluated on
# the whole test split.
#   bash run_scripts/sweep.sh ioi|gt|gp
# Environment: MODEL (default gpt2, needs the HF hub; or a local checkpoint), DATASET,
# TRAIN_SPLIT, EDGE_TARGETS, NODE_TARGET, N_TEST (default: the whole split), OUT, PYTHON;
# STEPS and WARMUP (default 3000, 2500) for a quick look.
set -euo pipefail
TASK="${1:?usage: sweep.sh ioi|gt|gp}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
case "$TASK" in
  # the original grids: 17 (IOI), 15 (GT), 19 (GP) edge targets
  ioi) GRID="0.94 0.945 0.95 0.955 0.96 0.965 0.97 0.975 0.98 0.985 0.99 0.995 1.0 1.01 1.02 1.05 1.1"; NS=0.72; N_VAL=200 ;;
  gt) GRID="0.95 0.955 0.96 0.965 0.97 0.975 0.98 0.985 0.99 0.995 1.0 1.01 1.02 1.05 1.1"; NS=0.68; N_VAL=150 ;;
  gp) GRID="0.93 0.94 0.945 0.95 0.955 0.96 0.965 0.97 0.975 0.98 0.985 0.99 0.995 1.0 1.05 1.1 1.15 1.2 1.4"; NS=0.69; N_VAL=150 ;;
  *) echo "sweep.sh: unknown task $TASK (ioi, gt or gp)" >&2; exit 2 ;;
esac
MODEL="${MODEL:-gpt2}"
DATASET="${DATASET:-$ROOT/data/datasets/$TASK}"
TRAIN_SPLIT="${TRAIN_SPLIT:-train}"
EDGE_TARGETS="${EDGE_TARGETS:-$GRID}"
NODE_SPARSITY="${NODE_TARGET:-$NS}"
OUT="${OUT:-$ROOT/data/runs}"
PY="${PYTHON:-python}"
ELR=0.8
LLR=0.8
RELR=0.8
RLLR=0.8
TOTAL="${STEPS:-3000}"
WARMUP="${WARMUP:-2500}"
EXTRA="--disable_node_loss"
TAG="wo_node_loss"
N_TRAIN=1000000 # all of the (200 / 400 / 100000) examples

for EDGE_SPARSITY in $EDGE_TARGETS; do
  RUN="$OUT/$TASK-$(basename "$DATASET")-$TRAIN_SPLIT-${TAG}-elr${ELR}-llr${LLR}-relr${RELR}-rllr${RLLR}-es${EDGE_SPARSITY}-ns${NODE_SPARSITY}-t${TOTAL}"
  "$PY" "$ROOT/src/prune/fpt2_$TASK.py" \
    --report_to none \
    --do_train \
    --do_eval \
    --dataset_path "$DATASET" \
    --train_split "$TRAIN_SPLIT" \
    --initialize_from "$MODEL" \
    --max_seq_length 64 \
    --per_device_train_batch_size 32 \
    --per_device_eval_batch_size 16 \
    --gradient_accumulation_steps 1 \
    --eval_accumulation_steps 16 \
    --edge_learning_rate $ELR \
    --layer_learning_rate $LLR \
    --reg_edge_learning_rate $RELR \
    --reg_layer_learning_rate $RLLR \
    --max_steps $TOTAL \
    --warmup_steps 200 \
    --eval_strategy steps \
    --eval_steps 64 \
    --save_steps 64 \
    --logging_steps 8 \
    --save_total_limit 1 \
    --start_edge_sparsity 0.00 \
    --target_edge_sparsity "$EDGE_SPARSITY" \
    --start_layer_sparsity 0.00 \
    --target_layer_sparsity "$NODE_SPARSITY" \
    --num_sparsity_warmup_steps $WARMUP \
    --max_train_samples $N_TRAIN \
    --max_eval_samples $N_VAL \
    --output_dir "$RUN" \
    --remove_unused_columns false \
    --dataloader_num_workers 0 \
    --warmup_type linear \
    --with_embedding_nodes \
    $EXTRA
  "$PY" "$ROOT/src/eval/$TASK.py" -m "$RUN" -d "$DATASET" -s test ${N_TEST:+-n "$N_TEST"} -o "$RUN/eval_${TASK}_test.json"
done
