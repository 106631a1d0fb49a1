"""Render a circuit (edges.json) with graphviz: one row of nodes per layer, inputs at
the bottom, `resid_post` at the top; Q, K and V edges in different colours and styles."""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

from .circuit import load_edges_json

EDGE_STYLE = {
    "q": {"color": "#d62728", "style": "solid", "label": "Q"},
    "k": {"color": "#2ca02c", "style": "dashed", "label": "K"},
    "v": {"color": "#1f77b4", "style": "dotted", "label": "V"},
    "mlp": {"color": "#555555", "style": "solid"},
    "resid_post": {"color": "#555555", "style": "solid"},
}
NODE_STYLE = {
    "embed": {"shape": "box", "fillcolor": "#dddddd"},
    "head": {"shape": "ellipse", "fillcolor": "#ffe8b0"},
    "mlp": {"shape": "box", "fillcolor": "#c9e4ff"},
    "resid_post": {"shape": "doubleoctagon", "fillcolor": "#e0ffd0"},
}


def parse_reader(reader: str) -> tuple[str, str]:
    """(node drawn as the edge's target, reader kind). With grouped-query attention a
    K/V reader `a{L}.h{G}.k` is that of key/value head G; it is drawn into head G."""
    if reader == "resid_post":
        return "resid_post", "resid_post"
    m = re.fullmatch(r"(a\d+\.h\d+)\.([qkv])", reader)
    if m:
        return m.group(1), m.group(2)
    if re.fullmatch(r"m\d+", reader):
        return reader, "mlp"
    raise ValueError(f"not a reader name: {reader!r}")


def node_kind(name: str) -> str:
    if name == "resid_post":
        return "resid_post"
    if re.fullmatch(r"a\d+\.h\d+", name):
        return "head"
    if re.fullmatch(r"m\d+", name):
        return "mlp"
    return "embed"


def node_layer(name: str) -> int:
    m = re.match(r"[am](\d+)", name)
    if m:
        return int(m.group(1))
    return 10**6 if name == "resid_post" else -1


def build_graph(edges: list[tuple[str, str]], title: str | None = None):
    import graphviz

    dot = graphviz.Digraph("circuit", graph_attr={"rankdir": "BT", "splines": "true", "nodesep": "0.15", "ranksep": "0.6"})
    if title:
        dot.attr(label=title, labelloc="t", fontsize="20")
    nodes: set[str] = set()
    for writer, reader in edges:
        nodes.add(writer)
        nodes.add(parse_reader(reader)[0])
    by_layer: dict[int, list[str]] = defaultdict(list)
    for name in nodes:
        by_layer[node_layer(name)].append(name)
    for layer in sorted(by_layer):
        with dot.subgraph(name=f"layer_{layer}") as sub:
            sub.attr(rank="same")
            for name in sorted(by_layer[layer]):
                sub.node(name, name, style="filled", fontname="Helvetica", **NODE_STYLE[node_kind(name)])
    for writer, reader in edges:
        target, kind = parse_reader(reader)
        style = dict(EDGE_STYLE[kind])
        label = style.pop("label", None)
        dot.edge(writer, target, fontsize="8", fontcolor=style["color"], **({"xlabel": label} if label else {}), **style)
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="edges into", fontsize="10")
        for kind in ("q", "k", "v"):
            legend.node(f"legend_{kind}", f"{kind.upper()} input", shape="plaintext", fontcolor=EDGE_STYLE[kind]["color"])
    return dot


def draw_circuit(edges_path: str | Path, out_path: str | Path | None = None, title: str | None = None) -> Path:
    """Render edges.json to a PDF next to it (or at `out_path`)."""
    edges = load_edges_json(edges_path)
    if not edges:
        raise ValueError(f"{edges_path} holds no edges: nothing to draw")
    out = Path(out_path) if out_path else Path(edges_path).with_suffix(".pdf")
    dot = build_graph(edges, title or f"{len(edges)} edges")
    rendered = dot.render(outfile=str(out), format="pdf", cleanup=True)
    return Path(rendered)


def draw_main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description="Draw a circuit's edges.json as a PDF")
    p.add_argument("-i", "--in-path", required=True, help="edges.json")
    p.add_argument("-o", "--out-path", default=None, help="default: edges.json -> edges.pdf")
    p.add_argument("-t", "--title", default=None)
    args = p.parse_args(argv)
    out = draw_circuit(args.in_path, args.out_path, args.title)
    print(f"circuit drawn to {out}")
    return out
