"""Training a circuit probe: AdamW on the mask parameters only, the soft
nearest-neighbour loss on the block's updates plus an L0 penalty, shuffled batches
(the last partial batch dropped, as the original). Continuous-sparsification masks
have their temperature multiplied by max_temp^(1/epochs) after each epoch.

The penalty is λ · L0 (the original's) or, with a target sparsity t, our Lagrangian
λ1 (s - t) + λ2 (s - t)² with s = 1 - L0 / n and the λs trained to maximise it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .loss import soft_nearest_neighbour_loss
from .masks import MaskMethod
from .probe import CircuitProbe

logger = logging.getLogger(__name__)


@dataclass
class FitSettings:
    epochs: int = 90
    batch_size: int = 500
    lr: float = 1e-3
    l0_lambda: float = 1e-6
    max_temp: float = 200.0
    target_sparsity: float | None = None  # set: the Lagrangian instead of λ · L0
    reg_lr: float = 0.01
    seed: int = 0


@dataclass
class FitLog:
    epoch: int
    loss: float
    l0: float
    temperature: float


def sparsity_penalty(probe: CircuitProbe, s: FitSettings, lambdas: torch.Tensor | None) -> torch.Tensor:
    l0_norm = probe.expected_l0()
    if s.target_sparsity is None:
        return s.l0_lambda * l0_norm
    gap = (1.0 - l0_norm / probe.n_weights()) - s.target_sparsity
    return lambdas[0] * gap + lambdas[1] * gap * gap


def fit_probe(probe: CircuitProbe, inputs: torch.Tensor, labels: torch.Tensor, position: int, s: FitSettings) -> list[FitLog]:
    """Train the masks of `probe` on (inputs, labels); returns one log row per epoch."""
    g = torch.Generator().manual_seed(s.seed)
    lambdas = torch.zeros(2, requires_grad=True) if s.target_sparsity is not None else None
    groups = [{"params": probe.mask_parameters(), "lr": s.lr}]
    if lambdas is not None:
        groups.append({"params": [lambdas], "lr": s.reg_lr, "maximize": True, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=s.lr)
    continuous = all(m.method is MaskMethod.CONTINUOUS for _, m in probe.layers())
    temperature, step_up = 1.0, s.max_temp ** (1.0 / max(s.epochs, 1))
    probe.set_temperature(temperature)
    n_batches = max(len(labels) // s.batch_size, 1)
    history = []
    probe.train()
    for epoch in tqdm(range(s.epochs), desc="probe", leave=False):
        order = torch.randperm(len(labels), generator=g)
        losses = []
        for i in range(n_batches):
            idx = order[i * s.batch_size : (i + 1) * s.batch_size]
            loss = soft_nearest_neighbour_loss(probe.updates(inputs[idx], position), labels[idx])
            loss = loss + sparsity_penalty(probe, s, lambdas)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        with torch.no_grad():
            row = FitLog(epoch, sum(losses) / len(losses), float(probe.expected_l0()), temperature)
        history.append(row)
        logger.debug("%s", row)
        if continuous:
            temperature *= step_up
            probe.set_temperature(temperature)
    probe.train(False)
    return history
