"""Hard-concrete (L0) relaxation of binary masks (Louizos et al., 2018).

Every edge and node mask of a circuit model is one entry of a `log_alpha` tensor.
Training samples stochastic masks in [0, 1]; evaluation turns `log_alpha` into
deterministic masks, optionally binarised at a threshold. The constants match the
Edge Pruning paper and its code (method.md §3).
"""

from __future__ import annotations

import math
from enum import Enum

import torch

LIMIT_LEFT = -0.1
LIMIT_RIGHT = 1.1
TEMPERATURE = 2.0 / 3.0
EPS = 1e-6
INIT_MEAN = 10.0
INIT_STD = 0.01
# The deterministic mask sharpens log_alpha by this factor (as the original code did).
DETERMINISTIC_SCALE = 0.8


class MaskRule(str, Enum):
    """How evaluation turns log_alphas into deterministic masks and thresholds them.

    ORIGINAL (the default) is the original code's: the expected-zeros top-k is taken
    per mask tensor as it stores them (non-edge entries of a tensor included), in the
    masks' dtype, the threshold applies to the top-k-zeroed masks, and evaluation
    bisects the threshold on [0, 1] to 1e-5. GLOBAL is ours: one top-k over all real
    edges in float64, the threshold applies to the soft masks (so any sparsity can be
    asked for), and the search hits the requested keep count exactly.
    """

    ORIGINAL = "original"
    GLOBAL = "global"


class MaskSampler(str, Enum):
    """How training draws a mask from its log_alpha θ.

    HARD_CONCRETE (the default, the paper's): the stretched, clamped concrete sample.
    UGS (uniform gradient sampling, Li & Janson 2024, the mask method MIB ran): with
    p = sigmoid(θ), s = p (1 - p) and u ~ U(0, 1), z = 1 - clamp((u - p) / s + 1/2, 0, 1):
    1 below the window [p - s/2, p + s/2], 0 above it and linear inside, so that
    dz/dθ has expectation dp/dθ = s at every θ (an unbiased gradient of the Bernoulli(p)
    circuit's loss, to first order). Its masks start at θ = 1 (p = 0.73), as in Li &
    Janson's code: at the hard-concrete start θ = 10 the window is 5e-5 wide.
    """

    HARD_CONCRETE = "hard_concrete"
    UGS = "ugs"

    @classmethod
    def parse(cls, value: "MaskSampler | str") -> "MaskSampler":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"--mask_sampler must be hard_concrete or ugs, got {value!r}") from None

    @property
    def init_mean(self) -> float:
        """Where log_alpha starts (std INIT_STD)."""
        return INIT_MEAN if self is MaskSampler.HARD_CONCRETE else UGS_INIT_MEAN


UGS_INIT_MEAN = 1.0


# |log_alpha| above which a UGS mask is drawn as at the limit (p(1 - p) ~ 3e-7 there).
UGS_LOGIT_LIMIT = 15.0


def init_log_alpha_(log_alpha: torch.Tensor) -> torch.Tensor:
    """Start every mask near 1: log_alpha ~ N(10, 0.01)."""
    with torch.no_grad():
        return log_alpha.normal_(mean=INIT_MEAN, std=INIT_STD)


def sample_mask(log_alpha: torch.Tensor, sampler: MaskSampler = MaskSampler.HARD_CONCRETE) -> torch.Tensor:
    """A stochastic training mask with the reparameterisation trick."""
    if sampler is MaskSampler.UGS:
        return sample_ugs_mask(log_alpha, torch.rand_like(log_alpha))
    u = torch.empty_like(log_alpha).uniform_(EPS, 1.0 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / TEMPERATURE)
    return (s * (LIMIT_RIGHT - LIMIT_LEFT) + LIMIT_LEFT).clamp(0.0, 1.0)


def sample_ugs_mask(log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """UGS's mask for uniform draws `u` (see `MaskSampler`). log_alpha is clamped to
    ±UGS_LOGIT_LIMIT first: beyond it p(1 - p) is 0 in float32 and the division NaN."""
    p = torch.sigmoid(log_alpha.clamp(-UGS_LOGIT_LIMIT, UGS_LOGIT_LIMIT))
    return 1.0 - ((u - p) / (p * (1.0 - p)) + 0.5).clamp(0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor, sampler: MaskSampler = MaskSampler.HARD_CONCRETE) -> torch.Tensor:
    """P(z > 0) per mask: its sum is the expected L0 norm. UGS: P(u < p + p(1 - p)/2)."""
    if sampler is MaskSampler.UGS:
        p = torch.sigmoid(log_alpha)
        return (p + p * (1.0 - p) / 2).clamp(max=1.0)
    return torch.sigmoid(log_alpha - TEMPERATURE * math.log(-LIMIT_LEFT / LIMIT_RIGHT))


def soft_mask(log_alpha: torch.Tensor) -> torch.Tensor:
    """sigmoid(0.8 * log_alpha / beta), in float64: near 1, float32 would merge masks
    whose log_alphas differ, and no threshold could then separate them."""
    return torch.sigmoid(log_alpha.detach().double() / TEMPERATURE * DETERMINISTIC_SCALE)


def original_prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z > 0) as the original computes it: 1 - CDF(0), the CDF clamped to [eps, 1 - eps]."""
    x01 = -LIMIT_LEFT / (LIMIT_RIGHT - LIMIT_LEFT)
    cdf0 = torch.sigmoid(TEMPERATURE * (math.log(x01) - math.log(1 - x01)) - log_alpha)
    return 1.0 - cdf0.clamp(EPS, 1.0 - EPS)


def per_tensor_deterministic_mask(
    log_alpha: torch.Tensor, groups: list[slice], sampler: MaskSampler = MaskSampler.HARD_CONCRETE
) -> torch.Tensor:
    """The original's deterministic masks: per group of rows (one stored tensor each),
    sigmoid(0.8 log_alpha / beta) with its k smallest entries zeroed, k = round(expected
    zeros of the group, under `sampler`); computed in the masks' own dtype, as the
    original did."""
    with torch.no_grad():
        log_alpha = log_alpha.detach()
        out = torch.empty_like(log_alpha)
        for rows in groups:
            block = log_alpha[rows]
            soft = torch.sigmoid(block / TEMPERATURE * DETERMINISTIC_SCALE).flatten()
            kept = original_prob_nonzero(block) if sampler is MaskSampler.HARD_CONCRETE else prob_nonzero(block, sampler)
            zeros = int(torch.round(block.numel() - kept.sum()).item())
            if zeros > 0:
                soft[torch.topk(soft, zeros, largest=False).indices] = 0.0
            out[rows] = soft.view_as(block)
        return out


def deterministic_mask(
    log_alpha: torch.Tensor, valid: torch.Tensor | None = None, sampler: MaskSampler = MaskSampler.HARD_CONCRETE
) -> torch.Tensor:
    """The evaluation-time continuous mask: `soft_mask` with the k smallest entries
    set to zero, k = round(expected number of zeros). `valid` restricts the masks that
    count (a dense edge matrix holds entries that are not edges)."""
    with torch.no_grad():
        soft = soft_mask(log_alpha).flatten()
        keep = torch.ones_like(soft, dtype=torch.bool) if valid is None else valid.flatten()
        values = soft[keep]
        expected_zeros = int(round(values.numel() - prob_nonzero(log_alpha.detach().flatten()[keep].double(), sampler).sum().item()))
        if expected_zeros > 0:
            values[torch.topk(values, expected_zeros, largest=False).indices] = 0.0
        out = torch.zeros_like(soft)
        out[keep] = values
        return out.view_as(log_alpha)


def eval_mask(
    log_alpha: torch.Tensor,
    threshold: float | None,
    valid: torch.Tensor | None = None,
    rule: MaskRule = MaskRule.ORIGINAL,
    groups: list[slice] | None = None,
    sampler: MaskSampler = MaskSampler.HARD_CONCRETE,
) -> torch.Tensor:
    """The mask used in evaluation: continuous without a threshold, else 0/1.

    ORIGINAL thresholds the per-tensor top-k-zeroed masks (`groups`: the tensors'
    row ranges). GLOBAL thresholds `soft_mask` itself, so that any sparsity can be
    requested; at the model's own sparsity this keeps the same edges as thresholding
    the continuous mask (the zeroed entries are the smallest).
    """
    if rule is MaskRule.ORIGINAL:
        if groups is None:
            raise ValueError("the original mask rule needs the mask tensors' row groups")
        out = per_tensor_deterministic_mask(log_alpha, groups, sampler)
        if threshold is not None:
            out = (out > threshold).to(out.dtype)
    elif threshold is None:
        out = deterministic_mask(log_alpha, valid, sampler)
    else:
        out = (soft_mask(log_alpha) > threshold).double()
    if valid is not None:
        out = out * valid
    return out.to(log_alpha.dtype)


def threshold_for_keep_count(soft: torch.Tensor, keep: int) -> float:
    """A threshold that keeps exactly `keep` of the given soft masks (ties aside).

    The original code bisected the threshold to a tolerance of 1e-5; masks that all
    start near 1 often differ by less than that, so this searches the sorted values
    instead, which hits the requested count exactly unless values tie.
    """
    values = torch.sort(soft.detach().flatten().double(), descending=True).values
    n = values.numel()
    if not 0 <= keep <= n:
        raise ValueError(f"cannot keep {keep} of {n} masks")
    if keep == 0:
        return float(values[0].item()) if n else 0.0
    if keep == n:
        return -1.0  # soft masks are >= 0, so every one is kept
    # `soft > t` keeps exactly the values above the largest value left out.
    return float(values[keep].item())
