#!/bin/bash
# GPU check of pruning under FSDP2: NCCL, bf16 mixed precision, gradient checkpointing and
# full-state-dict saving, with run_scripts/fsdp_configs/fsdp_gpu_bf16.yaml, on a tiny random
# FLlama (SmolLM2 vocabulary) pruned for IOI for a few steps. One node, NGPUS GPUs
# (default: all; one works too, as FSDP over a single rank).
#
#   bash run_scripts/check_fsdp_gpu.sh
#   NGPUS=2 bash run_scripts/check_fsdp_gpu.sh
#
# It runs the same steps on one GPU with the global batch (the same seed gives every rank
# the same mask noise), then checks: the ranks hold identical fp32 masks; the first losses
# agree; the saved model loads with FLlamaForCausalLM.from_pretrained, weights in bf16 and
# masks in fp32. Prints the losses, step times and peak GPU memory.

set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f .venv/bin/activate ]]; then source .venv/bin/activate; fi
NGPUS=${NGPUS:-$(nvidia-smi -L | wc -l)}
WORK=${WORK:-$(mktemp -d)}
PER_GPU=2
echo "work dir $WORK, $NGPUS GPU(s)"

if [[ ! -f data/models/smollm2-135m/tokenizer.json ]]; then python -m edge_pruning.smollm2; fi
python -c "import sys; sys.path.insert(0, 'tests'); from fsdp_prune import make_tiny_fllama; \
make_tiny_fllama(sys.argv[1], layers=4, hidden=256, heads=8, kv_heads=4)" "$WORK/model"

COMMON=(
    --initialize_from "$WORK/model" --max_steps 4 --logging_steps 1 --save_steps 2
    --report_to none --max_train_samples 64 --max_eval_samples 16 --target_edge_sparsity 0.9
    --seed 7 --bf16 --gradient_checkpointing --keep_masks
    --edge_learning_rate 0.8 --node_learning_rate 0.8 --reg_edge_learning_rate 0.8 --reg_node_learning_rate 0.8
    --target_node_sparsity 0.7
)
python tests/fsdp_prune.py "${COMMON[@]}" --per_device_train_batch_size $(( PER_GPU * NGPUS )) \
    --output_dir "$WORK/single"
accelerate launch --config_file run_scripts/fsdp_configs/fsdp_gpu_bf16.yaml \
    --num_machines 1 --num_processes "$NGPUS" --machine_rank 0 --main_process_port "${MASTER_PORT:-29547}" \
    tests/fsdp_prune.py "${COMMON[@]}" --per_device_train_batch_size "$PER_GPU" --output_dir "$WORK/fsdp"

python - "$WORK" "$NGPUS" <<'PY'
import json, sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from modeling.modeling_fllama import FLlamaForCausalLM

work, ngpus = Path(sys.argv[1]), int(sys.argv[2])


def log(run):
    return [json.loads(line) for line in (work / run / "log.jsonl").read_text().splitlines()]


def losses(run):
    return {x["step"]: x["loss"] for x in log(run) if "loss" in x}


single, fsdp = losses("single"), losses("fsdp")
for step in sorted(fsdp):
    print(f"step {step}: loss single GPU {single[step]:.6f}   FSDP x{ngpus} {fsdp[step]:.6f}")
for run in ("single", "fsdp"):
    summary = next(x for x in log(run) if "train_runtime" in x)
    print(f"{run}: {summary['train_runtime'] / max(losses(run)):.3f} s/step")
assert abs(fsdp[1] - single[1]) <= 2e-2 * abs(single[1]), "first-step losses differ"

ranks = [torch.load(work / "fsdp" / f"rank{r}.pt") for r in range(ngpus)]
peak = torch.load(work / "single" / "rank0.pt")["peak_memory"]
print(f"peak GPU memory: single {peak / 2**20:.0f} MiB, FSDP ranks", [f"{r['peak_memory'] / 2**20:.0f} MiB" for r in ranks])
assert all(r["sharded"] for r in ranks), "the model was not sharded"
assert all(all(r["checkpointed"]) for r in ranks), "gradient checkpointing was off"
for name, value in ranks[0]["masks"].items():
    assert value.dtype == torch.float32, name
    assert all(torch.equal(value, r["masks"][name]) for r in ranks), f"ranks disagree on {name}"

saved = load_file(work / "fsdp" / "model.safetensors")
assert saved["model.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16
assert all(v.dtype == torch.float32 for k, v in saved.items() if ".circuit_masks." in k)
model = FLlamaForCausalLM.from_pretrained(work / "fsdp", dtype=torch.float32)
for name, value in ranks[0]["masks"].items():
    assert torch.equal(model.circuit_masks.get_parameter(name), value), name
print(json.loads((work / "fsdp" / "eval_results.json").read_text())["circuit"])
print("FSDP GPU check passed")
PY
