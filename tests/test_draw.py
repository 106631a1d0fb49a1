"""draw_*.py: the original's sanitising and `-c`/`-ns`, the original's reader-level
drawing, and the node-level drawing (one box per head or MLP, edges counted) that
`auto` takes above a size. Drawings are checked in graphviz's SVG output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edge_pruning.cli import run_cli
from edge_pruning.draw import draw_main, sanitize_for_drawing

SVG = "{http://www.w3.org/2000/svg}"

# Hand-sanitised below: a0.h1's only output reads into a head whose node writes nothing.
EDGES = [
    ("embeds", "a0.h0.q"),
    ("a0.h0", "m1"),
    ("a0.h1", "a1.h0.k"),
    ("m1", "resid_post"),
    ("embeds", "a0.h1.v"),
]


def drawn(svg_path: Path) -> tuple[set[str], list[str], list[str]]:
    """(node titles, edge titles, edge labels) of a graphviz SVG."""
    root = ET.parse(svg_path).getroot()
    nodes, edges, labels = set(), [], []
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if g.get("class") == "node":
            nodes.add(title.text)
        elif g.get("class") == "edge":
            edges.append(title.text.replace("&#45;", "-"))
            labels += [t.text for t in g.iter(f"{SVG}text")]
    return nodes, edges, labels


def write(tmp_path: Path, edges) -> Path:
    path = tmp_path / "edges.json"
    path.write_text(json.dumps([list(e) for e in edges]))
    return path


def test_sanitize_matches_the_hand_derived_fixed_point():
    # Round 1 adds Q/K/V -> O for a0.h0 and a0.h1, drops a0.h1 -> a1.h0.k (a1.h0 writes
    # nothing) and the O edges of unfed inputs; round 2 drops a0.h1.v -> a0.h1 (a0.h1 now
    # writes nothing); round 3 drops embeds -> a0.h1.v.
    assert sorted(sanitize_for_drawing(EDGES)) == sorted(
        [("embeds", "a0.h0.q"), ("a0.h0", "m1"), ("m1", "resid_post"), ("a0.h0.q", "a0.h0")]
    )


def test_reader_mode_is_the_originals_drawing(tmp_path):
    out = draw_main(["-i", str(write(tmp_path, EDGES)), "-o", str(tmp_path / "c.svg"), "-m", "reader"])
    nodes, edges, _ = drawn(out)
    assert nodes == {"Embeddings", "Head 0.0.Q", "Head 0.0.O", "MLP 1", "Output"}
    assert sorted(edges) == sorted(["Embeddings->Head 0.0.Q", "Head 0.0.O->MLP 1", "MLP 1->Output", "Head 0.0.Q->Head 0.0.O"])

    out = draw_main(["-i", str(write(tmp_path, EDGES)), "-o", str(tmp_path / "ns.svg"), "-m", "reader", "-ns"])
    nodes, edges, _ = drawn(out)
    assert len(edges) == len(EDGES) and "Head 1.0.K" in nodes


def test_constants_get_an_edge_to_every_other_box(tmp_path):
    out = draw_main(["-i", str(write(tmp_path, EDGES)), "-o", str(tmp_path / "c.svg"), "-m", "reader", "-c", "Embeddings", "Bias"])
    nodes, edges, _ = drawn(out)
    others = nodes - {"Embeddings", "Bias"}
    assert {"Embeddings", "Bias"} <= nodes and len(others) == 4
    for constant in ("Embeddings", "Bias"):
        assert {e.split("->")[1] for e in edges if e.startswith(constant + "->")} >= others
    out = draw_main(["-i", str(write(tmp_path, EDGES)), "-o", str(tmp_path / "none.svg"), "-m", "reader", "-c", "[none]"])
    assert len(drawn(out)[1]) == 4


def test_node_mode_counts_the_edges_between_two_boxes(tmp_path):
    edges = [("embeds", "a0.h1.q"), ("embeds", "a0.h1.v"), ("a0.h1", "a1.h0.q"), ("a0.h1", "a1.h0.k"),
             ("a0.h1", "a1.h0.v"), ("a0.h1", "m1"), ("a1.h0", "m1"), ("m1", "resid_post")]  # fmt: skip
    out = draw_main(["-i", str(write(tmp_path, edges)), "-o", str(tmp_path / "n.svg"), "-m", "node"])
    nodes, drawn_edges, labels = drawn(out)
    assert nodes - {"legend"} == {"embeds", "a0.h1", "a1.h0", "m1", "resid_post"}
    assert sorted(drawn_edges) == sorted(["embeds->a0.h1", "a0.h1->a1.h0", "a0.h1->m1", "a1.h0->m1", "m1->resid_post"])
    assert sorted(labels) == ["2", "3"]  # embeds -> a0.h1 (Q, V) and a0.h1 -> a1.h0 (Q, K, V)


def test_auto_takes_node_mode_above_the_size(tmp_path):
    path = write(tmp_path, EDGES)
    small = drawn(draw_main(["-i", str(path), "-o", str(tmp_path / "a.svg")]))[0]
    large = drawn(draw_main(["-i", str(path), "-o", str(tmp_path / "b.svg"), "--node-level-above", "2"]))[0]
    assert "Head 0.0.O" in small and "a0.h0" in large


def test_default_pdf_beside_the_edges_and_bad_input(tmp_path, capsys):
    path = write(tmp_path, EDGES)
    assert draw_main(["-i", str(path)]) == tmp_path / "edges.pdf"
    assert (tmp_path / "edges.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(SystemExit) as e:
        run_cli(draw_main, ["-i", str(path), "-o", str(tmp_path / "x.jpeg")])
    assert e.value.code == 2 and "x.jpeg" in capsys.readouterr().err
    bad = write(tmp_path, [("embeds", "frob")])
    with pytest.raises(SystemExit):
        run_cli(draw_main, ["-i", str(bad), "-m", "node", "-ns"])
    assert "'frob'" in capsys.readouterr().err
