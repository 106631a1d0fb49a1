"""A circuit probe: masks over one GPT-2 block's attention (`c_attn` + `c_proj`) or
MLP (`c_fc` + `c_proj`) weights, and the block's residual update (the attention or
MLP output added to the stream) read at the labelled token positions."""

from __future__ import annotations

import contextlib
from enum import Enum
from typing import Iterator

import torch
from torch import nn

from .. import l0
from ..errors import UserError
from .masks import MaskedConv1D, MaskMethod, MaskUnit


class Operation(str, Enum):
    ATTN = "attn"
    MLP = "mlp"


MASKED_LAYERS = {Operation.ATTN: ("attn.c_attn", "attn.c_proj"), Operation.MLP: ("mlp.c_fc", "mlp.c_proj")}


def default_mask_init(method: MaskMethod) -> float:
    """The original's continuous-sparsification init (0: every mask at sigmoid(0) = 0.5);
    Edge Pruning's for hard concrete (log_alpha ~ 10: every mask on)."""
    return 0.0 if MaskMethod(method) is MaskMethod.CONTINUOUS else l0.INIT_MEAN


class CircuitProbe(nn.Module):
    """Wraps a GPT2LMHeadModel (frozen, modified in place) with masks on one block."""

    def __init__(
        self,
        model: nn.Module,
        layer: int,
        operation: Operation | str,
        method: MaskMethod | str = MaskMethod.CONTINUOUS,
        unit: MaskUnit | str = MaskUnit.NEURON,
        mask_init: float | None = None,
    ) -> None:
        super().__init__()
        blocks = model.transformer.h
        if not 0 <= layer < len(blocks):
            raise UserError(f"layer {layer} does not exist (the model has {len(blocks)})", "layer")
        self.model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.operation, self.layer = Operation(operation), layer
        init = default_mask_init(method) if mask_init is None else mask_init
        block = blocks[layer]
        self.masked = nn.ModuleDict()
        for path in MASKED_LAYERS[self.operation]:
            parent_name, name = path.split(".")
            parent = getattr(block, parent_name)
            current = getattr(parent, name)
            if isinstance(current, MaskedConv1D):
                raise UserError(f"block {layer} already carries a probe's masks", path)
            masked = MaskedConv1D(current, method, unit, init)
            setattr(parent, name, masked)
            self.masked[path.replace(".", "_")] = masked
        self._update: torch.Tensor | None = None
        target = block.attn if self.operation is Operation.ATTN else block.mlp
        target.register_forward_hook(self._keep_update)

    def _keep_update(self, module, args, output) -> None:
        self._update = output[0] if isinstance(output, tuple) else output

    def layers(self) -> Iterator[tuple[str, MaskedConv1D]]:
        yield from self.masked.items()

    def mask_parameters(self) -> list[nn.Parameter]:
        return [m.mask_params for _, m in self.layers()]

    def train(self, mode: bool = True) -> "CircuitProbe":
        """Only the masks switch between soft (training) and hard masks; the model's
        own modules stay in eval mode (it has no dropout, but a user's might)."""
        self.training = mode
        for _, m in self.layers():
            m.train(mode)
        return self

    # ------------------------------------------------------------------ forward

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Last-position logits of the (masked) model."""
        return self.model(input_ids).logits[:, -1]

    def updates(self, input_ids: torch.Tensor, position: int) -> torch.Tensor:
        """The block's residual update at token `position` of every input: (n, d)."""
        self.model.transformer(input_ids)
        return self._update[:, position]

    # ------------------------------------------------------------------ masks

    def set_temperature(self, value: float) -> None:
        for _, m in self.layers():
            m.temperature = value

    def expected_l0(self) -> torch.Tensor:
        return sum(m.expected_l0() for _, m in self.layers())

    def n_weights(self) -> int:
        return sum(m.base.weight.numel() for _, m in self.layers())

    def circuit(self) -> dict[str, torch.Tensor]:
        """The found circuit: a 0/1 mask per layer, expanded to the weight's shape."""
        return {name: m.hard_mask().expand_as(m.base.weight).clone() for name, m in self.layers()}

    @contextlib.contextmanager
    def state(self, use_mask: bool = True, ablate: bool = False, override: dict[str, torch.Tensor] | None = None,
              only: str | None = None):  # fmt: skip
        """Run with masks off, the circuit removed (`ablate`), or explicit masks; with
        `only`, in that layer alone (the others unmasked)."""
        saved = [(m.use_mask, m.ablate, m.override) for _, m in self.layers()]
        for name, m in self.layers():
            m.use_mask, m.ablate = use_mask and (only is None or name == only), ablate
            m.override = None if override is None else override[name]
        try:
            yield self
        finally:
            for (_, m), (use, abl, ovr) in zip(self.layers(), saved):
                m.use_mask, m.ablate, m.override = use, abl, ovr
