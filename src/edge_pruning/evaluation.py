"""The one evaluation loop: threshold search, then circuit vs full-model metrics."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from . import l0
from .tasks import Encoded, Task, collate

logger = logging.getLogger(__name__)


@dataclass
class CircuitEvaluation:
    """Metrics of one circuit on one split, beside the full model's."""

    task: str
    split: str
    n_examples: int
    edge_sparsity: float
    node_sparsity: float
    # The original's "overall edge sparsity" (edges out of removed writers removed) and
    # our stricter one (edges into readers of removed nodes removed too).
    effective_edge_sparsity: float
    strict_edge_sparsity: float
    n_edges: int  # the original's count, as get_edges() and edges.json
    n_edges_total: int
    n_edges_strict: int
    n_edges_sanitized: int
    mask_rule: str = l0.MaskRule.ORIGINAL.value
    # Which definition each metric used (e.g. the greater-than metric for digit tokenizers).
    definitions: dict[str, str] = field(default_factory=dict)
    circuit: dict[str, float] = field(default_factory=dict)
    full_model: dict[str, float] = field(default_factory=dict)

    def to_json(self, path: str | os.PathLike) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=2)
        os.replace(tmp, path)

    def summary(self) -> str:
        lines = [
            f"task {self.task} ({self.split}, {self.n_examples} examples)",
            f"edges {self.n_edges} of {self.n_edges_total} (sparsity {self.edge_sparsity:.4f}, "
            f"overall {self.effective_edge_sparsity:.4f}; {self.n_edges_strict} strict, "
            f"{self.n_edges_sanitized} after sanitising), "
            f"node sparsity {self.node_sparsity:.4f}",
        ]
        for key, value in self.circuit.items():
            full = self.full_model.get(key)
            lines.append(f"  {key:>18}: circuit {value:.4f}" + ("" if full is None else f"   full model {full:.4f}"))
        return "\n".join(lines)


def set_thresholds_for_sparsity(model, edge_sparsity: float | None = None, node_sparsity: float | None = None) -> tuple[float, float]:
    """Binarise the masks at the requested sparsities, or at the model's own (its
    deterministic sparsity before binarising, method.md §5). Returns the sparsities
    reached.

    Under the original mask rule this is the original's search: bisection of each
    threshold on [0, 1] until the interval is under 1e-5, edges then nodes, keeping
    the last midpoint. Under the global rule the threshold keeps exactly the requested
    number of edges (ties aside).
    """
    for name, value in (("edge", edge_sparsity), ("node", node_sparsity)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"requested {name} sparsity must be in [0, 1], got {value}")
    model.set_edge_threshold_for_deterministic(None)
    model.set_node_threshold_for_deterministic(None)
    if edge_sparsity is None:
        edge_sparsity = model.get_edge_sparsity()
    if node_sparsity is None:
        node_sparsity = model.get_node_sparsity()
    masks = model.circuit_masks
    if masks.mask_rule is l0.MaskRule.ORIGINAL:
        bisect_threshold(model.set_edge_threshold_for_deterministic, model.get_edge_sparsity, edge_sparsity)
        bisect_threshold(model.set_node_threshold_for_deterministic, model.get_node_sparsity, node_sparsity)
    else:
        valid = masks.edge_valid
        edges = l0.soft_mask(masks.edge_log_alphas)[valid]
        nodes = l0.soft_mask(masks.node_log_alphas)
        keep_edges = round((1.0 - edge_sparsity) * edges.numel())
        keep_nodes = round((1.0 - node_sparsity) * nodes.numel())
        model.set_edge_threshold_for_deterministic(l0.threshold_for_keep_count(edges, keep_edges))
        model.set_node_threshold_for_deterministic(l0.threshold_for_keep_count(nodes, keep_nodes))
    return model.get_edge_sparsity(), model.get_node_sparsity()


def bisect_threshold(set_threshold, sparsity_at, target: float, tolerance: float = 1e-5) -> float:
    """The original's threshold search: halve [0, 1] towards `target` sparsity; the
    last midpoint stays set."""
    low, high = 0.0, 1.0
    threshold = 0.5
    while high - low > tolerance:
        threshold = (low + high) / 2
        set_threshold(threshold)
        if sparsity_at() > target:
            high = threshold
        else:
            low = threshold
    return threshold


def batches(examples: list[Encoded], batch_size: int, pad_id: int):
    for start in range(0, len(examples), batch_size):
        yield collate(examples[start : start + batch_size], pad_id)


def model_logits(model, batch: dict, circuit: bool, corr_x: torch.Tensor | None = None) -> torch.Tensor:
    """Logits at the scored positions, of the circuit or of the full model."""
    kwargs = dict(attention_mask=batch["attention_mask"], output_positions=batch["positions"])
    if circuit:
        return model(batch["input_ids"], corr_x=corr_x, **kwargs).logits
    with model.full_model():
        return model(batch["input_ids"], **kwargs).logits


def corrupted_states(model, batch: dict, ablation: str = "interchange", mean_states: torch.Tensor | None = None) -> torch.Tensor | None:
    """What removed edges carry: writer states of the corrupted input, their mean, or zero."""
    if ablation == "zero":
        return None
    if ablation == "mean":
        if mean_states is None:
            raise ValueError("mean ablation needs mean writer states")
        return mean_states
    with torch.no_grad():
        # Logits only at the scored positions: the states are what is wanted here.
        return model(
            batch["corr_input_ids"],
            attention_mask=batch["attention_mask"],
            output_positions=batch["positions"],
            output_writer_states=True,
        ).writer_states


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.no_grad()
def evaluate_circuit(
    model,
    task: Task,
    examples: list[Encoded],
    split: str,
    batch_size: int = 16,
    pad_id: int = 0,
    edge_sparsity: float | None = None,
    node_sparsity: float | None = None,
    ablation: str = "interchange",
    mean_states: torch.Tensor | None = None,
    search_thresholds: bool = True,
) -> CircuitEvaluation:
    """Binarise the circuit (threshold search) and compare it with the full model."""
    model.eval()
    if search_thresholds:
        set_thresholds_for_sparsity(model, edge_sparsity, node_sparsity)
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    for batch in tqdm(list(batches(examples, batch_size, pad_id)), desc=f"eval {task.name}", leave=False):
        batch = to_device(batch, device)
        corr_x = corrupted_states(model, batch, ablation, mean_states)
        circuit = model_logits(model, batch, circuit=True, corr_x=corr_x)
        full = model_logits(model, batch, circuit=False)
        for key, values in task.metrics(circuit, full, batch).items():
            sums[key] = sums.get(key, 0.0) + values.float().sum().item()
    n = len(examples)
    means = {k: v / n for k, v in sums.items()}
    circuit_metrics = {k: v for k, v in means.items() if not k.startswith("full_")}
    full_metrics = {k[len("full_") :]: v for k, v in means.items() if k.startswith("full_")}
    full_metrics.update(kl=0.0, exact_match=1.0)
    n_total = model.circuit_graph.n_edges
    n_edges, n_strict = len(model.get_edges()), len(model.get_edges("strict"))
    return CircuitEvaluation(
        task=task.name,
        split=split,
        n_examples=n,
        edge_sparsity=model.get_edge_sparsity(),
        node_sparsity=model.get_node_sparsity(),
        effective_edge_sparsity=1.0 - n_edges / n_total,
        strict_edge_sparsity=1.0 - n_strict / n_total,
        n_edges=n_edges,
        n_edges_total=n_total,
        n_edges_strict=n_strict,
        n_edges_sanitized=len(model.get_edges(sanitize=True)),
        mask_rule=model.circuit_masks.mask_rule.value,
        definitions=dict(task.definitions),
        circuit=circuit_metrics,
        full_model=full_metrics,
    )
