"""The fixed passes of a pruning run, computed once per training example.

Each step runs the full model twice on its batch: on the clean input for the reference
logits, and on the corrupted input for the writer states that removed edges carry.
Neither depends on the masks: the weights are frozen, no circuit model applies dropout,
and with the masks off (`full_model()`, `output_writer_states=True`) a forward draws no
random numbers. So both are functions of the example alone, and with 200 training
examples each comes back every 25 steps of batch 8. They are computed here once, in the
run's own forward (inside the Trainer's first step: on its device, under its mixed
precision), and each step reads its batch's rows.

Exactness: a step given the cached rows computes what it would have computed, bit for
bit, where the model's kernels give an example the same values whatever else is in its
batch and however far the batch is padded. At the SmolLM2-135M shape on the CPU (1
thread) single steps were bitwise equal; at tiny shapes (and in general on GPUs) the
per-step passes themselves differ in the last bits with the batch's length. Over a run,
last-bit differences can grow (the hard-concrete clamps and Adam's normalised steps
amplify them), so runs agree to rounding early and statistically later: bench/RESULTS.md
has both, and tests/test_cache.py states its tolerances. To reproduce the padded parts too, each
example's states are kept at every position up to the longest training example (a
padded position's state depends only on the example and the position: pad keys are
masked out), and its logits at as many scored positions as the example with most, the
extra slots holding position 0's logits, as `gather_positions` gives for -1.

Not cached (logged): under FSDP, where every forward is collective and the ranks hold
different batches; with --no_cache_fixed_passes; when over the budget.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psutil
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..ablation import Ablation
from ..evaluation import corrupted_states, model_logits
from ..tasks import Batch, Encoded, collate

logger = logging.getLogger("edge_pruning")

# The default budget: this share of the training device's free memory when the cache is built.
DEFAULT_BUDGET_SHARE = 0.5


@dataclass(frozen=True)
class FixedPasses:
    """One batch's fixed passes: the full model's logits at the scored positions
    (B, P, V) and the corrupted writer states (W, B, S, D), None unless interchange
    ablation (zero and mean ablation need no forward)."""

    full_logits: torch.Tensor
    corr_x: torch.Tensor | None


class FixedPassCache:
    """Every training example's fixed passes, looked up by the example's index."""

    def __init__(self, logits: torch.Tensor, states: torch.Tensor | None) -> None:
        self.logits = logits  # (N, P_max, V)
        self.states = states  # (W, N, L, D) or None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.logits, self.states) if t is not None)

    def lookup(self, index: torch.Tensor, batch: Batch) -> FixedPasses:
        """The rows of the examples `index` (B,), cut to the batch's length and positions."""
        idx = index.to(self.logits.device)
        length, n_positions = batch.input_ids.shape[1], batch.positions.shape[1]
        device = batch.input_ids.device
        full = self.logits[idx, :n_positions].to(device)
        corr = None if self.states is None else self.states[:, idx, :length].to(device)
        return FixedPasses(full, corr)


def default_budget_bytes(device: torch.device) -> int:
    """DEFAULT_BUDGET_SHARE of the device's free memory now (CUDA: the driver's free
    memory; otherwise the system's available memory)."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = psutil.virtual_memory().available
    return int(free * DEFAULT_BUDGET_SHARE)


def _padded(batch: Batch, length: int, n_positions: int, pad_id: int) -> Batch:
    """`batch` padded on the right to `length` tokens and `n_positions` scored positions,
    as `collate` pads a batch holding a longer example."""
    extra, extra_p = length - batch.input_ids.shape[1], n_positions - batch.positions.shape[1]
    positions = F.pad(batch.positions, (0, extra_p), value=-1)
    return Batch(
        input_ids=F.pad(batch.input_ids, (0, extra), value=pad_id),
        corr_input_ids=F.pad(batch.corr_input_ids, (0, extra), value=pad_id),
        attention_mask=F.pad(batch.attention_mask, (0, extra), value=0),
        positions=positions,
        targets=F.pad(batch.targets, (0, extra_p), value=-1),
        distractor=batch.distractor,
        position_valid=positions >= 0,
        start_yy=batch.start_yy,
        year_tokens=batch.year_tokens,
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@torch.no_grad()
def build_fixed_pass_cache(
    model,
    examples: list[Encoded],
    pad_id: int,
    ablation: Ablation,
    batch_size: int,
    budget_bytes: int,
    states_dtype: torch.dtype | None = None,
) -> FixedPassCache | None:
    """The fixed passes of `examples` through `model` (the reference), or None when they
    do not fit `budget_bytes` (logged, with the size they need). `states_dtype` stores
    the states in another dtype (bf16: half the memory, no longer exact)."""
    if not examples:
        return None
    device = next(model.parameters()).device
    length = max(len(e.input_ids) for e in examples)
    n_positions = max(len(e.positions) for e in examples)
    interchange = ablation is Ablation.INTERCHANGE
    logits = states = None
    start = time.perf_counter()
    chunks = range(0, len(examples), batch_size)
    for lo in tqdm(chunks, desc="fixed passes", leave=False):
        chunk = examples[lo : lo + batch_size]
        batch = _padded(collate(chunk, pad_id), length, n_positions, pad_id).to(device)
        full = model_logits(model, batch, circuit=False)
        corr = corrupted_states(model, batch, ablation) if interchange else None
        if logits is None:
            need = full[0].numel() * full.element_size() * len(examples)
            if corr is not None:
                item = corr.element_size() if states_dtype is None else torch.empty((), dtype=states_dtype).element_size()
                need += corr[:, 0].numel() * item * len(examples)
            if need > budget_bytes:
                logger.info(
                    f"fixed passes not cached: they need {_gib(need)}, over the budget of {_gib(budget_bytes)} "
                    "(--fixed_pass_cache_gib); computing them every step"
                )
                return None
            logits = full.new_empty((len(examples), *full.shape[1:]))
            if corr is not None:
                W, _, _, D = corr.shape
                states = corr.new_empty((W, len(examples), length, D), dtype=states_dtype or corr.dtype)
        logits[lo : lo + len(chunk)] = full
        if states is not None:
            states[:, lo : lo + len(chunk)] = corr
    cache = FixedPassCache(logits, states)
    what = f"reference logits {tuple(logits.shape)} {logits.dtype}"
    if states is not None:
        what += f", corrupted writer states {tuple(states.shape)} {states.dtype}"
    logger.info(
        f"fixed passes cached for {len(examples)} training examples in {time.perf_counter() - start:.1f} s: "
        f"{what}; {_gib(cache.nbytes)} of the {_gib(budget_bytes)} budget"
    )
    return cache
