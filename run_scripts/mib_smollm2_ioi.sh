#!/usr/bin/env bash
# Edge Pruning at MIB's nine sizes on SmolLM2-135M IOI (offline MIB-layout data), in
# one run: a logarithmic warm-up of the edge target to 0.9992 (equal steps per MIB
# size), snapshots written as the masks' expected size reaches 50 % ... 0.1 % of
# MIB's 123,211 edges (the --ungroup_kv graph: K/V per query head, as MIB reads them).
# Then MIB's evaluation of its nine circuits and of its final masks' scores, of EAP and
# EAP-IG on the same examples, and one table (run_scripts/mib_eval_smollm2_ioi.sh).
#   bash run_scripts/mib_smollm2_ioi.sh            # 450 steps; recorded in assets/mib_smollm2_ioi
#   STEPS=40 bash run_scripts/mib_smollm2_ioi.sh   # a quick look
# On one CPU thread: pruning 18.3 min (2.44 s/step), its MIB evaluation 7.3 min, EAP and
# EAP-IG with theirs 18.7 min.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-$ROOT/data/models/smollm2-135m}"
DATA="${DATA:-$ROOT/data/datasets/mib_ioi}"
STEPS="${STEPS:-450}"
WARMUP="${WARMUP:-$((STEPS * 8 / 9))}"
OUT="${OUT:-$ROOT/data/runs/smollm2-mib-ioi}"

[ -f "$MODEL/config.json" ] || "$PY" -m edge_pruning.smollm2 --output "$MODEL"
[ -d "$DATA" ] || "$PY" "$ROOT/scripts/make_mib_ioi.py" --out "$DATA"
"$PY" "$ROOT/src/prune/fllama_mib.py" --task mib-ioi --mib_folder ioi_smollm2 \
  --initialize_from "$MODEL" --dataset_path "$DATA" --train_split train --eval_split validation \
  --max_seq_length 64 --per_device_train_batch_size "${BATCH:-8}" \
  --edge_learning_rate 0.8 --node_learning_rate 0.8 --reg_edge_learning_rate 0.8 --reg_node_learning_rate 0.8 \
  --max_steps "$STEPS" --warmup_steps 20 --lr_scheduler_type constant_with_warmup \
  --num_sparsity_warmup_steps "$WARMUP" --warmup_type logarithmic \
  --target_edge_sparsity 0.9992 --target_node_sparsity 0.7 --with_embedding_nodes --disable_node_loss --ungroup_kv \
  --max_eval_samples 100 --per_device_eval_batch_size 16 --output_dir "$OUT" --save_steps 100 --logging_steps 5 \
  --report_to none --seed 42
RUN="$OUT" OUT="${EVAL_OUT:-$ROOT/data/runs/mib-eval-smollm2-ioi}" bash "$ROOT/run_scripts/mib_eval_smollm2_ioi.sh" edge-pruning
# EAP and EAP-IG on the same examples (unless already done), then one table and plot.
EVAL_DIR="${EVAL_OUT:-$ROOT/data/runs/mib-eval-smollm2-ioi}"
[ -f "$EVAL_DIR/attribution/summary.json" ] || OUT="$EVAL_DIR" bash "$ROOT/run_scripts/mib_eval_smollm2_ioi.sh" attribution
OUT="$EVAL_DIR" bash "$ROOT/run_scripts/mib_eval_smollm2_ioi.sh" table
