"""`python -m edge_pruning view CIRCUIT [CIRCUIT_B] -o circuit.html`: one self-contained
HTML page to explore a circuit, or two side by side.

A circuit is an `edges.json`, a scored circuit (`docs/circuit_format.md`), a pruned
checkpoint (its circuit at its own sparsity, as `vis` exports it, scored by log_alpha)
or a recorded run's folder (`edges.json` + `circuit_masks.safetensors`). `--scores
MASKS --model BASE` scores an `edges.json` with a masks file's log_alphas.

The page lays the nodes out by layer (embeddings at the bottom, `resid_post` at the
top, heads then the MLP across), colours edges by reader kind, and offers a top-n slider
over the scores, hover details, paths through a clicked node, the shared / A-only /
B-only split of two circuits and a node table. d3 (shipped by the `mpld3` package) is
inlined, so the page needs no network and no server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from .circuit import load_edges_json
from .draw import HEAD, HEAD_INPUT, MLP, node_sort_key
from .errors import UserError
from .graph import CircuitGraph

SCORED_FORMAT = "edge-pruning-circuit-v1"
MASKS_FILE = "circuit_masks.safetensors"
EDGE_LOG_ALPHAS = "circuit_masks.edge_log_alphas"
NODE_LOG_ALPHAS = "circuit_masks.node_log_alphas"
# Layout, in SVG pixels: between heads, between layers.
DX, DY = 80, 32


@dataclass
class ViewedCircuit:
    """One circuit as the page shows it.

    `scores` (per circuit edge) order the top-n slider: higher first, or by magnitude
    (`by_magnitude`, EAP's signed estimates). `graph`, when known, gives every node of
    the model (for the node table) and which query heads a grouped K/V reader feeds."""

    label: str
    edges: list[tuple[str, str]]
    scores: dict[tuple[str, str], float] | None = None
    score_name: str = "score"
    by_magnitude: bool = False
    graph: CircuitGraph | None = None
    ranks: dict[tuple[str, str], int] = field(init=False)

    def __post_init__(self) -> None:
        if not self.edges:
            raise UserError("holds no edges: nothing to view", self.label)
        order = list(self.edges)
        if self.scores is not None:
            missing = [e for e in order if e not in self.scores]
            if missing:
                raise UserError(f"no score for edge {missing[0]}", self.label)
            key = (lambda e: -abs(self.scores[e])) if self.by_magnitude else (lambda e: -self.scores[e])
            order.sort(key=key)  # stable: ties keep the file's order
        self.ranks = {e: i for i, e in enumerate(order)}


# ----------------------------------------------------------------------------- loading


def graph_of_model(model_path: str | os.PathLike, fits: Callable[[CircuitGraph], bool], what: str) -> CircuitGraph:
    """The circuit graph of a checkpoint's architecture, built from its config alone (on
    the meta device, no weights read), under the first graph options (embedding nodes,
    ungrouped K/V) that `fits` accepts; `what` names the circuit in the error otherwise."""
    import torch
    from transformers.utils import logging as hf_logging

    from .models import arch_of_checkpoint, check_checkpoint, model_class

    check_checkpoint(model_path, weights=False)
    cls = model_class(arch_of_checkpoint(str(model_path)))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "a model of type llama to instantiate fllama" is expected here
    try:
        for embeddings, ungroup in ((True, False), (False, False), (True, True), (False, True)):
            config = cls.config_class.from_pretrained(model_path, with_embedding_nodes=embeddings, ungroup_kv=ungroup)
            with torch.device("meta"):
                graph = cls(config).circuit_graph
            if fits(graph):
                return graph
    finally:
        hf_logging.set_verbosity(verbosity)
    raise UserError(f"{what} fits no graph of this model (with or without embedding nodes, grouped or ungrouped K/V)", model_path)


def has_edges(edges: list[tuple[str, str]]) -> Callable[[CircuitGraph], bool]:
    """Whether a graph holds every one of `edges`."""

    def fits(graph: CircuitGraph) -> bool:
        return all(
            w in graph.writer_index and r in graph.reader_index and bool(graph.edge_valid[graph.reader_index[r], graph.writer_index[w]])
            for w, r in edges
        )

    return fits


def read_masks(path: str | os.PathLike):
    """(edge log_alphas, node log_alphas or None) from a masks or checkpoint safetensors."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise UserError("masks file not found", path)
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        edge = [k for k in keys if k.endswith(EDGE_LOG_ALPHAS)]
        node = [k for k in keys if k.endswith(NODE_LOG_ALPHAS)]
        if not edge:
            raise UserError(f"holds no {EDGE_LOG_ALPHAS}: not a pruned model's masks", path)
        return f.get_tensor(edge[0]).float(), f.get_tensor(node[0]).float() if node else None


def log_alpha_scores(graph: CircuitGraph, log_alphas, edges, where) -> dict[tuple[str, str], float]:
    """Each edge's log_alpha, read off the dense (readers x writers) tensor."""
    if tuple(log_alphas.shape) != (graph.n_readers, graph.n_writers):
        raise UserError(f"masks of shape {tuple(log_alphas.shape)}, the graph {(graph.n_readers, graph.n_writers)}", where)
    out = {}
    for writer, reader in edges:
        try:
            r, w = graph.edge_position(writer, reader)
        except (KeyError, ValueError) as e:
            raise UserError(f"edge not in the model's graph: {e}", where) from e
        out[writer, reader] = float(log_alphas[r, w])
    return out


def load_checkpoint_circuit(path: Path) -> ViewedCircuit:
    """A pruned checkpoint's circuit at its own sparsity, sanitised (as `vis` writes it)."""
    from .evaluation import set_thresholds_for_sparsity
    from .models import load_circuit_model

    model = load_circuit_model(str(path), False)
    set_thresholds_for_sparsity(model)
    edges = model.get_edges(sanitize=True)
    if not edges:
        raise UserError("its circuit has no edges at its own sparsity", path)
    graph = model.circuit_graph
    scores = log_alpha_scores(graph, model.circuit_masks.edge_log_alphas.detach(), edges, path)
    return ViewedCircuit(str(path), edges, scores, "log_alpha", graph=graph)


def load_scored_circuit(path: Path, data: dict, model: str | None = None) -> ViewedCircuit:
    """The exchange format: the edges marked `in_circuit`, every edge's score. The graph
    is that of `model`, or of the file's `model` when it is on this machine."""
    try:
        rows = [(str(e["writer"]), str(e["reader"]), float(e["score"]), bool(e["in_circuit"])) for e in data["edges"]]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"not a {SCORED_FORMAT} file: edge records need writer, reader, score, in_circuit ({e!r})", path) from e
    method = str(data.get("method", "score"))
    edges = [(w, r) for w, r, _, chosen in rows if chosen]
    scores = {(w, r): s for w, r, s, chosen in rows if chosen}
    model = model or (data.get("model") if Path(str(data.get("model")), "config.json").is_file() else None)
    graph = graph_of_model(model, has_edges([(w, r) for w, r, _, _ in rows]), f"{path}'s edges") if model else None
    # Edge Pruning's scores are log_alphas (higher is kept first); EAP's are signed estimates.
    return ViewedCircuit(str(path), edges, scores, f"{method} score", by_magnitude=method != "edge-pruning", graph=graph)


def load_circuit(path: str | os.PathLike, scores: str | None = None, model: str | None = None) -> ViewedCircuit:
    """Any of the circuit kinds the module docstring lists."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            if scores:
                raise UserError("a checkpoint is scored by its own masks; --scores is for edges.json files", path)
            return load_checkpoint_circuit(path)
        if (path / MASKS_FILE).is_file() and (path / "edges.json").is_file():
            return load_circuit(path / "edges.json", str(path / MASKS_FILE), model or recorded_base_model(path))
        raise UserError(f"neither a checkpoint (config.json) nor a recorded run (edges.json + {MASKS_FILE})", path)
    if not path.is_file():
        raise UserError("circuit file not found", path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"not JSON ({e})", path) from e
    if isinstance(data, dict) and data.get("format") == SCORED_FORMAT:
        return load_scored_circuit(path, data, model)
    try:
        edges = load_edges_json(path)
    except ValueError as e:
        raise UserError(f"not an edges file: {e}", path) from e
    if not scores:
        graph = graph_of_model(model, has_edges(edges), f"{path}'s edges") if model else None
        return ViewedCircuit(str(path), edges, graph=graph)
    if not model:
        raise UserError("--scores needs --model (the base checkpoint, for the graph the masks index)", scores)
    edge_alphas, _ = read_masks(scores)
    shape = tuple(edge_alphas.shape)
    graph = graph_of_model(model, lambda g: (g.n_readers, g.n_writers) == shape, f"{scores}'s masks {shape} (readers, writers)")
    return ViewedCircuit(str(path), edges, log_alpha_scores(graph, edge_alphas, edges, scores), "log_alpha", graph=graph)


def recorded_base_model(run: Path) -> str | None:
    """The base checkpoint a recorded run was pruned from, if it is on this machine."""
    args = run / "pruning_args.json"
    if args.is_file():
        base = json.loads(args.read_text()).get("initialize_from")
        if base and Path(base, "config.json").is_file():
            return base
    return None


# ----------------------------------------------------------------------------- page data


def node_of(name: str) -> dict:
    """A drawn node (writer, or resid_post): its kind, layer and head."""
    m = HEAD.fullmatch(name)
    if m:
        return {"id": name, "kind": "head", "layer": int(m.group(1)), "head": int(m.group(2))}
    m = MLP.fullmatch(name)
    if m:
        return {"id": name, "kind": "mlp", "layer": int(m.group(1)), "head": -1}
    if name == "resid_post":
        return {"id": name, "kind": "resid_post", "layer": -2, "head": -1}
    if re.fullmatch(r"\w*embeds", name):
        return {"id": name, "kind": "embed", "layer": -1, "head": -1}
    raise UserError(f"not a writer name: {name!r} (expected *embeds, a{{L}}.h{{H}} or m{{L}})")


def reader_target(reader: str, graph: CircuitGraph | None) -> tuple[str, str, list[str]]:
    """(box an edge is drawn into, reader kind, the nodes the reader feeds). A grouped
    K/V reader `a{L}.h{G}.k` feeds every query head of group G and is drawn into the
    first; without the graph, names are read as ungrouped (`a{L}.h{H}.k` feeds head H)."""
    if reader == "resid_post":
        return "resid_post", "resid_post", ["resid_post"]
    m = HEAD_INPUT.fullmatch(reader)
    if m:
        head = f"a{m.group(1)}.h{m.group(2)}"
        if graph is not None and reader in graph.reader_index:
            feeds = list(graph.readers[graph.reader_index[reader]].consumers)
            return feeds[0], m.group(3), feeds
        return head, m.group(3), [head]
    if MLP.fullmatch(reader):
        return reader, "mlp", [reader]
    raise UserError(f"not a reader name: {reader!r} (expected a{{L}}.h{{H}}.q|k|v, m{{L}} or resid_post)")


def page_data(circuits: list[ViewedCircuit], title: str, top: int | None = None, select: str | None = None) -> dict:
    """Everything the page draws: nodes with positions, edges with per-circuit ranks,
    and the state it opens in (`top` edges by score, `select`ed node)."""
    graph = next((c.graph for c in circuits if c.graph is not None), None)
    edges: dict[tuple[str, str], dict] = {}
    for i, c in enumerate(circuits):
        for e in c.edges:
            if e not in edges:
                target, kind, feeds = reader_target(e[1], graph)
                edges[e] = {"w": e[0], "r": e[1], "t": target, "kind": kind, "feeds": feeds,
                            "rank": [None] * len(circuits), "score": [None] * len(circuits)}  # fmt: skip
            edges[e]["rank"][i] = c.ranks[e] if c.scores is not None else 0
            edges[e]["score"][i] = c.scores[e] if c.scores is not None else None
    drawn = {e["w"] for e in edges.values()} | {e["t"] for e in edges.values()}
    names = set(drawn)
    if graph is not None:
        names |= {w.name for w in graph.writers} | {"resid_post"}
    nodes = [node_of(n) | {"drawn": n in drawn} for n in sorted(names, key=node_sort_key)]
    layout(nodes)
    if select is not None and select not in drawn:
        raise UserError(f"{select!r} is not a node of the circuit", "--select")
    if top is not None and top < 1:
        raise UserError(f"must be at least 1, got {top}", "--top")
    return {
        "title": title,
        "circuits": [
            {"label": c.label, "n_edges": len(c.edges), "scored": c.scores is not None, "score_name": c.score_name}
            for c in circuits
        ],
        "embedding_nodes": any(n["kind"] == "embed" for n in nodes),
        "initial": {"top": top, "selected": select},
        "nodes": nodes,
        "edges": sorted(edges.values(), key=lambda e: (node_sort_key(e["w"]), node_sort_key(e["t"]), e["r"])),
    }


def layout(nodes: list[dict]) -> None:
    """x, y (SVG pixels, y down) in place: layer rows from the bottom, heads across, each
    MLP right of its heads and half a row up (it reads them), embeddings below layer 0,
    resid_post above the last layer."""
    n_layers = max((n["layer"] for n in nodes), default=-1) + 1
    n_heads = max((n["head"] for n in nodes), default=-1) + 1
    center = n_heads * DX / 2
    embeds = [n for n in nodes if n["kind"] == "embed"]
    for n in nodes:
        if n["kind"] == "head":
            x, row = n["head"] * DX, n["layer"]
        elif n["kind"] == "mlp":
            x, row = n_heads * DX + DX / 4, n["layer"] + 0.5
        elif n["kind"] == "embed":
            x, row = center + (embeds.index(n) - (len(embeds) - 1) / 2) * 2 * DX, -1.2
        else:
            x, row = center, n_layers + 0.4
        n["x"] = round(60 + x, 1)
        n["y"] = round(40 + (n_layers + 0.4 - row) * DY, 1)


# ----------------------------------------------------------------------------- page


def d3_source() -> str:
    """d3 v5, as the `mpld3` package ships it (located, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("mpld3")
    if spec is None or spec.origin is None:
        raise UserError("the viewer inlines d3 from the mpld3 package: pip install mpld3")
    return (Path(spec.origin).parent / "js" / "d3.v5.min.js").read_text()


def render_html(circuits: list[ViewedCircuit], title: str | None = None, top: int | None = None, select: str | None = None) -> str:
    assets = resources.files("edge_pruning") / "viewer_assets"
    title = title or " vs ".join(Path(c.label).name if Path(c.label).name != "edges.json" else c.label for c in circuits)
    # "<\/" is JSON for "</": no edge or label can close the data's <script>.
    data = json.dumps(page_data(circuits, title, top, select), separators=(",", ":")).replace("</", "<\\/")
    parts = {
        "TITLE": title.replace("&", "&amp;").replace("<", "&lt;"),
        "CSS": (assets / "viewer.css").read_text(),
        "D3": d3_source(),
        "DATA": data,
        "APP": (assets / "viewer.js").read_text(),
    }
    # One pass, so that no inserted text is searched for markers.
    return re.sub(r"/\*(TITLE|CSS|D3|DATA|APP)\*/", lambda m: parts[m.group(1)], (assets / "viewer.html").read_text())


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 1000) -> None:
    """The page as headless Chromium shows it (Debian's `chromium`, driven by playwright)."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise UserError("needs chromium (scripts/setup.sh installs it)", "--screenshot")
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(html.resolve().as_uri())
            page.screenshot(path=str(png))
        finally:
            browser.close()


def view_main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m edge_pruning view", description="Write a circuit (or two) as one self-contained HTML page")
    p.add_argument("circuits", nargs="+", metavar="CIRCUIT", help="edges.json, scored circuit JSON, pruned checkpoint or recorded run; two to compare")
    p.add_argument("-o", "--out", default="circuit.html", help="the HTML file (default: circuit.html)")
    p.add_argument("--scores", nargs="+", default=None, metavar="MASKS",
                   help="masks safetensors scoring each edges.json (log_alpha), one per circuit; '-' for none")
    p.add_argument("--model", default=None, help="base checkpoint whose config gives the graph: the one --scores index; for any circuit, grouped K/V heads and every node")
    p.add_argument("-t", "--title", default=None)
    p.add_argument("--top", type=int, default=None, help="open with the top N edges by score drawn (default: all)")
    p.add_argument("--select", default=None, metavar="NODE", help="open with NODE clicked (e.g. a9.h6)")
    p.add_argument("--screenshot", default=None, metavar="PNG", help="also write what headless Chromium shows")
    args = p.parse_args(argv)
    if len(args.circuits) > 2:
        raise UserError(f"one or two circuits, got {len(args.circuits)}", "CIRCUIT")
    scores = args.scores or []
    if len(scores) > len(args.circuits):
        raise UserError(f"{len(scores)} masks files for {len(args.circuits)} circuits", "--scores")
    scores = [None if s == "-" else s for s in scores] + [None] * (len(args.circuits) - len(scores))
    circuits = [load_circuit(c, s, args.model) for c, s in zip(args.circuits, scores)]
    out = Path(args.out)
    out.write_text(render_html(circuits, args.title, args.top, args.select))
    sizes = ", ".join(f"{len(c.edges)} edges" for c in circuits)
    print(f"{sizes}: viewer written to {out} ({out.stat().st_size / 1024:.0f} KiB)")
    if args.screenshot:
        screenshot(out, Path(args.screenshot))
        print(f"screenshot written to {args.screenshot}")
    return out
