#!/usr/bin/env bash
# Boolean expressions on SmolLM2-135M (the CodeLlama-13B setting of the paper, on a CPU):
# prune with the instruction prompt and few-shot, evaluate both circuits few-shot,
# and intersect them.
#   STEPS=10 bash run_scripts/smollm2_boolean.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-$ROOT/data/models/smollm2-135m}"
STEPS="${STEPS:-200}"
OUT="${OUT:-$ROOT/data/runs}"
N_EVAL="${N_EVAL:-40}"

[ -f "$MODEL/config.json" ] || "$PY" -m edge_pruning.smollm2 --output "$MODEL"
for MODE in ip fs; do
  "$PY" "$ROOT/src/prune/fllama_boolean_expressions_$MODE.py" \
    --initialize_from "$MODEL" --max_seq_length 192 --per_device_train_batch_size "${BATCH:-4}" \
    --edge_learning_rate 0.8 --node_learning_rate 0.8 --reg_edge_learning_rate 0.4 --reg_node_learning_rate 0.4 \
    --max_steps "$STEPS" --warmup_steps 2 --num_sparsity_warmup_steps "$((STEPS * 9 / 10))" \
    --target_edge_sparsity "${EDGE_TARGET:-1.2}" --target_node_sparsity 0.7 --with_embedding_nodes --disable_node_loss \
    --max_eval_samples "$N_EVAL" --per_device_eval_batch_size 16 --output_dir "$OUT/smollm2-boolean-$MODE" --save_steps 100 --logging_steps 1 \
    --report_to none --seed 42
  "$PY" "$ROOT/src/modeling/vis_fllama.py" -i "$OUT/smollm2-boolean-$MODE"
done
"$PY" "$ROOT/src/modeling/vis_fllama.py" -m1 "$OUT/smollm2-boolean-ip" -m2 "$OUT/smollm2-boolean-fs" -o "$OUT/smollm2-boolean-shared.json"
for MODE in ip fs; do
  "$PY" "$ROOT/src/eval/boolean_expressions.py" -m "$OUT/smollm2-boolean-$MODE" -M fewshot -s test -n "$N_EVAL" \
    --max-seq-length 192 -o "$OUT/smollm2-boolean-$MODE/eval_fewshot_test.json"
done
