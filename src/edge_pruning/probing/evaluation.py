"""How a probe is judged (the original's evaluation):

- 1-nearest-neighbour accuracy (cosine) of the masked block's updates on held-out
  data, the references drawn `per_class` per label from the probe's training data
  (the original: one), against the majority class and the unmasked block;
- the causal test: the task's accuracy with the found weights removed, against
  random masks of the same size drawn from the remaining weights of each layer;
- the overlap of two circuits, against the overlap of random masks of their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .probe import CircuitProbe


@torch.no_grad()
def block_updates(probe: CircuitProbe, inputs: torch.Tensor, position: int, batch_size: int = 4096) -> torch.Tensor:
    probe.train(False)
    return torch.cat([probe.updates(inputs[i : i + batch_size], position) for i in range(0, len(inputs), batch_size)])


@dataclass
class KnnResult:
    accuracy: float  # on the held-out split
    majority: float  # the training data's most frequent label, on the held-out split
    n_references: int


def nearest_neighbour_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    per_class: int | None = 1, seed: int = 0,
) -> KnnResult:  # fmt: skip
    """1-NN (cosine) with references drawn `per_class` per label (None: all training data)."""
    if per_class is not None:
        g = torch.Generator().manual_seed(seed)
        picks = []
        for label in torch.unique(train_y):
            members = torch.nonzero(train_y == label).flatten()
            picks.append(members[torch.randperm(len(members), generator=g)[:per_class]])
        index = torch.cat(picks)
        ref_x, ref_y = train_x[index], train_y[index]
    else:
        ref_x, ref_y = train_x, train_y
    similarity = F.normalize(test_x.double(), dim=-1) @ F.normalize(ref_x.double(), dim=-1).T
    predicted = ref_y[similarity.argmax(1)]
    majority = torch.mode(train_y).values
    return KnnResult(
        accuracy=float((predicted == test_y).double().mean()),
        majority=float((test_y == majority).double().mean()),
        n_references=len(ref_y),
    )


@torch.no_grad()
def task_accuracy(probe: CircuitProbe, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 4096) -> float:
    """Share of inputs whose last-position argmax is the label, under the probe's current state."""
    probe.train(False)
    correct = 0
    for i in range(0, len(inputs), batch_size):
        correct += int((probe(inputs[i : i + batch_size]).argmax(-1) == labels[i : i + batch_size]).sum())
    return correct / max(len(labels), 1)


def random_complement_masks(circuit: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor] | None:
    """Keep-masks that remove, from each layer, as many weights as its circuit holds,
    drawn from the weights outside the circuit; None when a layer's circuit is
    larger than the rest of it (no such mask exists)."""
    out = {}
    for name, mask in circuit.items():
        flat = mask.flatten()
        size = int(flat.sum())
        outside = torch.nonzero(flat == 0).flatten()
        if size > len(outside):
            return None
        keep = torch.ones_like(flat)
        keep[outside[torch.randperm(len(outside), generator=generator)[:size]]] = 0.0
        out[name] = keep.view_as(mask)
    return out


@dataclass
class AblationResult:
    vanilla: float  # the model as trained
    ablated: float  # the circuit removed
    random_ablated: list[float]  # random masks of the same size removed (empty: none exist)
    per_layer: dict[str, float]  # the circuit removed from one layer only (the original's ablate sets)

    @property
    def random_mean(self) -> float | None:
        return sum(self.random_ablated) / len(self.random_ablated) if self.random_ablated else None


def ablation_test(probe: CircuitProbe, inputs: torch.Tensor, labels: torch.Tensor, n_random: int = 5, seed: int = 0) -> AblationResult:
    with probe.state(use_mask=False):
        vanilla = task_accuracy(probe, inputs, labels)
    with probe.state(ablate=True):
        ablated = task_accuracy(probe, inputs, labels)
    g = torch.Generator().manual_seed(seed)
    circuit = probe.circuit()
    randoms = []
    for _ in range(n_random):
        masks = random_complement_masks(circuit, g)
        if masks is None:
            break
        with probe.state(override=masks):
            randoms.append(task_accuracy(probe, inputs, labels))
    per_layer = {}
    for name, _ in probe.layers():
        with probe.state(ablate=True, only=name):
            per_layer[name] = task_accuracy(probe, inputs, labels)
    return AblationResult(vanilla, ablated, randoms, per_layer)


@dataclass
class Overlap:
    size_a: int
    size_b: int
    shared: int
    chance: float  # expected shared weights of two random masks of these sizes
    total: int  # weights both circuits are drawn from

    @property
    def ratio_to_chance(self) -> float | None:
        return self.shared / self.chance if self.chance > 0 else None


def circuit_overlap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> Overlap:
    """Shared weights of two circuits over the same layers; chance is Σ_layers k_a k_b / n."""
    if set(a) != set(b):
        raise ValueError(f"circuits over different layers: {sorted(a)} vs {sorted(b)}")
    shared = sum(int((a[k].bool() & b[k].bool()).sum()) for k in a)
    chance = sum(float(a[k].sum()) * float(b[k].sum()) / a[k].numel() for k in a)
    return Overlap(
        size_a=sum(int(a[k].sum()) for k in a), size_b=sum(int(b[k].sum()) for k in b),
        shared=shared, chance=chance, total=sum(a[k].numel() for k in a),
    )  # fmt: skip
