#!/bin/bash
#SBATCH --job-name=fllama-fs-prune
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --mem=700G
#SBATCH --time=35:00:00
#SBATCH --output=%x-%j.out
#
# Prune CodeLlama-13B-Instruct for Boolean expressions, few-shot format (3 fixed examples), with
# FSDP2 over every GPU of the job (the paper: 4 nodes x 8 GPUs), bf16 and gradient
# checkpointing. Hyperparameters are the original's.
#
#   sbatch run_scripts/launch_fllama_fs_prune.sh    # SLURM, from the repository root
#   bash run_scripts/launch_fllama_fs_prune.sh      # this machine's GPUs only
#
# INITIALIZE_FROM: a Llama checkpoint (hub name or directory). The original README advises
# loading Llama into the FLlama class once, `save_pretrained`, and starting from that folder.
# OUTPUT_DIR must be on a filesystem every node sees (checkpoints hold one RNG file per rank).
# --per_device_train_batch_size 1 on 32 GPUs gives the original's global batch of 32.
# --max_seq_length only bounds the prompts (batches pad to their longest example); our
# prompts are longer than the original's, which used 72.

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
[[ -f src/prune/fllama_boolean_expressions_fs.py ]] || { echo "run from the repository root" >&2; exit 1; }
if [[ -f .venv/bin/activate ]]; then source .venv/bin/activate; fi
source run_scripts/launch_fllama_common.sh

INITIALIZE_FROM=${INITIALIZE_FROM:-meta-llama/CodeLlama-13b-Instruct-hf}
ELR=0.8
LLR=$ELR
RELR=0.4
RLLR=$RELR
EDGE_SPARSITY=1.2
NODE_SPARSITY=0.7
TOTAL=6000
WARMUP=5500
SEED=42
OUTPUT_DIR=${OUTPUT_DIR:-data/runs/fllama-fs-s${SEED}-elr${ELR}-llr${LLR}-relr${RELR}-rllr${RLLR}-es${EDGE_SPARSITY}-ns${NODE_SPARSITY}-t${TOTAL}}
mkdir -p "$OUTPUT_DIR"

# Add --with_embedding_nodes to let the embedding node be pruned too.
# Drop --disable_node_loss to add the node sparsity penalty.
fsdp_launch src/prune/fllama_boolean_expressions_fs.py \
    --initialize_from "$INITIALIZE_FROM" \
    --output_dir "$OUTPUT_DIR" \
    --report_to "${REPORT_TO:-none}" \
    --max_seq_length 192 \
    --per_device_train_batch_size 1 \
    --edge_learning_rate $ELR \
    --node_learning_rate $LLR \
    --reg_edge_learning_rate $RELR \
    --reg_node_learning_rate $RLLR \
    --max_steps $TOTAL \
    --warmup_steps 200 \
    --save_steps 512 \
    --logging_steps 8 \
    --save_total_limit 1 \
    --start_edge_sparsity 0.0 \
    --target_edge_sparsity $EDGE_SPARSITY \
    --start_node_sparsity 0.0 \
    --target_node_sparsity $NODE_SPARSITY \
    --num_sparsity_warmup_steps $WARMUP \
    --warmup_type linear \
    --dataloader_num_workers 0 \
    --bf16 \
    --gradient_checkpointing \
    --seed $SEED \
    --disable_node_loss
