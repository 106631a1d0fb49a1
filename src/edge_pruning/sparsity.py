"""Warm-up schedules for the sparsity targets of the Lagrangian penalty (method.md §4)."""

from __future__ import annotations

import math

WARMUP_TYPES = ("linear", "logarithmic")


def check_schedule(start: float, target: float, warmup_type: str, what: str = "edge") -> None:
    """Reject settings that cannot be scheduled, naming the flag at fault."""
    if warmup_type not in WARMUP_TYPES:
        raise ValueError(f"--warmup_type must be one of {WARMUP_TYPES}, got {warmup_type!r}")
    if not 0.0 <= start < 1.0:
        raise ValueError(f"--start_{what}_sparsity must be in [0, 1), got {start}")
    if target < 0.0:
        raise ValueError(f"--target_{what}_sparsity must be >= 0, got {target}")
    if warmup_type == "logarithmic" and target >= 1.0:
        raise ValueError(
            f"--warmup_type logarithmic interpolates log(1 - sparsity) and needs --target_{what}_sparsity < 1 "
            f"(got {target}); use --warmup_type linear for targets of 1 or more"
        )


def target_at_step(start: float, target: float, step: int, warmup_steps: int, warmup_type: str = "linear") -> float:
    """The sparsity target after `step` optimizer steps.

    Linear: start + (target - start) * f. Logarithmic: 1 - s moves geometrically,
    log(1 - s) = (1 - f) log(1 - start) + f log(1 - target). f = step / warmup_steps,
    capped at 1. Targets above 1 are allowed (linear only) to push as sparse as
    possible.
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return target
    frac = step / warmup_steps
    if warmup_type == "linear":
        return start + (target - start) * frac
    if warmup_type == "logarithmic":
        log_keep = (1 - frac) * math.log(1 - start) + frac * math.log(1 - target)
        return 1 - math.exp(log_keep)
    raise ValueError(f"unknown warm-up type {warmup_type!r}")
