"""`python -m edge_pruning view`: what the page is built from (checkpoints as `vis`
exports them, scored circuits, masks read through the model's graph), and the page
itself, opened in headless Chromium: one DOM node per circuit node, the top-n slider,
hover details, the paths through a clicked node (against a literal enumeration of every
input -> resid_post path), the shared / A-only / B-only split, the node table and a
screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_pruning.cli import run_cli, vis_main
from edge_pruning.graph import CircuitGraph
from edge_pruning.viewer import graph_of_model, load_circuit, page_data, reader_target, view_main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

# A two-layer circuit, (writer, reader, score); EAP-style signed scores ranked by magnitude.
SCORED = [
    ("embeds", "a0.h0.q", 0.9),
    ("embeds", "a0.h1.v", -0.8),
    ("a1.h0", "resid_post", 0.7),
    ("a0.h0", "a1.h1.k", 0.5),
    ("m0", "a1.h0.q", -0.45),
    ("a0.h0", "m0", 0.3),
    ("a1.h1", "resid_post", 0.2),
    ("a0.h1", "m1", 0.1),
]
OUTSIDE = [("embeds", "a1.h0.k", 0.01)]  # scored, not in the circuit
NODES = {"embeds", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1", "resid_post"}


def write_scored(path: Path) -> Path:
    rows = [{"writer": w, "reader": r, "score": s, "in_circuit": True} for w, r, s in SCORED]
    rows += [{"writer": w, "reader": r, "score": s, "in_circuit": False} for w, r, s in OUTSIDE]
    path.write_text(json.dumps({"format": "edge-pruning-circuit-v1", "method": "eap", "edges": rows}))
    return path


def fed_node(reader: str) -> str:
    m = re.fullmatch(r"(a\d+\.h\d+)\.[qkv]", reader)
    return m.group(1) if m else reader


def paths_through(edges: list[tuple[str, str]], node: str) -> set[tuple[str, str]]:
    """Every edge of every embeds -> resid_post path that visits `node`, by enumerating the
    paths one by one."""
    out, found = {}, set()
    for w, r in edges:
        out.setdefault(w, []).append((w, r))

    def walk(at: str, path: list[tuple[str, str]]) -> None:
        if at == "resid_post":
            if node in {"embeds"} | {fed_node(r) for _, r in path}:
                found.update(path)
            return
        for e in out.get(at, []):
            walk(fed_node(e[1]), path + [e])

    walk("embeds", [])
    return found


@pytest.fixture(scope="module")
def page_factory():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs Debian's)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        errors: list[str] = []

        def open_page(html: Path):
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request {r.url}"))
            page.goto(html.as_uri())
            return page

        yield open_page, errors
        browser.close()


def drawn_edges(page) -> set[tuple[str, str]]:
    return {tuple(x) for x in page.eval_on_selector_all("#graph path.edge", "es => es.map(e => [e.dataset.writer, e.dataset.reader])")}


def set_slider(page, n: int) -> None:
    page.eval_on_selector("#topn", "(e, n) => { e.value = n; e.dispatchEvent(new Event('input')); }", n)


def row_status(page, node: str) -> str:
    return page.text_content(f"#nodes tr[data-id='{node}'] td:nth-child(4)")


def test_viewer_in_chromium(tmp_path, page_factory):
    open_page, errors = page_factory
    html = view_main([str(write_scored(tmp_path / "circuit_eap.json")), "-o", str(tmp_path / "c.html")])
    page = open_page(html)
    assert set(page.eval_on_selector_all("#graph g.node", "ns => ns.map(n => n.dataset.id)")) == NODES
    assert page.locator("#graph g.node").count() == len(NODES)
    circuit = [(w, r) for w, r, _ in SCORED]
    assert drawn_edges(page) == set(circuit)

    set_slider(page, 3)  # the three largest |score|
    assert drawn_edges(page) == {("embeds", "a0.h0.q"), ("embeds", "a0.h1.v"), ("a1.h0", "resid_post")}
    assert page.text_content("#counts") == "3 of 8 edges drawn"
    assert row_status(page, "a0.h0") == "removed"  # reads, but writes nothing at n = 3
    set_slider(page, len(SCORED))
    assert row_status(page, "a0.h0") == "kept" and row_status(page, "m1") == "removed"
    assert page.text_content("#nodes tr[data-id='a0.h0'] td:nth-child(3)") == "2"

    page.dispatch_event("#graph path.edge[data-writer='embeds'][data-reader='a0.h0.q']", "mouseover")
    tip = page.text_content("#tooltip")
    assert "embeds" in tip and "a0.h0.q" in tip and "0.9000" in tip and "rank 1" in tip

    page.dispatch_event("#graph g.node[data-id='a0.h0']", "click")
    lit = {tuple(x) for x in page.eval_on_selector_all(
        "#graph path.edge:not(.faded)", "es => es.map(e => [e.dataset.writer, e.dataset.reader])")}  # fmt: skip
    adjacent = {(w, r) for w, r in circuit if w == "a0.h0" or fed_node(r) == "a0.h0"}
    assert lit == paths_through(circuit, "a0.h0") | adjacent
    assert page.locator("#graph path.edge.faded").count() == len(circuit) - len(lit) == 2
    page.dispatch_event("#graph", "click")
    assert page.locator("#graph path.edge.faded").count() == 0

    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert errors == []


def test_two_circuits_in_chromium(tmp_path, page_factory):
    open_page, errors = page_factory
    a = [("embeds", "a0.h0.q"), ("a0.h0", "m0"), ("m0", "resid_post"), ("embeds", "m1")]
    b = [("embeds", "a0.h0.q"), ("a0.h0", "m0"), ("m0", "a1.h1.v"), ("a1.h1", "resid_post"), ("m1", "resid_post")]
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    page = open_page(view_main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "ab.html")]))
    assert drawn_edges(page) == set(a) | set(b)
    assert page.text_content("#count-shared") == "shared: 2"
    assert page.text_content("#count-a") == "A only: 2"
    assert page.text_content("#count-b") == "B only: 3"
    assert page.locator("#graph path.edge.member-shared").count() == 2
    assert page.is_hidden("#topn-box")  # no scores, no slider
    assert errors == []


def test_opening_state_and_screenshot_flag(tmp_path, page_factory):
    open_page, errors = page_factory
    shot, html = tmp_path / "shot.png", tmp_path / "c.html"
    # A process of its own: playwright runs one sync session per process, the fixture's.
    subprocess.run([sys.executable, "-m", "edge_pruning", "view", write_scored(tmp_path / "c.json"), "-o", html,
                    "--top", "5", "--select", "a1.h1", "--screenshot", shot], check=True)  # fmt: skip
    assert shot.read_bytes()[:4] == b"\x89PNG"
    page = open_page(html)
    assert len(drawn_edges(page)) == 5 and page.input_value("#topn") == "5"
    assert page.locator("#graph g.node.selected").count() == 1
    assert page.text_content("#selection").startswith("a1.h1: 1 edges in, 0 out")  # a1.h1 -> resid_post ranks 7th
    assert errors == []


def test_checkpoint_circuit_is_the_one_vis_exports(tiny_gpt2, tmp_path):
    from edge_pruning.models import load_circuit_model

    model = load_circuit_model(str(tiny_gpt2), True)
    torch.manual_seed(0)
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_(0, 3)
    ckpt = tmp_path / "pruned"
    model.save_pretrained(ckpt)
    vis_main(["-i", str(ckpt), "-o", str(tmp_path / "edges.json")])
    expected = [tuple(e) for e in json.loads((tmp_path / "edges.json").read_text())]
    viewed = load_circuit(ckpt)
    assert viewed.edges == expected and 0 < len(expected) < model.circuit_graph.n_edges
    graph, alphas = model.circuit_graph, model.circuit_masks.edge_log_alphas.detach()
    for w, r in expected[:20]:
        assert viewed.scores[w, r] == pytest.approx(float(alphas[graph.reader_index[r], graph.writer_index[w]]))
    ranked = sorted(expected, key=lambda e: viewed.ranks[e])
    assert [viewed.scores[e] for e in ranked] == sorted(viewed.scores.values(), reverse=True)

    # The same masks read through the base model's graph, as for a recorded run.
    built = graph_of_model(tiny_gpt2, lambda g: (g.n_readers, g.n_writers) == tuple(alphas.shape), "masks")
    assert [w.name for w in built.writers] == [w.name for w in graph.writers]
    assert [r.name for r in built.readers] == [r.name for r in graph.readers]
    run = tmp_path / "recorded"
    run.mkdir()
    shutil.copy(tmp_path / "edges.json", run / "edges.json")
    shutil.copy(ckpt / "model.safetensors", run / "circuit_masks.safetensors")
    recorded = load_circuit(run, model=str(tiny_gpt2))
    assert recorded.edges == expected and recorded.scores == pytest.approx(viewed.scores)

    # A scored circuit naming its model: the page lists every node of the model's graph.
    rows = [{"writer": w, "reader": r, "score": 0.0, "in_circuit": (w, r) == expected[0]} for w, r in graph.edge_list()]
    scored = tmp_path / "circuit_eap.json"
    scored.write_text(json.dumps({"format": "edge-pruning-circuit-v1", "method": "eap", "model": str(tiny_gpt2), "edges": rows}))
    nodes = page_data([load_circuit(scored)], "t")["nodes"]
    assert sorted(n["id"] for n in nodes) == sorted([w.name for w in graph.writers] + ["resid_post"])
    assert {n["id"] for n in nodes if n["drawn"]} == {expected[0][0], reader_target(expected[0][1], graph)[0]}


def test_grouped_kv_readers_feed_their_query_heads():
    graph = CircuitGraph.layered(1, 4, 2, embeddings=("embeds",))
    assert reader_target("a0.h1.k", graph) == ("a0.h2", "k", ["a0.h2", "a0.h3"])
    assert reader_target("a0.h1.k", None) == ("a0.h1", "k", ["a0.h1"])
    assert reader_target("a0.h3.q", graph) == ("a0.h3", "q", ["a0.h3"])


def test_page_is_self_contained(tmp_path):
    html = view_main([str(write_scored(tmp_path / "c.json")), "-o", str(tmp_path / "c.html")]).read_text()
    assert "<script src" not in html and "<link" not in html and "d3js.org" in html  # d3 inlined, licence kept
    data = json.loads(re.search(r'id="circuit-data">(.*?)</script>', html, re.S).group(1))
    assert len(data["edges"]) == len(SCORED) and {n["id"] for n in data["nodes"] if n["drawn"]} == NODES
    ys = {n["id"]: n["y"] for n in data["nodes"]}
    assert ys["embeds"] > ys["a0.h0"] > ys["a1.h0"] > ys["resid_post"]  # inputs at the bottom


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["missing.json"], "missing.json"),
        (["a.json", "a.json", "a.json"], "one or two circuits"),
        (["a.json", "--scores", "m.safetensors"], "--model"),
        (["bad.json"], "bad.json"),
        (["a.json", "--select", "a7.h0"], "--select"),
    ],
)
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    Path("a.json").write_text(json.dumps([["embeds", "m0"]]))
    Path("bad.json").write_text("{")
    with pytest.raises(SystemExit) as e:
        run_cli(view_main, args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and fragment in err and err.count("\n") == 1, err
