"""Draw a circuit (edges.json) with graphviz, in one of two drawings.

`reader` is the original's `draw_fpt2.py`: a box per reader and per head output
(`Head L.H.Q|K|V|O`, `MLP L`, `Embeddings`, `Output`), every edge into its reader, the
Q/K/V -> O edges of each head that writes, the original's colours and spacing. It is
readable up to a few hundred edges. `node` puts one box per head or MLP on a fixed grid
(layers from the bottom up, heads left to right, each MLP beside its layer's heads) and
draws the edges between two boxes once, as one strand per reader kind with their count:
a large circuit's edges can then be followed. `auto` (the default) takes `node` above
`NODE_LEVEL_ABOVE` edges.

As in the original, edges are first sanitised by its rule (`-ns` to draw them as given),
and `-c NAME ...` adds constant inputs: grey edges from each named box to every other.
Names are read as edges.json writes them: with grouped-query attention a K/V reader
`a{L}.h{G}.k` (key/value head G) is drawn into head G.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .circuit import load_edges_json
from .errors import UserError

# Above this many edges `auto` draws one box per head or MLP.
NODE_LEVEL_ABOVE = 200

HEAD = re.compile(r"a(\d+)\.h(\d+)")
HEAD_INPUT = re.compile(r"a(\d+)\.h(\d+)\.([qkv])")
MLP = re.compile(r"m(\d+)")

# The original's node colours (graphviz X11 names); an edge takes its writer's colour.
READER_MODE_COLORS = {
    "embed": "grey",
    "output": "azure",
    "mlp": "cadetblue2",
    "q": "plum1",
    "k": "lightpink",
    "v": "khaki1",
    "o": "darkslategray3",
}
CONSTANT_EDGE_COLOR = "gray66"
# Node-level drawing: one strand colour per reader kind; translucent, since strands cross.
KIND_COLORS = {"q": "#d62728", "k": "#2ca02c", "v": "#1f77b4", "mlp": "#555555", "resid_post": "#000000"}
KIND_LABELS = {"q": "Q", "k": "K", "v": "V", "mlp": "MLP", "resid_post": "final"}
BOX_COLORS = {"embed": "grey", "head": "darkslategray3", "mlp": "cadetblue2", "output": "azure"}


class DrawMode(str, Enum):
    AUTO = "auto"
    READER = "reader"
    NODE = "node"


def sanitize_for_drawing(edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The original drawing's sanitising: add `a.q|k|v -> a` for every head that writes,
    then until nothing changes drop edges into readers whose node writes nothing (except
    `resid_post`) and Q/K/V -> O edges of inputs that nothing reads into."""
    heads = sorted({w for w, _ in edges if HEAD.fullmatch(w)}, key=node_sort_key)
    edges = list(edges) + [(f"{h}.{kind}", h) for h in heads for kind in "qkv"]
    while True:
        sources = {w for w, _ in edges}
        kept = [(w, r) for w, r in edges if r == "resid_post" or r in sources]
        fed = {r for _, r in kept if HEAD_INPUT.fullmatch(r)}
        kept = [(w, r) for w, r in kept if not (HEAD_INPUT.fullmatch(w) and w not in fed)]
        if len(kept) == len(edges):
            return kept
        edges = kept


def node_sort_key(name: str) -> tuple[int, int, str]:
    """Embeddings first, then by layer (heads before the MLP), `resid_post` last."""
    m = re.match(r"a(\d+)\.h(\d+)", name)
    if m:
        return int(m.group(1)), int(m.group(2)), name
    m = MLP.fullmatch(name)
    if m:
        return int(m.group(1)), 1 << 20, name
    return (1 << 30, 0, name) if name == "resid_post" else (-1, 0, name)


def display_name(name: str) -> str:
    """The original's box names: `Head L.H.Q|K|V|O`, `MLP L`, `Embeddings`, `Output`."""
    if "embeds" in name:
        return "Embeddings"
    if name == "resid_post":
        return "Output"
    m = MLP.fullmatch(name)
    if m:
        return f"MLP {int(m.group(1))}"
    m = HEAD_INPUT.fullmatch(name)
    if m:
        return f"Head {int(m.group(1))}.{int(m.group(2))}.{m.group(3).upper()}"
    m = HEAD.fullmatch(name)
    if m:
        return f"Head {int(m.group(1))}.{int(m.group(2))}.O"
    raise UserError(f"not a node name: {name!r} (expected embeddings, a{{L}}.h{{H}}[.q|k|v], m{{L}} or resid_post)")


def reader_mode_color(display: str) -> str:
    name = display.lower()
    if "embed" in name:
        return READER_MODE_COLORS["embed"]
    if name == "output":
        return READER_MODE_COLORS["output"]
    if name.startswith("m"):
        return READER_MODE_COLORS["mlp"]
    return READER_MODE_COLORS.get(name[-1], READER_MODE_COLORS["o"])


def add_constants(dot, nodes: list[str], constants: list[str]) -> None:
    """The original's `-c`: each constant is a box with an edge to every other box."""
    for name in constants:
        if name not in nodes:
            dot.node(name, name)
    for node in dict.fromkeys(nodes + constants):
        if node not in constants:
            for name in constants:
                dot.edge(name, node, color=CONSTANT_EDGE_COLOR)


def reader_graph(edges: list[tuple[str, str]], constants: list[str], title: str | None):
    """The original's drawing (see the module docstring)."""
    import graphviz

    renamed = [(display_name(w), display_name(r)) for w, r in edges]
    nodes = list(dict.fromkeys(n for e in sorted(edges, key=lambda e: node_sort_key(e[0])) for n in map(display_name, e)))
    dot = graphviz.Digraph(
        "circuit",
        graph_attr={"nodesep": "0.02", "ranksep": "0.02", "ratio": "1:6", **({"label": title, "labelloc": "t"} if title else {})},
        node_attr={"shape": "box", "style": "rounded,filled"},
    )
    for node in nodes:
        dot.node(node, color="black", fillcolor=reader_mode_color(node))
    for w, r in renamed:
        dot.edge(w, r, color=reader_mode_color(w))
    add_constants(dot, nodes, constants)
    return dot


@dataclass(frozen=True)
class Box:
    """A node-level box: a head, an MLP, the embeddings or the output."""

    name: str
    kind: str  # "embed" | "head" | "mlp" | "output"
    layer: int
    head: int = -1

    @property
    def label(self) -> str:
        if self.kind == "head":
            return f"Head {self.layer}.{self.head}"
        return display_name(self.name)


def box_of(name: str) -> Box:
    """The box a writer or reader belongs to (a head's Q/K/V inputs: the head)."""
    m = HEAD_INPUT.fullmatch(name) or HEAD.fullmatch(name)
    if m:
        return Box(f"a{int(m.group(1))}.h{int(m.group(2))}", "head", int(m.group(1)), int(m.group(2)))
    m = MLP.fullmatch(name)
    if m:
        return Box(name, "mlp", int(m.group(1)))
    if name == "resid_post":
        return Box(name, "output", 1 << 20)
    display_name(name)  # raises for a name that is none of the kinds
    return Box("embeds", "embed", -1)


def reader_kind(reader: str) -> str:
    m = HEAD_INPUT.fullmatch(reader)
    if m:
        return m.group(3)
    return "resid_post" if reader == "resid_post" else "mlp"


def node_graph(edges: list[tuple[str, str]], constants: list[str], title: str | None):
    """One box per head or MLP on a grid, the edges between two boxes drawn once, one
    strand per reader kind, labelled with their count when more than one."""
    import graphviz

    counts: dict[tuple[Box, Box], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for w, r in edges:
        src, dst = box_of(w), box_of(r)
        if src != dst:  # the reader mode's Q/K/V -> O edges lie inside a box
            counts[src, dst][reader_kind(r)] += 1
    boxes = sorted({b for pair in counts for b in pair}, key=lambda b: node_sort_key(b.name))
    layers = [b.layer for b in boxes if b.kind in ("head", "mlp")]
    n_layers = max(layers, default=-1) + 1
    n_heads = max((b.head for b in boxes if b.kind == "head"), default=-1) + 1
    dx, dy = 1.3, 1.1  # inches between heads, between layers
    width = (n_heads + 1) * dx

    def position(b: Box) -> str:
        if b.kind == "head":
            x, y = b.head * dx, b.layer * dy
        elif b.kind == "mlp":
            x, y = n_heads * dx, b.layer * dy + dy / 2
        else:
            x, y = width / 2 - dx / 2, -dy if b.kind == "embed" else n_layers * dy
        return f"{x:.2f},{y:.2f}!"

    dot = graphviz.Digraph(
        "circuit",
        engine="neato",
        graph_attr={"splines": "false", "outputorder": "edgesfirst", "pad": "0.3",
                    **({"label": title, "labelloc": "t", "fontsize": "24"} if title else {})},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "11", "width": "0.9", "height": "0.35"},
        edge_attr={"arrowsize": "0.4", "fontname": "Helvetica", "fontsize": "7"},
    )  # fmt: skip
    for b in boxes:
        dot.node(b.name, b.label, pos=position(b), fillcolor=BOX_COLORS[b.kind])
    for (src, dst), kinds in counts.items():
        n = sum(kinds.values())
        strands = ":".join(KIND_COLORS[k] + "99" for k in KIND_COLORS if k in kinds)
        dot.edge(src.name, dst.name, color=strands, penwidth=str(0.6 + 0.3 * n), **({"label": str(n)} if n > 1 else {}))
    names = {b.label: b.name for b in boxes}
    for name in constants:
        if name not in names:
            dot.node(name, name, pos=f"{-1.5 * dx:.2f},{-dy:.2f}!")
    for b in boxes:
        if b.label not in constants:
            for name in constants:
                dot.edge(names.get(name, name), b.name, color=CONSTANT_EDGE_COLOR)
    legend = " ".join(f'<font color="{KIND_COLORS[k]}">{KIND_LABELS[k]}</font>' for k in KIND_COLORS)
    dot.node("legend", f"<edges into {legend}; count when &gt; 1>", shape="plaintext", style="", pos=f"{width / 2 - dx / 2:.2f},{-1.6 * dy:.2f}!")
    return dot


def draw_circuit(
    edges_path: str | Path,
    out_path: str | Path | None = None,
    title: str | None = None,
    mode: DrawMode | str = DrawMode.AUTO,
    constants: list[str] | None = None,
    sanitize: bool = True,
    node_level_above: int = NODE_LEVEL_ABOVE,
) -> Path:
    """Render edges.json next to it (`edges.pdf`) or at `out_path`, whose suffix
    (.pdf, .png, .svg) names the format. Returns the path written."""
    edges = load_edges_json(edges_path)
    if not edges:
        raise UserError("holds no edges: nothing to draw", edges_path)
    mode = DrawMode(mode)
    constants = [c for c in constants or [] if c.lower() != "[none]"]  # the original's "no constants"
    if sanitize:
        edges = sanitize_for_drawing(edges)
    n_circuit = sum(1 for w, _ in edges if not HEAD_INPUT.fullmatch(w))
    if mode is DrawMode.AUTO:
        mode = DrawMode.NODE if n_circuit > node_level_above else DrawMode.READER
    out = Path(out_path) if out_path else Path(edges_path).with_suffix(".pdf")
    fmt = out.suffix.lstrip(".").lower() or "pdf"
    if fmt not in ("pdf", "png", "svg"):
        raise UserError(f"cannot draw to a .{fmt} file (use .pdf, .png or .svg)", out)
    build = node_graph if mode is DrawMode.NODE else reader_graph
    dot = build(edges, constants, title)
    return Path(dot.render(outfile=str(out), format=fmt, cleanup=True))


def draw_main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description="Draw a circuit's edges.json (PDF, PNG or SVG)")
    p.add_argument("-i", "--in_path", "--in-path", dest="in_path", required=True, help="edges.json")
    p.add_argument("-o", "--out_path", "--out-path", dest="out_path", default=None, help="default: edges.json -> edges.pdf; the suffix names the format")
    p.add_argument("-c", "--constants", nargs="+", default=[], help="boxes (as drawn, e.g. Embeddings) given an edge to every other box; [none] for none")
    p.add_argument("-ns", "--no-sanitize", "--no_sanitize", dest="no_sanitize", action="store_true", help="draw the edges as given")
    p.add_argument("-m", "--mode", choices=[m.value for m in DrawMode], default=DrawMode.AUTO.value,
                   help="reader: the original's drawing; node: one box per head or MLP; auto: node above --node-level-above edges")
    p.add_argument("--node-level-above", type=int, default=NODE_LEVEL_ABOVE, help="edges above which auto draws one box per head or MLP")
    p.add_argument("-t", "--title", default=None)
    args = p.parse_args(argv)
    if not Path(args.in_path).is_file():
        raise UserError("edges file not found", args.in_path)
    out = draw_circuit(args.in_path, args.out_path, args.title, args.mode, args.constants, not args.no_sanitize, args.node_level_above)
    print(f"circuit drawn to {out}")
    return out
