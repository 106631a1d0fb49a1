"""Weight and neuron masks over a GPT-2 block's Conv1D layers, the base model frozen.

Two relaxations of a binary mask, as the method uses them:
- hard concrete (`edge_pruning.l0`): stochastic masks in training, the deterministic
  rule of Edge Pruning at evaluation (the k = round(expected zeros) smallest dropped);
- continuous sparsification (Savarese et al.): sigmoid(T · s) in training, T annealed
  each epoch towards a final value; the hard mask 1[s > 0] at evaluation.

A mask covers every weight (`weight`) or every output unit of a layer (`neuron`: one
mask per column of the Conv1D weight, as the original's neuron masks). Biases are
never masked.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn

from .. import l0


class MaskMethod(str, Enum):
    CONTINUOUS = "continuous_sparsification"
    HARD_CONCRETE = "hard_concrete"


class MaskUnit(str, Enum):
    WEIGHT = "weight"
    NEURON = "neuron"


class MaskedConv1D(nn.Module):
    """A frozen transformers Conv1D (y = x W + b, W: in x out) whose weight is
    multiplied by a mask. State read at forward time:
    `use_mask` (False: the plain layer), `ablate` (True: the complement of the hard
    mask, i.e. the found weights removed), `override` (an explicit 0/1 mask)."""

    def __init__(self, base: nn.Module, method: MaskMethod, unit: MaskUnit, init: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.method, self.unit = MaskMethod(method), MaskUnit(unit)
        shape = tuple(base.weight.shape) if self.unit is MaskUnit.WEIGHT else (1, base.weight.shape[1])
        self.mask_params = nn.Parameter(torch.full(shape, float(init)))
        self.temperature = 1.0
        self.use_mask = True
        self.ablate = False
        self.override: torch.Tensor | None = None

    @property
    def weights_per_unit(self) -> int:
        return self.base.weight.numel() // self.mask_params.numel()

    def soft_mask(self) -> torch.Tensor:
        """The training-time mask (differentiable)."""
        if self.method is MaskMethod.CONTINUOUS:
            return torch.sigmoid(self.temperature * self.mask_params)
        return l0.sample_mask(self.mask_params)

    def hard_mask(self) -> torch.Tensor:
        """The 0/1 mask of the found circuit, in the shape of `mask_params`."""
        with torch.no_grad():
            if self.method is MaskMethod.CONTINUOUS:
                return (self.mask_params > 0).float()
            return (l0.deterministic_mask(self.mask_params) > 0).float()

    def expected_l0(self) -> torch.Tensor:
        """The penalised size, counted in weights (a neuron counts its whole column)."""
        if self.method is MaskMethod.CONTINUOUS:
            kept = torch.sigmoid(self.temperature * self.mask_params)
        else:
            kept = l0.prob_nonzero(self.mask_params)
        return kept.sum() * self.weights_per_unit

    def current_mask(self) -> torch.Tensor | None:
        if not self.use_mask:
            return None
        if self.override is not None:
            mask = self.override
        elif self.training:
            mask = self.soft_mask()
        else:
            mask = self.hard_mask()
        if self.ablate:
            mask = 1.0 - mask
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.current_mask()
        weight = self.base.weight if mask is None else self.base.weight * mask
        out = torch.addmm(self.base.bias, x.reshape(-1, x.shape[-1]), weight)
        return out.view(*x.shape[:-1], weight.shape[1])
