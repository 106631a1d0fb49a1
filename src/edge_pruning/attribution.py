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

- Clean-corrupted (EAP-IG's menu): the gradients at the clean and at the corrupted
  input (the two ends of the inputs path) averaged, dotted with the clean delta.

Scores are signed estimates of L(full) - L(without the edge); rank by magnitude.

The rest of EAP-IG's menu, on the same masks: node scores (a writer's node mask
multiplies all its edges, so its gradient is the sum of its edges'), node circuits;
neuron scores, the gradient of per-dimension writer masks (`neuron_masks_override`:
a removed neuron carries its corrupted value), and neuron circuits; information flow
routes (Ferrando & Voita 2024: gradient-free, from the full model's writer outputs);
mean-positional ablation (`ablation.mean_writer_states(per_position=True)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .evaluation import to_device
from .tasks import Encoded, Task, collate

METHODS = ("eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted", "information-flow-routes")
# Ablations scores can be taken against; the mean ones need `mean_states`.
ATTRIBUTION_ABLATIONS = ("interchange", "zero", "mean", "mean-positional")


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


def baseline_states(model, batch: dict, ablation: str, mean_states: torch.Tensor | None) -> torch.Tensor | None:
    """What a removed edge carries for this batch: corrupted writer states (interchange),
    None (zero), the writers' means, or their per-position means cut to the batch length."""
    if ablation == "zero":
        return None
    if ablation in ("mean", "mean-positional"):
        if mean_states is None:
            raise ValueError(f"{ablation} ablation needs mean writer states (ablation.mean_writer_states)")
        return positional_slice(mean_states, batch["input_ids"].shape[1]) if ablation == "mean-positional" else mean_states
    return model(batch["corr_input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states


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
    mean_states: torch.Tensor | None = None,
) -> EdgeScores:
    """Scores of every edge, averaged over `examples`. `ablation` "zero" scores
    against zero ablation (Tracr models): corrupted states and embeddings are zero;
    "mean" / "mean-positional" against the writers' (per-position) means, for the
    methods that do not interpolate inputs (as EAP-IG allows)."""
    if ablation not in ATTRIBUTION_ABLATIONS:
        raise ValueError(f"attribution supports {', '.join(ATTRIBUTION_ABLATIONS)} ablation, not {ablation!r}")
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    if method in ("eap-ig-inputs", "clean-corrupted") and ablation.startswith("mean"):
        raise ValueError(f"{method} interpolates inputs: it needs interchange or zero ablation, not {ablation}")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if method == "information-flow-routes":
        return information_flow_routes(model, examples, batch_size, pad_id, show_progress)
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
            corr_x = baseline_states(model, batch, ablation, mean_states)
        if method == "eap":
            alphas = [1.0]
        elif method in ("eap-ig-inputs", "clean-corrupted"):
            with torch.no_grad():
                clean_x = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states
                clean_deltas = clean_x if corr_x is None else clean_x - corr_x
                clean_emb = _input_embeddings(model, batch["input_ids"])
                corr_emb = torch.zeros_like(clean_emb) if corr_x is None else _input_embeddings(model, batch["corr_input_ids"])
            alphas = [0.0, 1.0] if method == "clean-corrupted" else [k / steps for k in range(1, steps + 1)]
        else:
            alphas = [(k - 0.5) / steps for k in range(1, steps + 1)]
        grad_sum = torch.zeros_like(total)
        for alpha in alphas:
            kwargs = {}
            if method == "eap-ig-activations":
                masks = torch.full_like(total, alpha, dtype=dtype).requires_grad_()
            else:
                masks = torch.ones_like(total, dtype=dtype).requires_grad_()
            if method in ("eap-ig-inputs", "clean-corrupted"):
                kwargs = dict(inputs_embeds=corr_emb + alpha * (clean_emb - corr_emb), mask_grad_deltas=clean_deltas)
            with model.masks_override(masks):
                metric = _metric(task, model, batch, corr_x, **kwargs)
            (grad,) = torch.autograd.grad(metric, masks)
            grad_sum += grad.float()
        total += grad_sum / len(alphas)
    return EdgeScores(method, (total / len(examples) * valid).cpu(), steps)


def positional_slice(mean_states: torch.Tensor, length: int) -> torch.Tensor:
    """Per-position means (W, 1, S_max, D) for a batch of `length` positions."""
    if mean_states.shape[2] < length:
        raise ValueError(f"per-position means cover {mean_states.shape[2]} positions, the batch has {length}")
    return mean_states[:, :, :length]


@torch.no_grad()
def information_flow_routes(model, examples: list[Encoded], batch_size: int = 8, pad_id: int = 0, show_progress: bool = True) -> EdgeScores:
    """Information flow routes (Ferrando & Voita 2024), as EAP-IG computes them: on the
    clean input, the importance of writer w to a reader whose input is z = Σ_w' x_w' is
    max(0, |z|_1 - |z - x_w|_1), normalised over the writers before the reader, averaged
    over the real positions and then over examples. In the full model every reader of
    a site reads the same residual, so a site's readers share their scores. Embeddings
    that are not nodes are part of z but score nothing."""
    graph = model.circuit_graph
    device = next(model.parameters()).device
    total = torch.zeros(graph.n_readers, graph.n_writers, dtype=torch.float32)
    model.eval()
    for start in tqdm(range(0, len(examples), batch_size), desc="information-flow-routes", disable=not show_progress, leave=False):
        batch = to_device(collate(examples[start : start + batch_size], pad_id), device)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        states = model(ids, attention_mask=mask, output_writer_states=True).writer_states.float()  # (W, B, S, D)
        base = torch.zeros_like(states[0]) if graph.writers[0].kind == "embed" else _always_on(model, ids).float()
        cumulative = base + torch.cumsum(states, 0)
        real = mask.float()
        for site in graph.sites:
            p = site.n_writers_before
            if p == 0:
                continue
            z = cumulative[p - 1]  # (B, S, D)
            proximity = (z.abs().sum(-1)[None] - (z[None] - states[:p]).abs().sum(-1)).clamp(min=0)  # (p, B, S)
            importance = proximity / proximity.sum(0, keepdim=True).clamp(min=1e-30)
            per_example = (importance * real[None]).sum(-1) / real.sum(-1)[None]  # (p, B)
            total[site.reader_start : site.reader_stop, :p] += per_example.sum(1).cpu()[None, :]
    return EdgeScores("information-flow-routes", total / len(examples) * graph.edge_valid, 0)


def _always_on(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The embeddings' sum, when they are not writers (every reader reads it)."""
    base = model.base_model if hasattr(model, "base_model") else model
    embeds = base.embed(input_ids, None, torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0))
    return sum(embeds[1:], embeds[0])


@dataclass
class NodeScores:
    """Per-writer scores: the gradient of the writer's node mask (signed)."""

    method: str
    scores: torch.Tensor  # (writers,)


def node_scores(edge_scores: EdgeScores) -> NodeScores:
    """A node mask z_w multiplies every edge out of w (m_rw z_w), so at the edge masks
    dL/dz_w = Σ_r dL/dm_rw: the column sums. For IG over activations the node path
    (all z from 0 to 1) is the edge path, so the same holds there."""
    return NodeScores(edge_scores.method, edge_scores.scores.sum(0))


def node_circuit(graph, scores: NodeScores, n_nodes: int) -> torch.Tensor:
    """The (readers x writers) 0/1 circuit of the n writers of largest |score|: every edge
    from a kept writer into resid_post or into a reader of a kept writer."""
    if not 0 <= n_nodes <= graph.n_writers:
        raise ValueError(f"cannot keep {n_nodes} of {graph.n_writers} nodes")
    kept = torch.zeros(graph.n_writers, dtype=torch.bool)
    kept[torch.topk(scores.scores.abs().float(), n_nodes).indices] = True
    reads_for_kept = (graph.feeds & kept[None, :]).any(1) | ~graph.feeds.any(1)
    return (graph.edge_valid & kept[None, :] & reads_for_kept[:, None]).float()


def neuron_attribution(
    model,
    task: Task,
    examples: list[Encoded],
    batch_size: int = 8,
    pad_id: int = 0,
    ablation: str = "interchange",
    mean_states: torch.Tensor | None = None,
    show_progress: bool = True,
) -> torch.Tensor:
    """EAP per neuron: the gradient of per-dimension writer masks n (W, D) at n = 1 (all
    edges kept), i.e. Σ over positions of (x_w - c_w)_d dL/d(x_w)_d, averaged over
    examples. Its sum over d is the node score."""
    if ablation not in ATTRIBUTION_ABLATIONS:
        raise ValueError(f"attribution supports {', '.join(ATTRIBUTION_ABLATIONS)} ablation, not {ablation!r}")
    graph = model.circuit_graph
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    total = None
    ones = graph.edge_valid.to(device=device, dtype=dtype)
    model.eval()
    for start in tqdm(range(0, len(examples), batch_size), desc="neurons", disable=not show_progress, leave=False):
        batch = to_device(collate(examples[start : start + batch_size], pad_id), device)
        with torch.no_grad():
            corr_x = baseline_states(model, batch, ablation, mean_states)
            hidden = _input_embeddings(model, batch["input_ids"][:, :1]).shape[-1]
        if total is None:
            total = torch.zeros(graph.n_writers, hidden, dtype=torch.float32, device=device)
        neurons = torch.ones(graph.n_writers, hidden, dtype=dtype, device=device, requires_grad=True)
        with model.masks_override(ones), model.neuron_masks_override(neurons):
            metric = _metric(task, model, batch, corr_x)
        (grad,) = torch.autograd.grad(metric, neurons)
        total += grad.float()
    return (total / len(examples)).cpu()


def neuron_circuit(scores: torch.Tensor, n_neurons: int) -> torch.Tensor:
    """(writers x hidden) 0/1 neuron masks keeping the n neurons of largest |score|."""
    if not 0 <= n_neurons <= scores.numel():
        raise ValueError(f"cannot keep {n_neurons} of {scores.numel()} neurons")
    chosen = torch.zeros(scores.numel())
    chosen[torch.topk(scores.abs().flatten().float(), n_neurons).indices] = 1.0
    return chosen.view_as(scores)
