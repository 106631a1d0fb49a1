# Sourced by launch_fllama_{instr,fs}_prune.sh, from the repository root.
#
# fsdp_launch SCRIPT ARGS... runs SCRIPT under `accelerate launch` with FSDP2
# ($FSDP_CONFIG, default run_scripts/fsdp_configs/fsdp_gpu_bf16.yaml):
# - inside a SLURM job: one srun task per node, each starting that node's GPUs; rank 0's
#   host is the rendezvous point and every node passes its own $SLURM_NODEID as machine rank;
# - otherwise (plain bash): every GPU of this machine, as machine 0 of 1.
# GPUS_PER_NODE and MASTER_PORT may be set to override the detected values.

FSDP_CONFIG=${FSDP_CONFIG:-run_scripts/fsdp_configs/fsdp_gpu_bf16.yaml}

fsdp_launch() {
    local nnodes=${SLURM_NNODES:-1}
    local gpus=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-}}
    if [[ -z $gpus ]] && command -v nvidia-smi >/dev/null; then
        gpus=$(nvidia-smi -L | wc -l)
    fi
    if (( ${gpus:-0} < 1 )); then
        echo "no GPU found; set GPUS_PER_NODE" >&2
        return 1
    fi
    local master_addr=127.0.0.1
    if [[ -n ${SLURM_JOB_NODELIST:-} ]]; then
        master_addr=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    fi
    # The same port on every node: derived from the job id, not drawn at random per node.
    local master_port=${MASTER_PORT:-$(( 20000 + ${SLURM_JOB_ID:-$$} % 20000 ))}
    local launch=(
        accelerate launch --config_file "$FSDP_CONFIG"
        --num_machines "$nnodes" --num_processes $(( nnodes * gpus ))
        --main_process_ip "$master_addr" --main_process_port "$master_port"
    )
    echo "nodes=$nnodes gpus/node=$gpus master=$master_addr:$master_port config=$FSDP_CONFIG"
    if [[ -n ${SLURM_JOB_ID:-} ]]; then
        # \$SLURM_NODEID is expanded by each node's own task, not here.
        srun --nodes="$nnodes" --ntasks="$nnodes" --ntasks-per-node=1 \
            --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" --kill-on-bad-exit=1 \
            bash -c "$(printf '%q ' "${launch[@]}") --machine_rank \$SLURM_NODEID $(printf '%q ' "$@")"
    else
        "${launch[@]}" --machine_rank 0 "$@"
    fi
}
