"""The MIB circuit track's formats (Mueller et al. 2025; hannamw/MIB-circuit-track,
whose graphs are hannamw/EAP-IG's `eap.graph.Graph`), and the map between them and
our graph.

MIB names nodes `input`, `a{L}.h{H}`, `m{L}` (sources, "forward") and reads them at
`a{L}.h{H}<q>`, `<k>`, `<v>`, `m{L}`, `logits` (destinations, "backward"). Its
matrices are forward x backward, in EAP-IG's index order: forward `input`, then per
layer the heads and the MLP; backward per layer every head's `<q>`, every `<k>`,
every `<v>`, then the MLP, and `logits` last. That is our writer and reader order, so
the map is a transpose, with three exceptions:

* our embedding node (`embeds`, GPT-2's `tok_embeds`) is MIB's `input`; GPT-2's
  `pos_embeds` is no node there (TransformerLens keeps the position embedding
  clean), so its edges are not exported and are imported as kept;
* `resid_post` is `logits`;
* with grouped-query attention MIB reads K and V per query head (TransformerLens'
  `ungroup_grouped_query_attention`). The `--ungroup_kv` graph is exactly that; from
  the grouped graph a K/V head's edge is copied to every query head of its group, and
  an import into the grouped graph needs those copies to agree.

Two files: JSON `{"cfg", "nodes": {name: {"in_graph", "score"?}}, "edges":
{"src->dst": {"score", "in_graph"}}}` and a torch `.pt` dict with `cfg`,
`src_nodes`, `dst_nodes`, `edges_scores`, `edges_in_graph`, `nodes_in_graph`.

    python -m edge_pruning export-mib CIRCUIT --model PATH -o OUT.json|OUT.pt
    python -m edge_pruning import-mib FILE --model PATH -o edges.json
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .errors import UserError
from .graph import CircuitGraph

INPUT, LOGITS = "input", "logits"
# Our names of MIB's `input` node and its `logits` reader.
OUR_INPUTS = ("embeds", "tok_embeds")
OUR_OUTPUT = "resid_post"
# GPT-2's position embedding: a node of ours, none of MIB's.
UNMAPPED_WRITERS = ("pos_embeds",)
QKV = "qkv"
# The circuit sizes of a submission of nine circuits (fractions of MIB's edge count),
# and the points of MIB's faithfulness curve (the same, and the full model).
SUBMISSION_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
CURVE_FRACTIONS = (*SUBMISSION_FRACTIONS, 1.0)
PT_KEYS = ("cfg", "src_nodes", "dst_nodes", "edges_scores", "edges_in_graph", "nodes_in_graph")


class MIBFormatError(UserError):
    """A file that is not a valid MIB circuit for this model (the message says where)."""


@dataclass(frozen=True)
class MIBConfig:
    """The `cfg` of an MIB graph (EAP-IG's `Graph.from_model` reads exactly these)."""

    n_layers: int
    n_heads: int
    parallel_attn_mlp: bool
    d_model: int

    @property
    def n_forward(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    def src_nodes(self) -> list[str]:
        """Forward (source) nodes in index order."""
        out = [INPUT]
        for layer in range(self.n_layers):
            out += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return out

    def dst_nodes(self) -> list[str]:
        """Backward (destination) nodes in index order."""
        out = []
        for layer in range(self.n_layers):
            for letter in QKV:
                out += [f"a{layer}.h{h}<{letter}>" for h in range(self.n_heads)]
            out.append(f"m{layer}")
        return out + [LOGITS]

    def prev_index(self, dst: str) -> int:
        """How many forward nodes a destination reads (EAP-IG's `Graph.prev_index`)."""
        if dst == LOGITS:
            return self.n_forward
        layer = int(dst[1:].split(".")[0].split("<")[0])
        start = 1 + layer * (self.n_heads + 1)
        if dst.startswith("m") and not self.parallel_attn_mlp:
            return start + self.n_heads
        return start

    def real_edges(self) -> torch.Tensor:
        """(forward x backward) bool: the pairs that are edges."""
        prev = torch.tensor([self.prev_index(d) for d in self.dst_nodes()])
        return torch.arange(self.n_forward)[:, None] < prev[None, :]

    def consumers(self) -> torch.Tensor:
        """(forward x backward) bool: destination b is an input of node f
        (EAP-IG's `forward_to_backward`)."""
        out = torch.zeros(self.n_forward, self.n_backward, dtype=torch.bool)
        src = {name: i for i, name in enumerate(self.src_nodes())}
        for b, dst in enumerate(self.dst_nodes()):
            if dst != LOGITS:
                out[src[dst.split("<")[0]], b] = True
        return out

    def edge_order(self) -> list[tuple[int, int]]:
        """(forward, backward) of every edge in the order EAP-IG's `Graph.from_model`
        adds them, which is the order of its JSON files: per layer, each earlier node
        into every head's q, k, v, then into the MLP; the logits last."""
        dst = {name: i for i, name in enumerate(self.dst_nodes())}
        order: list[tuple[int, int]] = []
        stream = [0]
        for layer in range(self.n_layers):
            heads = list(range(1 + layer * (self.n_heads + 1), 1 + layer * (self.n_heads + 1) + self.n_heads))
            mlp = heads[-1] + 1
            for f in stream:
                for h in range(self.n_heads):
                    order += [(f, dst[f"a{layer}.h{h}<{letter}>"]) for letter in QKV]
                if self.parallel_attn_mlp:
                    order.append((f, dst[f"m{layer}"]))
            stream += heads
            if not self.parallel_attn_mlp:
                order += [(f, dst[f"m{layer}"]) for f in stream]
            stream.append(mlp)
        order += [(f, dst[LOGITS]) for f in stream]
        return order

    def edge_names(self) -> list[str]:
        src, dst = self.src_nodes(), self.dst_nodes()
        return [f"{src[f]}->{dst[b]}" for f, b in self.edge_order()]


@dataclass
class MIBGraph:
    """A scored circuit in MIB's layout: forward x backward matrices, zero off the edges."""

    cfg: MIBConfig
    scores: torch.Tensor  # float32
    in_graph: torch.Tensor  # bool
    nodes_in_graph: torch.Tensor  # (n_forward,) bool
    nodes_scores: torch.Tensor | None = None

    @property
    def n_edges(self) -> int:
        return int(self.cfg.real_edges().sum())

    def save(self, path: str | os.PathLike) -> None:
        """Write `.json` or `.pt` (by the suffix), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix == ".json":
            with open(tmp, "w") as f:
                json.dump(self.to_json_dict(), f)
        elif path.suffix == ".pt":
            torch.save(self.to_pt_dict(), tmp)
        else:
            raise UserError("an MIB circuit file ends in .json or .pt", path)
        os.replace(tmp, path)

    def to_json_dict(self) -> dict:
        src = self.cfg.src_nodes()
        nodes = {}
        for i, name in enumerate(src):
            nodes[name] = {"in_graph": bool(self.nodes_in_graph[i])}
            if self.nodes_scores is not None:
                nodes[name]["score"] = float(self.nodes_scores[i])
        nodes[LOGITS] = {"in_graph": True}
        edges = {
            name: {"score": float(self.scores[f, b]), "in_graph": bool(self.in_graph[f, b])}
            for name, (f, b) in zip(self.cfg.edge_names(), self.cfg.edge_order())
        }
        return {"cfg": asdict(self.cfg), "nodes": nodes, "edges": edges}

    def to_pt_dict(self) -> dict:
        out = {
            "cfg": asdict(self.cfg),
            "src_nodes": self.cfg.src_nodes(),
            "dst_nodes": self.cfg.dst_nodes(),
            "edges_scores": self.scores.float().clone(),
            "edges_in_graph": self.in_graph.bool().clone(),
            "nodes_in_graph": self.nodes_in_graph.bool().clone(),
        }
        if self.nodes_scores is not None:
            out["nodes_scores"] = self.nodes_scores.float().clone()
        return out


def top_n(cfg: MIBConfig, scores: torch.Tensor, n: int, absolute: bool) -> torch.Tensor:
    """EAP-IG's `apply_topn` over edges: the n real edges of largest score (|score| if
    `absolute`), by a descending sort (stable here, so that ties fall in index order)."""
    real = cfg.real_edges()
    if not 0 <= n <= int(real.sum()):
        raise ValueError(f"cannot take {n} of {int(real.sum())} MIB edges")
    ranked = (scores.abs() if absolute else scores).float().masked_fill(~real, float("-inf"))
    order = torch.argsort(ranked.flatten(), descending=True, stable=True)
    in_graph = torch.zeros(real.numel(), dtype=torch.bool)
    in_graph[order[:n]] = True
    return in_graph.view_as(real)


def node_rule(cfg: MIBConfig, in_graph: torch.Tensor) -> torch.Tensor:
    """The nodes MIB puts in a graph after a top-n over edges (`apply_topn`'s reset
    path): those with an outgoing edge and an incoming one (`input` counts as having one)."""
    outgoing = in_graph.any(1)
    incoming = (in_graph.any(0)[None, :] & cfg.consumers()).any(1)
    incoming[0] = True
    return outgoing & incoming


def mib_prune(cfg: MIBConfig, in_graph: torch.Tensor, nodes_in_graph: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """EAP-IG's `Graph.prune`: until nothing changes, drop nodes without an outgoing or
    an incoming edge (`input` always has one), then edges whose source is dropped or
    whose destination belongs to a dropped node (`logits` always stays)."""
    edges, nodes = in_graph.clone().bool(), nodes_in_graph.clone().bool()
    consumers = cfg.consumers()
    while True:
        outgoing = edges.any(1)
        incoming = (edges.any(0)[None, :] & consumers).any(1)
        incoming[0] = True
        new_nodes = outgoing & incoming
        dst_alive = (new_nodes[:, None] & consumers).any(0)
        dst_alive[-1] = True
        new_edges = edges & new_nodes[:, None] & dst_alive[None, :]
        if torch.equal(new_nodes, nodes) and torch.equal(new_edges, edges):
            return edges, nodes
        edges, nodes = new_edges, new_nodes


class MIBMap:
    """Index maps between one of our graphs and MIB's layout of the same model."""

    def __init__(self, graph: CircuitGraph, d_model: int) -> None:
        heads = [w for w in graph.writers if w.kind == "head"]
        layers = sorted({w.layer for w in heads})
        n_heads = sum(1 for w in heads if w.layer == layers[0]) if heads else 0
        embeds = [w.name for w in graph.writers if w.kind == "embed"]
        inputs = [name for name in embeds if name in OUR_INPUTS]
        if len(inputs) != 1 or set(embeds) - {*inputs, *UNMAPPED_WRITERS}:
            raise UserError(
                f"MIB's graphs have an `input` node: load the model with its embeddings as nodes "
                f"(-w / --with_embedding_nodes); this graph's embedding nodes are {embeds or 'none'}"
            )
        parallel = graph.mlp_site(0).n_writers_before == graph.attn_site(0).n_writers_before
        self.graph = graph
        self.cfg = MIBConfig(len(layers), n_heads, parallel, int(d_model))
        writer_of = {INPUT: inputs[0]}
        col = torch.tensor([graph.writer_index[writer_of.get(name, name)] for name in self.cfg.src_nodes()])
        kv_heads = sum(1 for r in graph.readers if r.kind == "k" and r.layer == 0)
        group = n_heads // kv_heads
        rows = []
        for name in self.cfg.dst_nodes():
            if name == LOGITS:
                rows.append(graph.reader_index[OUR_OUTPUT])
                continue
            node, _, letter = name.partition("<")
            letter = letter.rstrip(">")
            if not letter:
                rows.append(graph.reader_index[node])
                continue
            layer, head = node[1:].split(".h")
            h = int(head) if letter == "q" else int(head) // group
            rows.append(graph.reader_index[f"a{layer}.h{h}.{letter}"])
        self.row = torch.tensor(rows)  # our reader of each MIB destination
        self.col = col  # our writer of each MIB source
        self.grouped = group > 1
        self.real = self.cfg.real_edges()
        if not torch.equal(graph.edge_valid[self.row][:, self.col].T, self.real):
            raise UserError("this graph's edges do not match MIB's layout of the same model")

    def to_mib(self, ours: torch.Tensor) -> torch.Tensor:
        """A (readers x writers) matrix of ours as MIB's (forward x backward); a grouped
        K/V reader's entry goes to every query head of its group."""
        out = ours.detach().cpu()[self.row][:, self.col].T.clone()
        return out * self.real if out.dtype != torch.bool else out & self.real

    def from_mib(self, mib: torch.Tensor, fill: float | bool, where: str) -> torch.Tensor:
        """MIB's (forward x backward) matrix as ours (readers x writers). Entries with
        no MIB counterpart (GPT-2's `pos_embeds` edges) are `fill`. Into a grouped
        graph the entries of a group's query heads must agree."""
        mib = mib.detach().cpu()
        shape = (self.graph.n_readers, self.graph.n_writers)
        out = torch.full(shape, fill, dtype=mib.dtype)
        values = (mib * self.real if mib.dtype != torch.bool else mib & self.real).T  # backward x forward
        out[self.row[:, None], self.col[None, :]] = values
        if self.grouped:
            back = out[self.row][:, self.col]
            bad = (back != values) & self.real.T
            if bad.any():
                b, f = (int(i) for i in torch.nonzero(bad)[0])
                raise MIBFormatError(
                    f"edge {self.cfg.src_nodes()[f]}->{self.cfg.dst_nodes()[b]} differs from the other query heads "
                    f"of its K/V group; import into the --ungroup_kv graph",
                    where,
                )
        return out * self.graph.edge_valid if out.dtype != torch.bool else out & self.graph.edge_valid

    def export(self, scores: torch.Tensor, chosen: torch.Tensor) -> MIBGraph:
        """Our scores and circuit (readers x writers) as an MIB graph; its nodes are
        the ones MIB's own top-n would keep."""
        in_graph = self.to_mib(chosen != 0)
        return MIBGraph(self.cfg, self.to_mib(scores.float()), in_graph, node_rule(self.cfg, in_graph))

    def import_(self, graph: MIBGraph, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """An MIB graph as our (scores, chosen); `pos_embeds` edges kept, score 0."""
        if graph.cfg != self.cfg:
            raise MIBFormatError(f"cfg {asdict(graph.cfg)} is not this model's {asdict(self.cfg)}", where)
        scores = self.from_mib(graph.scores.float(), 0.0, where)
        chosen = self.from_mib(graph.in_graph.bool(), True, where)
        unmapped = [self.graph.writer_index[n] for n in UNMAPPED_WRITERS if n in self.graph.writer_index]
        scores[:, unmapped] = 0.0
        return scores, chosen


def mib_map(model) -> MIBMap:
    """The map of a loaded circuit model (its config gives `d_model`)."""
    config = model.config
    d_model = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or getattr(config, "d_model", 0)
    return MIBMap(model.circuit_graph, d_model)


# ----------------------------------------------------------------------------- reading files


def _config(raw, where: str) -> MIBConfig:
    if not isinstance(raw, dict):
        raise MIBFormatError("`cfg` is not a mapping", where)
    missing = [k for k in ("n_layers", "n_heads", "parallel_attn_mlp", "d_model") if k not in raw]
    if missing:
        raise MIBFormatError(f"`cfg` lacks {', '.join(missing)}", where)
    return MIBConfig(int(raw["n_layers"]), int(raw["n_heads"]), bool(raw["parallel_attn_mlp"]), int(raw["d_model"]))


def read_mib(path: str | os.PathLike) -> MIBGraph:
    """An MIB circuit file (.json or .pt), checked as EAP-IG's loaders check it, and
    more: unknown node or edge names are errors, not silently skipped."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise MIBFormatError("MIB circuit file not found", where)
    if path.suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict):
            raise MIBFormatError("not a dict of MIB graph tensors", where)
        missing = [k for k in PT_KEYS if k not in data]
        if missing:
            raise MIBFormatError(f"missing keys {', '.join(missing)}", where)
        cfg = _config(data["cfg"], where)
        shape = (cfg.n_forward, cfg.n_backward)
        for key in ("edges_scores", "edges_in_graph"):
            if tuple(data[key].shape) != shape:
                raise MIBFormatError(f"`{key}` has shape {tuple(data[key].shape)}, cfg gives {shape}", where)
        if list(data["src_nodes"]) != cfg.src_nodes() or list(data["dst_nodes"]) != cfg.dst_nodes():
            raise MIBFormatError("`src_nodes`/`dst_nodes` are not in EAP-IG's index order for this cfg", where)
        nodes_scores = data.get("nodes_scores")
        return MIBGraph(
            cfg, data["edges_scores"].float(), data["edges_in_graph"].bool(), data["nodes_in_graph"].bool(),
            None if nodes_scores is None else nodes_scores.float(),
        )  # fmt: skip
    if path.suffix != ".json":
        raise MIBFormatError("an MIB circuit file ends in .json or .pt", where)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MIBFormatError(f"bad JSON ({e.msg} at line {e.lineno})", where) from e
    missing = [k for k in ("cfg", "nodes", "edges") if k not in data]
    if missing:
        raise MIBFormatError(f"missing keys {', '.join(missing)}", where)
    cfg = _config(data["cfg"], where)
    src = {name: i for i, name in enumerate(cfg.src_nodes())}
    dst = {name: i for i, name in enumerate(cfg.dst_nodes())}
    real = cfg.real_edges()
    scores = torch.zeros(cfg.n_forward, cfg.n_backward)
    in_graph = torch.zeros(cfg.n_forward, cfg.n_backward, dtype=torch.bool)
    for name, info in data["edges"].items():
        a, sep, b = name.partition("->")
        if not sep or a not in src or b not in dst or not real[src[a], dst[b]]:
            raise MIBFormatError(f"edge {name!r} is not an edge of this cfg", where)
        if not isinstance(info, dict) or "in_graph" not in info:
            raise MIBFormatError(f"edge {name!r} has no `in_graph`", where)
        scores[src[a], dst[b]] = float(info.get("score") or 0.0)
        in_graph[src[a], dst[b]] = bool(info["in_graph"])
    nodes = torch.zeros(cfg.n_forward, dtype=torch.bool)
    node_scores = torch.full((cfg.n_forward,), float("nan"))
    any_score = False
    for name, info in data["nodes"].items():
        if name == LOGITS:
            continue
        if name not in src:
            raise MIBFormatError(f"node {name!r} is not a node of this cfg", where)
        nodes[src[name]] = bool(info["in_graph"])
        if info.get("score") is not None:
            node_scores[src[name]] = float(info["score"])
            any_score = True
    return MIBGraph(cfg, scores, in_graph, nodes, node_scores if any_score else None)


# ----------------------------------------------------------------------------- our circuits


def edge_pruning_scores(model) -> torch.Tensor:
    """A non-negative score per edge that orders edges as Edge Pruning's masks do:
    min(edge log_alpha, its writer's node log_alpha), shifted so that the least is 0.
    MIB ranks by |score|, which then is the mask order."""
    masks = model.circuit_masks
    with torch.no_grad():
        joint = torch.minimum(masks.edge_log_alphas.float(), masks.node_log_alphas.float()[None, :]).cpu()
    valid = model.circuit_graph.edge_valid
    return (joint - joint[valid].min()).clamp(min=0) * valid


@dataclass
class ScoredCircuit:
    """Per-edge scores and a chosen circuit on our graph (readers x writers)."""

    scores: torch.Tensor
    chosen: torch.Tensor  # bool
    method: str


def read_circuit(path: str | os.PathLike, model) -> ScoredCircuit:
    """A circuit of ours for `model`: a pruned checkpoint (or a folder of its mask
    parameters), an `edges.json`, or a scored circuit (`circuit_<method>.json`)."""
    from .compare import load_mask_parameters
    from .evaluation import set_thresholds_for_sparsity

    path = Path(path)
    graph = model.circuit_graph
    if path.is_dir():
        load_mask_parameters(model, path)
        set_thresholds_for_sparsity(model)
        edges, nodes = model._eval_masks()
        return ScoredCircuit(edge_pruning_scores(model), graph.effective_edges(edges, nodes), "edge-pruning")
    if not path.is_file():
        raise UserError("circuit not found (a pruned checkpoint, edges.json or scored circuit JSON)", path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"bad JSON ({e.msg} at line {e.lineno})", path) from e
    try:
        if isinstance(data, dict) and data.get("format") == "edge-pruning-circuit-v1":
            scores = torch.zeros(graph.n_readers, graph.n_writers)
            chosen = torch.zeros(graph.n_readers, graph.n_writers, dtype=torch.bool)
            for edge in data["edges"]:
                r, w = graph.edge_position(edge["writer"], edge["reader"])
                scores[r, w] = float(edge["score"])
                chosen[r, w] = bool(edge["in_circuit"])
            return ScoredCircuit(scores, chosen, str(data.get("method", "unknown")))
        from .circuit import load_edges_json

        chosen = graph.edge_matrix(load_edges_json(path)).bool()
        return ScoredCircuit(chosen.float(), chosen, "edges")
    except (KeyError, ValueError) as e:
        from .errors import one_line

        raise UserError(f"circuit does not fit this model ({one_line(e)})", path) from e


# ----------------------------------------------------------------------------- command line


def _load_model(path: str, ungroup_kv: bool):
    from .models import load_circuit_model

    return load_circuit_model(path, with_embedding_nodes=True, ungroup_kv=ungroup_kv)


def _common_flags(p: argparse.ArgumentParser) -> None:
    from .cli import add_ungroup_kv_flag

    p.add_argument("--model", required=True, help="the model's checkpoint (its graph; embeddings are nodes)")
    add_ungroup_kv_flag(p)


def export_main(argv: list[str] | None = None) -> Path:
    """`python -m edge_pruning export-mib CIRCUIT --model PATH -o OUT.json|OUT.pt`."""
    p = argparse.ArgumentParser(prog="edge-pruning export-mib", description="Write a circuit of ours in MIB's format")
    p.add_argument("circuit", help="a pruned checkpoint (or its mask folder), an edges.json or a scored circuit JSON")
    _common_flags(p)
    p.add_argument("-o", "--out", required=True, help="OUT.json or OUT.pt")
    args = p.parse_args(argv)
    if Path(args.out).suffix not in (".json", ".pt"):
        raise UserError("-o must end in .json or .pt", args.out)
    model = _load_model(args.model, args.ungroup_kv)
    circuit = read_circuit(args.circuit, model)
    mapping = mib_map(model)
    graph = mapping.export(circuit.scores, circuit.chosen)
    graph.save(args.out)
    how = "copied to each query head of its K/V group" if mapping.grouped else "one per query head"
    print(f"{args.out}: {int(graph.in_graph.sum())} of {graph.n_edges} MIB edges in the circuit ({circuit.method}; K/V {how})")
    return Path(args.out)


def import_main(argv: list[str] | None = None) -> Path:
    """`python -m edge_pruning import-mib FILE --model PATH -o edges.json [--scored OUT]`."""
    from .circuit import save_edges_json
    from .faithfulness import export_scored_circuit

    p = argparse.ArgumentParser(prog="edge-pruning import-mib", description="Read an MIB circuit file into our formats")
    p.add_argument("file", help="an MIB circuit (.json or .pt)")
    _common_flags(p)
    p.add_argument("-o", "--out", required=True, help="edges.json: the circuit's edges ([writer, reader] pairs)")
    p.add_argument("--scored", help="also write every edge's score as a scored circuit (docs/circuit_format.md)")
    args = p.parse_args(argv)
    model = _load_model(args.model, args.ungroup_kv)
    mapping = mib_map(model)
    scores, chosen = mapping.import_(read_mib(args.file), args.file)
    graph = model.circuit_graph
    save_edges_json(args.out, graph.edge_list(chosen))
    if args.scored:
        export_scored_circuit(args.scored, graph, "mib-import", scores, chosen, {"source": str(args.file)})
    print(f"{args.out}: {int(chosen.sum())} of {graph.n_edges} edges")
    return Path(args.out)
