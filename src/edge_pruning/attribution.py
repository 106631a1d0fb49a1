"""Edge attribution baselines on the circuit graph: EAP and EAP-IG.

All three score every edge with gradients of a task metric with respect to the
edge masks, using the same masked models, graph and interventions as Edge Pruning
(no second model implementation). With the kernel's
in_r = C_p + sum_w m_rw (x_w - c_w), the mask gradient is
dL/dm_rw = (x_w - c_w) . dL/d in_r, so:

- EAP (Syed et al. 2023): the gradient at m = 1 on the clean input. Removing edge e
  changes the metric by about -dL/dm_e.
- EAP-IG, inputs (Hanna et al. 2024): the input embeddings are interpolated from the
  corrupted to the clean input in `steps` steps; at each step the reader-input
  gradient is dotted with the *clean* delta x_w - c_w (through the kernel's
  `mask_grad_deltas`), and the results are averaged.
- EAP-IG, activations: integrated gradients along the straight path in mask space
  from all edges corrupted (m = 0) to the full model (m = 1), the midpoint rule over
  `steps` points. The scores then sum to about L(m = 1) - L(m = 0).

Scores are signed estimates of L(full) - L(without the edge); rank by magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .evaluation import to_device
from .tasks import Encoded, Task, collate

METHODS = ("eap", "eap-ig-inputs", "eap-ig-activations")


@dataclass
class EdgeScores:
    """Per-edge scores, dense over (readers, writers); zero where there is no edge."""

    method: str
    scores: torch.Tensor
    steps: int

    def edge_list(self, graph) -> list[tuple[str, str, float]]:
        rows, cols = torch.nonzero(graph.edge_valid, as_tuple=True)
        return [(graph.writers[c].name, graph.readers[r].name, float(self.scores[r, c])) for r, c in zip(rows.tolist(), cols.tolist())]


def _input_embeddings(model, input_ids: torch.Tensor) -> torch.Tensor:
    return model.get_input_embeddings()(input_ids)


def _metric(task: Task, model, batch: dict, corr_x, *, inputs_embeds=None, mask_grad_deltas=None) -> torch.Tensor:
    out = model(
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_positions=batch["positions"],
        corr_x=corr_x,
        inputs_embeds=inputs_embeds,
        mask_grad_deltas=mask_grad_deltas,
    )
    return task.attribution_metric(out.logits, batch).sum()


def edge_attribution(
    model,
    task: Task,
    examples: list[Encoded],
    method: str = "eap",
    steps: int = 5,
    batch_size: int = 8,
    pad_id: int = 0,
    show_progress: bool = True,
    ablation: str = "interchange",
) -> EdgeScores:
    """Scores of every edge, averaged over `examples`. `ablation` "zero" scores
    against zero ablation (Tracr models): corrupted states and embeddings are zero."""
    if ablation not in ("interchange", "zero"):
        raise ValueError(f"attribution supports interchange and zero ablation, not {ablation!r}")
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    graph = model.circuit_graph
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    valid = graph.edge_valid.to(device)
    total = torch.zeros(graph.n_readers, graph.n_writers, dtype=torch.float32, device=device)
    model.eval()
    batches = [collate(examples[i : i + batch_size], pad_id) for i in range(0, len(examples), batch_size)]
    for batch in tqdm(batches, desc=method, disable=not show_progress, leave=False):
        batch = to_device(batch, device)
        with torch.no_grad():
            corr_x = None
            if ablation == "interchange":
                corr_x = model(batch["corr_input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states
        if method == "eap":
            alphas = [1.0]
        elif method == "eap-ig-inputs":
            with torch.no_grad():
                clean_x = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states
                clean_deltas = clean_x if corr_x is None else clean_x - corr_x
                clean_emb = _input_embeddings(model, batch["input_ids"])
                corr_emb = torch.zeros_like(clean_emb) if corr_x is None else _input_embeddings(model, batch["corr_input_ids"])
            alphas = [k / steps for k in range(1, steps + 1)]
        else:
            alphas = [(k - 0.5) / steps for k in range(1, steps + 1)]
        grad_sum = torch.zeros_like(total)
        for alpha in alphas:
            kwargs = {}
            if method == "eap-ig-activations":
                masks = torch.full_like(total, alpha, dtype=dtype).requires_grad_()
            else:
                masks = torch.ones_like(total, dtype=dtype).requires_grad_()
            if method == "eap-ig-inputs":
                kwargs = dict(inputs_embeds=corr_emb + alpha * (clean_emb - corr_emb), mask_grad_deltas=clean_deltas)
            with model.masks_override(masks):
                metric = _metric(task, model, batch, corr_x, **kwargs)
            (grad,) = torch.autograd.grad(metric, masks)
            grad_sum += grad.float()
        total += grad_sum / len(alphas)
    return EdgeScores(method, (total / len(examples) * valid).cpu(), steps)
