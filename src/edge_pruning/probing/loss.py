"""The probe objective: the soft nearest-neighbour loss (Frosst et al., 2019) with
cosine distance and temperature 1, as the original computes it:

  L = -1/n Σ_i log[(Σ_{j≠i, y_j=y_i} e^{-d_ij} + ε) / (Σ_{j≠i} e^{-d_ij} + ε)],
  d_ij = 1 - cos(x_i, x_j), ε = 1e-5.

Low when every vector's nearest neighbours share its label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPSILON = 1e-5


def cosine_distances(x: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(x, dim=-1)
    return 1.0 - unit @ unit.T


def soft_nearest_neighbour_loss(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """x: (n, d) vectors, labels: (n,) class ids."""
    if x.shape[0] != labels.shape[0]:
        raise ValueError(f"{x.shape[0]} vectors but {labels.shape[0]} labels")
    similarity = torch.exp(-cosine_distances(x))
    others = ~torch.eye(len(labels), dtype=torch.bool, device=x.device)
    same = (labels[:, None] == labels[None, :]) & others
    numerator = (similarity * same).sum(1) + EPSILON
    denominator = (similarity * others).sum(1) + EPSILON
    return -torch.log(numerator / denominator).mean()
