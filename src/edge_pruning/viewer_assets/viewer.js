// The circuit viewer: draws the page data that edge_pruning.viewer embeds, with d3 v5.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("circuit-data").textContent);
  const BOX_W = 50, BOX_H = 18;
  const KIND_COLORS = { q: "#d62728", k: "#2ca02c", v: "#1f77b4", mlp: "#7f7f7f", resid_post: "#111111" };
  const KIND_NAMES = { q: "Q", k: "K", v: "V", mlp: "MLP", resid_post: "final" };
  const MEMBER_COLORS = { shared: "#6a3d9a", a: "#1f77b4", b: "#ff7f0e" };
  const circuits = DATA.circuits;
  const two = circuits.length === 2;
  const byId = new Map(DATA.nodes.map((n) => [n.id, n]));
  DATA.edges.forEach((e, i) => { e.i = i; });
  const edgeKey = (e) => e.w + ">" + e.r;
  const state = { n: 1, selected: null, colorBy: two ? "membership" : "kind" };

  document.getElementById("title").textContent = DATA.title;

  // Top-n slider over the scored circuits' ranks; unscored circuits are always whole.
  const scored = circuits.filter((c) => c.scored);
  const maxN = Math.max(1, ...circuits.map((c) => c.n_edges));
  const slider = document.getElementById("topn");
  state.n = scored.length && DATA.initial.top ? Math.min(DATA.initial.top, maxN) : maxN;
  state.selected = DATA.initial.selected;
  if (scored.length) {
    document.getElementById("topn-box").hidden = false;
    slider.max = maxN;
    slider.value = state.n;
    document.getElementById("score-name").textContent = [...new Set(scored.map((c) => c.score_name))].join(" / ");
    slider.addEventListener("input", () => { state.n = +slider.value; update(); });
  }
  const colorBy = document.getElementById("color-by");
  colorBy.value = state.colorBy;
  if (!two) document.getElementById("color-box").hidden = true;
  colorBy.addEventListener("change", () => { state.colorBy = colorBy.value; update(); });

  const inCircuit = (e, i) => e.rank[i] !== null && e.rank[i] < state.n;
  function membership(e) {
    if (!two) return "a";
    const a = inCircuit(e, 0), b = inCircuit(e, 1);
    return a && b ? "shared" : a ? "a" : "b";
  }
  const visibleEdges = () => DATA.edges.filter((e) => circuits.some((_, i) => inCircuit(e, i)));

  // Layout: the positions come with the data; the view box fits them.
  const svg = d3.select("#graph");
  const xs = DATA.nodes.map((n) => n.x), ys = DATA.nodes.map((n) => n.y);
  svg.attr("viewBox", [0, 0, Math.max(...xs) + 60, Math.max(...ys) + 40].join(" "));
  const root = svg.append("g");
  svg.call(d3.zoom().scaleExtent([0.3, 12]).on("zoom", () => root.attr("transform", d3.event.transform)));
  svg.on("click", () => { if (d3.event.target === svg.node()) select(null); });

  const layers = [...new Set(DATA.nodes.filter((n) => n.kind === "head").map((n) => n.layer))];
  const rowY = new Map(DATA.nodes.filter((n) => n.kind === "head").map((n) => [n.layer, n.y]));
  root.append("g").selectAll("text.layer").data(layers).enter().append("text")
    .attr("class", "layer").attr("x", 30).attr("y", (l) => rowY.get(l)).text((l) => "L" + l);

  const edgeLayer = root.append("g").attr("class", "edges");
  const nodeLayer = root.append("g").attr("class", "nodes");
  const label = (n) => n.kind === "head" ? n.layer + "." + n.head : n.kind === "mlp" ? "m" + n.layer : n.id;
  const nodeSel = nodeLayer.selectAll("g.node").data(DATA.nodes.filter((n) => n.drawn), (n) => n.id).enter()
    .append("g").attr("class", (n) => "node " + n.kind).attr("data-id", (n) => n.id)
    .attr("transform", (n) => "translate(" + n.x + "," + n.y + ")")
    .on("click", (n) => { d3.event.stopPropagation(); select(n.id); })
    .on("mouseover", (n) => tip(nodeText(n)))
    .on("mousemove", moveTip).on("mouseout", hideTip);
  nodeSel.append("rect").attr("x", (n) => -width(n) / 2).attr("y", -BOX_H / 2).attr("width", width).attr("height", BOX_H);
  nodeSel.append("text").text(label);
  function width(n) { return n.kind === "head" || n.kind === "mlp" ? BOX_W : Math.max(BOX_W, 7 * n.id.length); }

  function edgePath(e) {
    const a = byId.get(e.w), b = byId.get(e.t);
    const y1 = a.y - BOX_H / 2, y2 = b.y + BOX_H / 2, ym = (y1 + y2) / 2;
    return "M" + a.x + "," + y1 + "C" + a.x + "," + ym + " " + b.x + "," + ym + " " + b.x + "," + y2;
  }

  // Paths from the inputs to resid_post, over the drawn edges: an edge u -> (nodes its
  // reader feeds) is on a path through x when x is reachable and reaches the output, and
  // either u is reachable from the inputs and a fed node reaches x, or u is reached from
  // x and a fed node reaches the output.
  function reach(edges, starts, forward) {
    const next = new Map();
    for (const e of edges) {
      for (const f of e.feeds) {
        const [from, to] = forward ? [e.w, f] : [f, e.w];
        if (!next.has(from)) next.set(from, []);
        next.get(from).push(to);
      }
    }
    const seen = new Set(starts), todo = [...starts];
    while (todo.length) for (const m of next.get(todo.pop()) || []) if (!seen.has(m)) { seen.add(m); todo.push(m); }
    return seen;
  }
  function pathEdges(edges, x) {
    const inputs = DATA.embedding_nodes
      ? DATA.nodes.filter((n) => n.kind === "embed").map((n) => n.id)
      : [...new Set(edges.map((e) => e.w))];
    const fwd = reach(edges, inputs, true), bwd = reach(edges, ["resid_post"], false);
    const on = new Set();
    if (!fwd.has(x) || !bwd.has(x)) return on;
    const anc = reach(edges, [x], false), desc = reach(edges, [x], true);
    for (const e of edges) {
      if ((fwd.has(e.w) && e.feeds.some((f) => anc.has(f))) || (desc.has(e.w) && e.feeds.some((f) => bwd.has(f)))) on.add(edgeKey(e));
    }
    return on;
  }

  function update() {
    const edges = visibleEdges();
    document.getElementById("topn-value").textContent = Math.min(state.n, maxN);
    let onPath = null;
    const x = state.selected;
    if (x) onPath = pathEdges(edges, x);
    const adjacent = (e) => x !== null && (e.w === x || e.t === x || e.feeds.includes(x));
    const cls = (e) => {
      let c = "edge kind-" + e.kind + " member-" + membership(e);
      if (x !== null) c += adjacent(e) ? " adjacent" : onPath.has(edgeKey(e)) ? " path" : " faded";
      return c;
    };
    const color = (e) => state.colorBy === "membership" ? MEMBER_COLORS[membership(e)] : KIND_COLORS[e.kind];
    const sel = edgeLayer.selectAll("path.edge").data(edges, edgeKey);
    sel.exit().remove();
    sel.enter().append("path").attr("d", edgePath).attr("data-writer", (e) => e.w).attr("data-reader", (e) => e.r)
      .on("mouseover", (e) => tip(edgeText(e))).on("mousemove", moveTip).on("mouseout", hideTip)
      .merge(sel).attr("class", cls).attr("stroke", color);
    edgeLayer.selectAll("path.edge").sort((a, b) => a.i - b.i);

    const degree = degrees(edges);
    const lit = new Set();
    if (x !== null) {
      lit.add(x);
      for (const e of edges) if (adjacent(e) || onPath.has(edgeKey(e))) { lit.add(e.w); lit.add(e.t); }
    }
    nodeSel.attr("class", (n) => {
      const d = degree.get(n.id);
      let c = "node " + n.kind + (d.in + d.out ? "" : " idle");
      if (x !== null) c += n.id === x ? " selected" : lit.has(n.id) ? "" : " faded";
      return c;
    });
    legend(edges);
    table(degree);
    const info = document.getElementById("selection");
    if (x !== null) {
      const d = degree.get(x);
      info.textContent = x + ": " + d.in + " edges in, " + d.out + " out; " + onPath.size +
        " drawn edges on paths from the inputs through it to resid_post (the rest faded).";
    }
  }

  function degrees(edges) {
    const d = new Map(DATA.nodes.map((n) => [n.id, { in: 0, out: 0 }]));
    for (const e of edges) {
      d.get(e.w).out += 1;
      for (const f of e.feeds) d.get(f).in += 1;
    }
    return d;
  }

  function legend(edges) {
    const counts = document.getElementById("counts");
    if (two) {
      const c = { shared: 0, a: 0, b: 0 };
      for (const e of edges) c[membership(e)] += 1;
      counts.innerHTML = "";
      for (const [key, text] of [["shared", "shared"], ["a", "A only"], ["b", "B only"]]) {
        const s = document.createElement("span");
        s.id = "count-" + key;
        s.style.color = MEMBER_COLORS[key];
        s.textContent = text + ": " + c[key];
        s.style.marginRight = "12px";
        counts.appendChild(s);
      }
      counts.title = "A: " + circuits[0].label + "\nB: " + circuits[1].label;
    } else {
      counts.textContent = edges.length + " of " + circuits[0].n_edges + " edges drawn";
    }
    const el = document.getElementById("legend");
    el.innerHTML = "";
    const entries = state.colorBy === "membership"
      ? [["shared", MEMBER_COLORS.shared], ["A", MEMBER_COLORS.a], ["B", MEMBER_COLORS.b]]
      : Object.keys(KIND_COLORS).map((k) => [KIND_NAMES[k], KIND_COLORS[k]]);
    for (const [text, col] of entries) {
      const s = document.createElement("span");
      s.style.color = col;
      s.textContent = "\u2501 " + text;
      el.appendChild(s);
    }
  }

  const tbody = d3.select("#nodes tbody");
  const rows = tbody.selectAll("tr").data(DATA.nodes, (n) => n.id).enter().append("tr")
    .attr("data-id", (n) => n.id).on("click", (n) => select(n.id));
  for (let i = 0; i < 4; i++) rows.append("td");
  function table(degree) {
    rows.each(function (n) {
      const d = degree.get(n.id), kept = n.kind === "resid_post" ? d.in > 0 : d.out > 0;
      const cells = this.children;
      cells[0].textContent = n.id;
      cells[1].textContent = d.in;
      cells[2].textContent = d.out;
      cells[3].textContent = kept ? "kept" : "removed";
      this.className = (kept ? "kept" : "removed") + (n.id === state.selected ? " selected" : "");
    });
  }

  function select(id) {
    state.selected = id;
    if (id === null) document.getElementById("selection").textContent = "";
    update();
  }

  const tooltip = document.getElementById("tooltip");
  function tip(text) { tooltip.textContent = text; tooltip.hidden = false; moveTip(); }
  function moveTip() {
    const ev = d3.event;
    if (ev && ev.clientX !== undefined) { tooltip.style.left = ev.clientX + 14 + "px"; tooltip.style.top = ev.clientY + 10 + "px"; }
  }
  function hideTip() { tooltip.hidden = true; }
  function edgeText(e) {
    const lines = [e.w + " \u2192 " + e.r + " (" + KIND_NAMES[e.kind] + (e.feeds.length > 1 ? ", feeds " + e.feeds.join(" ") : "") + ")"];
    circuits.forEach((c, i) => {
      const name = two ? (i ? "B" : "A") + ": " : "";
      if (e.rank[i] === null) lines.push(name + "not in the circuit");
      else if (c.scored) lines.push(name + c.score_name + " " + e.score[i].toPrecision(4) + " (rank " + (e.rank[i] + 1) + ")");
      else if (two) lines.push(name + "in the circuit");
    });
    return lines.join("\n");
  }
  function nodeText(n) {
    const d = degrees(visibleEdges()).get(n.id);
    return n.id + "\n" + d.in + " in, " + d.out + " out";
  }

  update();
})();
