"""Circuit probing with edge masks (beyond the paper): which edges into a reader (a
layer's MLP, or the final residual) must stay for a variable to be decodable from what
that reader reads. The model is Edge Pruning's circuit GPT-2 (`FPT2LMHeadModel`, with
embedding nodes) and its hard-concrete edge masks; the loss is the probe's: the soft
nearest-neighbour loss on the reader's input at the labelled position, plus λ times
the expected number of edges at or before the reader (the only ones that shape its
input). Removed edges are zero-ablated. Node masks stay on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch
from tqdm.auto import tqdm

from .. import l0
from .evaluation import nearest_neighbour_accuracy
from .loss import soft_nearest_neighbour_loss


class EdgeReader(str, Enum):
    MLP = "mlp"  # the MLP of `layer`
    FINAL = "final"  # the final residual (what the unembedding reads)


@dataclass
class EdgeFitSettings:
    epochs: int = 30
    batch_size: int = 500
    lr: float = 0.1
    l0_lambda: float = 1e-2
    threshold: float = 0.5  # the deterministic masks are binarised at it
    # log_alpha at the start: Edge Pruning's 10 saturates the masks at 1, where the loss
    # has no gradient (its Lagrangian grows instead); 3 keeps them on but trainable.
    init: float = 3.0
    seed: int = 0


@dataclass
class EdgeProbeGrid:
    variables: list[str]
    readers: list[EdgeReader] = field(default_factory=lambda: [EdgeReader.MLP])
    layer: int = 0
    models: list[str] | None = None
    task: int = 0
    train_size: int | None = 2500  # probe examples (the circuit model's forward is the slower one)
    fit: EdgeFitSettings = field(default_factory=EdgeFitSettings)


@dataclass
class EdgeProbeRecord:
    model: str
    task: int
    variable: str
    reader: str
    knn_test_acc: float
    knn_full_model_acc: float
    majority_acc: float
    edges_into_reader: list[str]  # the writers whose edge into the reader stayed
    reader_edges_total: int
    kept_upstream_edges: int  # kept edges at or before the reader (the reader's included)
    upstream_edges_total: int


class EdgeProbe:
    """A circuit model and the reader whose input is probed."""

    def __init__(self, model, reader: EdgeReader, layer: int) -> None:
        self.model = model
        model.freeze_model_weights()
        graph = model.circuit_graph
        self.site = graph.final_site if reader is EdgeReader.FINAL else graph.mlp_site(layer)
        base = model.transformer
        norm = base.ln_f if reader is EdgeReader.FINAL else base.h[layer].ln_2
        self._seen: torch.Tensor | None = None
        norm.register_forward_pre_hook(self._keep)
        valid = model.circuit_masks.edge_valid
        rows = torch.arange(valid.shape[0])[:, None]
        self.upstream = valid & (rows < self.site.reader_stop)
        self.into_reader = valid & (rows >= self.site.reader_start) & (rows < self.site.reader_stop)

    def _keep(self, module, args) -> None:
        x = args[0]
        self._seen = x[0] if x.dim() == 4 else x  # the MLP reads one stacked reader input

    def reader_input(self, inputs: torch.Tensor, position: int) -> torch.Tensor:
        self.model(inputs)
        return self._seen[:, position]

    def expected_edges(self) -> torch.Tensor:
        return (l0.prob_nonzero(self.model.circuit_masks.edge_log_alphas) * self.upstream).sum()

    @torch.no_grad()
    def vectors(self, inputs: torch.Tensor, position: int, batch_size: int = 4096) -> torch.Tensor:
        return torch.cat([self.reader_input(inputs[i : i + batch_size], position) for i in range(0, len(inputs), batch_size)])


def fit_edge_probe(probe: EdgeProbe, inputs: torch.Tensor, labels: torch.Tensor, position: int, s: EdgeFitSettings) -> None:
    masks = probe.model.circuit_masks
    with torch.no_grad():
        masks.edge_log_alphas.fill_(s.init)
    optimizer = torch.optim.AdamW([masks.edge_log_alphas], lr=s.lr)
    g = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    n_batches = max(len(labels) // s.batch_size, 1)
    probe.model.train()
    for _ in tqdm(range(s.epochs), desc="edge probe", leave=False):
        order = torch.randperm(len(labels), generator=g)
        for i in range(n_batches):
            idx = order[i * s.batch_size : (i + 1) * s.batch_size]
            loss = soft_nearest_neighbour_loss(probe.reader_input(inputs[idx], position), labels[idx])
            loss = loss + s.l0_lambda * probe.expected_edges()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    probe.model.eval()


def run_edge_probe(model, key: str, grid: EdgeProbeGrid, reader: EdgeReader, variable: str, splits,
                   position: int, per_class: int | None) -> EdgeProbeRecord:  # fmt: skip
    from .run import _probe_data

    train, test = splits[grid.task]
    train_x, train_y = _probe_data(train, variable, grid.train_size, grid.fit.seed)
    test_y = test.variables[variable]
    probe = EdgeProbe(model, reader, grid.layer)
    model.eval()
    with model.full_model():
        full = nearest_neighbour_accuracy(probe.vectors(train_x, position), train_y, probe.vectors(test.inputs, position), test_y,
                                          per_class, grid.fit.seed)  # fmt: skip
    fit_edge_probe(probe, train_x, train_y, position, grid.fit)
    model.set_edge_threshold_for_deterministic(grid.fit.threshold)
    masked = nearest_neighbour_accuracy(probe.vectors(train_x, position), train_y, probe.vectors(test.inputs, position), test_y,
                                        per_class, grid.fit.seed)  # fmt: skip
    with torch.no_grad():
        masks = model.circuit_masks
        masks.eval()
        kept = masks.edge_masks() > 0
    graph = model.circuit_graph
    writers = [w.name for w in graph.writers]
    rows = range(probe.site.reader_start, probe.site.reader_stop)
    into = [writers[w] for r in rows for w in range(len(writers)) if probe.into_reader[r, w] and kept[r, w]]
    return EdgeProbeRecord(
        model=key, task=grid.task, variable=variable, reader=f"{reader.value}" + (f"{grid.layer}" if reader is EdgeReader.MLP else ""),
        knn_test_acc=masked.accuracy, knn_full_model_acc=full.accuracy, majority_acc=masked.majority,
        edges_into_reader=into, reader_edges_total=int(probe.into_reader.sum()),
        kept_upstream_edges=int((kept & probe.upstream).sum()), upstream_edges_total=int(probe.upstream.sum()),
    )  # fmt: skip
