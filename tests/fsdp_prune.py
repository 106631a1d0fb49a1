"""`prune_main("fllama", "ioi")` for tests/test_fsdp.py and run_scripts/check_fsdp_gpu.sh,
run alone or under `accelerate launch`; after training, every rank saves its mask
parameters to `<output_dir>/rank<R>.pt`. `make_tiny_fllama` builds their model.

On CPU, accelerate 1.15 never turns FSDP on: `AcceleratorState` switches to FSDP only
for accelerator-backed process groups (MULTI_GPU, MULTI_XPU, ...), and a gloo run is
MULTI_CPU. `allow_fsdp_on_cpu` lifts that one check, so that the rest is accelerate's
and the Trainer's own FSDP2 path, exactly as on GPUs: `fsdp2_prepare_model` with the
auto-wrap policy of the YAML, the optimizer's parameter swap, full-state-dict saving.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
from torch.distributed.fsdp import FSDPModule
from transformers import TrainerCallback

from edge_pruning.pruning import prune_main

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "data" / "models" / "smollm2-135m"


def make_tiny_fllama(path: Path, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2) -> None:
    """A random FLlama with the SmolLM2 vocabulary, saved with its tokenizer. Masks start
    at log_alpha ~ N(1, 1): at the usual N(10, 0.01) every sampled mask is exactly 1 and
    the KL is 0, so runs could not be told apart by their losses."""
    from transformers import AutoTokenizer

    from modeling.modeling_fllama import FLlamaConfig, FLlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    torch.manual_seed(0)
    config = FLlamaConfig(
        num_hidden_layers=layers,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=len(tok),
        max_position_embeddings=128,
        initializer_range=0.2,
    )
    model = FLlamaForCausalLM(config)
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_(1.0, 1.0)
        model.circuit_masks.node_log_alphas.normal_(1.0, 1.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)


def allow_fsdp_on_cpu() -> None:
    """Let a gloo (MULTI_CPU) run use the FSDP plugin accelerate was launched with."""
    init = AcceleratorState.__init__

    @functools.wraps(init)
    def patched(self, *args, fsdp_plugin=None, **kwargs) -> None:
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does

    AcceleratorState.__init__ = patched


class SaveRankState(TrainerCallback):
    """At the end of training, each rank saves the mask parameters it holds, whether the
    model was sharded and its layers checkpointed, and its peak GPU memory (0 on CPU)."""

    def on_train_end(self, args, state, control, model=None, **kwargs) -> None:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        record = {
            "masks": {name: p.detach().cpu().clone() for name, p in model.circuit_masks.named_parameters()},
            "sharded": isinstance(model, FSDPModule),
            "checkpointed": [layer.gradient_checkpointing for layer in model.model.layers],
            "peak_memory": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0,
        }
        torch.save(record, Path(args.output_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    allow_fsdp_on_cpu()
    prune_main("fllama", "ioi", sys.argv[1:], callbacks=[SaveRankState()])
