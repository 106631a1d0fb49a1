"""Edge-level view of a Tracr model and the derivation of its ground truth.

Why: Edge Pruning's Tracr check is "the recovered circuit equals the ground
truth". The ground truth is derived here from the exported weights alone,
with an edge-level numpy forward in which every reader gets the sum of its
*kept* writers' outputs and zero from removed ones (zero ablation, as the
paper uses for Tracr).

Graph (method spec, section 1):
  writers  tok_embeds, pos_embeds, a{L}.h{H}, m{L}
  readers  a{L}.h{H}.q|k|v, m{L}, resid_post
  a{L}.h{H}.q/k/v read the embeddings and every head and MLP of layers < L;
  m{L} also reads the heads of layer L; resid_post reads every writer.
A head's writer output is ``z_h W_O[h] + b_O / n_heads``.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tracrx.export import TracrWeights
from tracrx.reference import attention_heads, embed, mlp

Edge = Tuple[str, str]

#: Numerical outputs count as changed / wrong beyond this absolute difference.
#: Tracr's numerical outputs are exact up to ~1e-6 (float32, and BOS
#: attention leaking ~exp(-50)), while real changes are >= 1/n_tokens.
NUMERIC_ATOL = 1e-3


@dataclasses.dataclass(frozen=True)
class EdgeGraph:
    """Writers, readers and edges of a model, in a fixed order."""

    writers: List[str]
    readers: List[str]
    edges: List[Edge]

    def parents(self, reader: str) -> List[str]:
        return [w for w, r in self.edges if r == reader]


def build_edge_graph(n_layers: int, n_heads: int) -> EdgeGraph:
    writers = ["tok_embeds", "pos_embeds"]
    readers: List[str] = []
    edges: List[Edge] = []
    for L in range(n_layers):
        heads = [f"a{L}.h{h}" for h in range(n_heads)]
        for head in heads:
            for kind in "qkv":
                readers.append(f"{head}.{kind}")
                edges += [(w, f"{head}.{kind}") for w in writers]
        readers.append(f"m{L}")
        edges += [(w, f"m{L}") for w in writers + heads]
        writers += heads + [f"m{L}"]
    readers.append("resid_post")
    edges += [(w, "resid_post") for w in writers]
    return EdgeGraph(writers=writers, readers=readers, edges=edges)


def graph_of(w: TracrWeights) -> EdgeGraph:
    return build_edge_graph(w.config.n_layers, w.config.n_heads)


# ---------------------------------------------------------------- forward


@dataclasses.dataclass
class EdgeForwardOutput:
    """Logits ``[B, T, O]`` and every writer's output ``[B, T, D]``."""

    logits: np.ndarray
    writer_outputs: Dict[str, np.ndarray]


def edge_forward(
    w: TracrWeights,
    token_ids: np.ndarray,
    mask: Optional[Mapping[Edge, float]] = None,
    dtype=np.float64,
) -> EdgeForwardOutput:
    """Forward pass where reader r's input is ``sum_w mask[w, r] * out_w``.

    ``mask`` defaults to 1 for every edge missing from it, so
    ``edge_forward(w, ids)`` equals :func:`tracrx.reference.forward`.
    """
    g = graph_of(w)
    mask = {} if mask is None else mask
    H = w.config.n_heads

    def reader_input(reader: str) -> np.ndarray:
        total = None
        for writer in g.parents(reader):
            m = float(mask.get((writer, reader), 1.0))
            if m == 0.0:
                continue
            term = m * out[writer]
            total = term if total is None else total + term
        return np.zeros_like(out["tok_embeds"]) if total is None else total

    tok, pos = embed(w, token_ids, dtype)
    out: Dict[str, np.ndarray] = {"tok_embeds": tok, "pos_embeds": pos}
    for L in range(w.config.n_layers):
        heads = [f"a{L}.h{h}" for h in range(H)]
        xq, xk, xv = (np.stack([reader_input(f"{hd}.{kind}") for hd in heads], axis=1) for kind in "qkv")
        head_out, _ = attention_heads(xq, xk, xv, w, L, dtype)
        b_share = w.layers[L].b_O.astype(dtype) / H
        for h, hd in enumerate(heads):
            out[hd] = head_out[:, h] + b_share
        out[f"m{L}"] = mlp(reader_input(f"m{L}"), w, L, dtype)
    logits = reader_input("resid_post") @ w.unembed.astype(dtype)
    return EdgeForwardOutput(logits=logits, writer_outputs=out)


def circuit_mask(g: EdgeGraph, circuit: Sequence[Edge]) -> Dict[Edge, float]:
    """1 on the circuit's edges, 0 on every other edge of the graph."""
    keep = set(map(tuple, circuit))
    unknown = keep - set(g.edges)
    if unknown:
        raise ValueError(f"edges not in the graph: {sorted(unknown)}")
    return {e: float(e in keep) for e in g.edges}


# ------------------------------------------------------------- structure


def _writer_out_matrix(w: TracrWeights, writer: str) -> np.ndarray:
    """Rows spanning everything ``writer`` can add to the residual stream."""
    if writer == "tok_embeds":
        return w.tok_embed.astype(np.float64)
    if writer == "pos_embeds":
        return w.pos_embed.astype(np.float64)
    if writer.startswith("a"):
        L, h = (int(x) for x in writer[1:].split(".h"))
        lw = w.layers[L]
        return np.vstack([lw.W_O[h], lw.b_O[None] / w.config.n_heads]).astype(np.float64)
    L = int(writer[1:])
    lw = w.layers[L]
    return np.vstack([lw.W_out, lw.b_out[None]]).astype(np.float64)


def _reader_in_matrix(w: TracrWeights, reader: str) -> np.ndarray:
    """Columns of the linear map a reader applies to its input."""
    if reader == "resid_post":
        return w.unembed.astype(np.float64)
    if reader.startswith("a"):
        head, kind = reader.rsplit(".", 1)
        L, h = (int(x) for x in head[1:].split(".h"))
        lw = w.layers[L]
        return {"q": lw.W_Q, "k": lw.W_K, "v": lw.W_V}[kind][h].astype(np.float64)
    return w.layers[int(reader[1:])].W_in.astype(np.float64)


def shared_directions(w: TracrWeights, edge: Edge) -> List[str]:
    """Residual directions the writer writes to and the reader reads from."""
    wo = np.abs(_writer_out_matrix(w, edge[0])).sum(axis=0)
    wi = np.abs(_reader_in_matrix(w, edge[1])).sum(axis=1)
    return [w.residual_labels[i] for i in np.nonzero(wo * wi)[0]]


def structural_overlap(w: TracrWeights) -> Dict[Edge, float]:
    """``max |W_out(writer) @ W_in(reader)|`` for every edge of the graph."""
    return {
        (wr, rd): float(np.abs(_writer_out_matrix(w, wr) @ _reader_in_matrix(w, rd)).max())
        for wr, rd in graph_of(w).edges
    }


# ------------------------------------------------------------- behaviour


def decode(w: TracrWeights, logits: np.ndarray) -> np.ndarray:
    """Predictions at positions 1.. (BOS dropped): ids or values ``[B, n]``."""
    logits = logits[:, 1:]
    if w.config.categorical_output:
        return np.argmax(logits, axis=-1)
    return logits[..., 0]


def predictions_equal(w: TracrWeights, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-example: do decoded predictions ``a`` and ``b`` agree everywhere?"""
    if w.config.categorical_output:
        return np.all(a == b, axis=-1)
    return np.all(np.abs(a - b) <= NUMERIC_ATOL, axis=-1)


def accuracy(w: TracrWeights, logits: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of examples whose every non-BOS position is right.

    ``targets``: ``[B, n]`` target ids (categorical) or values (numerical).
    """
    return float(predictions_equal(w, decode(w, logits), targets).mean())


@dataclasses.dataclass(frozen=True)
class EdgeEffect:
    """Effect of zero-ablating one edge alone (all others kept)."""

    writer: str
    reader: str
    overlap: float
    directions: List[str]
    max_abs_logit_change: float
    frac_inputs_prediction_changed: float

    @property
    def necessary(self) -> bool:
        return self.frac_inputs_prediction_changed > 0


@dataclasses.dataclass
class GroundTruth:
    """The derived circuit of a task and the evidence for it."""

    task: str
    n_edges_total: int
    structural: List[Edge]
    necessary: List[Edge]
    circuit: List[Edge]
    effects: List[EdgeEffect]
    full_model_accuracy: float
    circuit_accuracy: float
    circuit_matches_full_model: float
    minimal: bool
    notes: List[str]

    def to_json(self) -> dict:
        n = self.n_edges_total
        return {
            "task": self.task,
            "ablation": "zero",
            "edges": [list(e) for e in self.circuit],
            "n_edges": len(self.circuit),
            "n_edges_total": n,
            "edge_sparsity": 1 - len(self.circuit) / n,
            "n_structural_edges": len(self.structural),
            "structural_edges": [list(e) for e in self.structural],
            "n_necessary_edges": len(self.necessary),
            "nodes": sorted({_component(x) for e in self.circuit for x in e}, key=_node_key),
            "full_model_accuracy": self.full_model_accuracy,
            "circuit_accuracy": self.circuit_accuracy,
            "circuit_matches_full_model": self.circuit_matches_full_model,
            "minimal": self.minimal,
            "single_edge_ablations": [
                {
                    "edge": [e.writer, e.reader],
                    "overlap": e.overlap,
                    "directions": e.directions,
                    "max_abs_logit_change": e.max_abs_logit_change,
                    "frac_inputs_prediction_changed": e.frac_inputs_prediction_changed,
                }
                for e in self.effects
            ],
            "notes": self.notes,
        }


def _component(name: str) -> str:
    """Reader/writer name -> component name (``a1.h0.q`` -> ``a1.h0``)."""
    return name[:-2] if name.endswith((".q", ".k", ".v")) else name


def _node_key(name: str):
    order = {"tok_embeds": (-1, 0, 0), "pos_embeds": (-1, 1, 0), "resid_post": (10**6, 0, 0)}
    if name in order:
        return order[name]
    base = name.split(".")
    layer = int(base[0][1:])
    return (layer, 0 if base[0][0] == "a" else 1, name)


def ablation_effects(
    w: TracrWeights, ids: np.ndarray, edges: Sequence[Edge], base: Mapping[Edge, float]
) -> List[Tuple[float, float]]:
    """For each edge: (max |logit change|, fraction of inputs whose prediction
    changes) when that edge is removed from the ``base`` mask."""
    ref = edge_forward(w, ids, base).logits
    ref_pred = decode(w, ref)
    res = []
    for e in edges:
        m = dict(base)
        m[e] = 0.0
        lg = edge_forward(w, ids, m).logits
        changed = ~predictions_equal(w, decode(w, lg), ref_pred)
        res.append((float(np.abs(lg[:, 1:] - ref[:, 1:]).max()), float(changed.mean())))
    return res


def derive_ground_truth(w: TracrWeights, ids: np.ndarray, targets: np.ndarray) -> GroundTruth:
    """Structural edges -> necessary edges -> circuit, with checks.

    1. structural: ``W_out(writer) @ W_in(reader) != 0``. Other edges carry
       nothing the reader can see, so removing them changes nothing.
       ``directions`` lists the residual directions an edge carries.
    2. necessary: removing the edge alone from the full model changes the
       decoded prediction on at least one input.
    3. circuit = necessary edges; must reproduce the full model and reach
       100% accuracy with every other edge zero-ablated. It is also checked
       to be minimal: every circuit edge is necessary *within the circuit*.
    """
    g = graph_of(w)
    overlap = structural_overlap(w)
    structural = [e for e in g.edges if overlap[e] > 0]
    full = {e: 1.0 for e in g.edges}
    eff = ablation_effects(w, ids, structural, full)
    effects = [EdgeEffect(e[0], e[1], overlap[e], shared_directions(w, e), d, f)
               for e, (d, f) in zip(structural, eff)]
    necessary = [(x.writer, x.reader) for x in effects if x.necessary]

    notes: List[str] = []
    full_logits = edge_forward(w, ids).logits
    circuit = list(necessary)
    cmask = circuit_mask(g, circuit)
    c_logits = edge_forward(w, ids, cmask).logits
    same = float(predictions_equal(w, decode(w, c_logits), decode(w, full_logits)).mean())
    if same < 1.0:
        notes.append("necessary edges alone do not reproduce the full model")
    in_circuit = ablation_effects(w, ids, circuit, cmask)
    minimal = all(f > 0 for _, f in in_circuit)
    if not minimal:
        notes.append("some circuit edges are not necessary once the others are removed")
    return GroundTruth(
        task=w.task,
        n_edges_total=len(g.edges),
        structural=structural,
        necessary=necessary,
        circuit=circuit,
        effects=effects,
        full_model_accuracy=accuracy(w, full_logits, targets),
        circuit_accuracy=accuracy(w, c_logits, targets),
        circuit_matches_full_model=same,
        minimal=minimal,
        notes=notes,
    )
