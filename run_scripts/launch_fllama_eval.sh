#!/bin/bash
#SBATCH --job-name=fllama-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=200G
#SBATCH --time=1:30:00
#SBATCH --output=%x-%j.out
#
# Evaluate a pruned FLlama circuit (or the full model) on Boolean expressions.
#
#   MODEL=data/runs/<run> sbatch run_scripts/launch_fllama_eval.sh    # from the repository root
#   MODEL=data/runs/<run> bash run_scripts/launch_fllama_eval.sh
#
# src/eval/boolean_expressions.py runs in one process on one GPU (the original sharded the
# evaluation over 4 GPUs with FSDP): a 13B model with its fp32 weights takes about 52 GB of
# the GPU, so the job asks for one node and one GPU, and a small batch.
# MODE: instruction | fewshot. EDGES: an edges JSON to evaluate exactly that circuit, e.g.
# the intersection of two circuits from
#   python src/modeling/vis_fllama.py -m1 RUN_A -m2 RUN_B -o intersection.json
# (then MODEL may be either run, or the plain model).

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
[[ -f src/eval/boolean_expressions.py ]] || { echo "run from the repository root" >&2; exit 1; }
if [[ -f .venv/bin/activate ]]; then source .venv/bin/activate; fi

MODEL=${MODEL:?set MODEL to the pruned checkpoint directory}
MODE=${MODE:-instruction}
BATCH_SIZE=${BATCH_SIZE:-1}
ARGS=(src/eval/boolean_expressions.py -m "$MODEL" -M "$MODE" -b "$BATCH_SIZE")
if [[ -n ${EDGES:-} ]]; then ARGS+=(-e "$EDGES"); fi

if [[ -n ${SLURM_JOB_ID:-} ]]; then
    srun --ntasks=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" python "${ARGS[@]}"
else
    python "${ARGS[@]}"
fi
