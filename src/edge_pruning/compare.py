"""Compare Edge Pruning with EAP and EAP-IG on one model and task: the same graph,
the same intervention, circuits of the same sizes, one table and one plot. Its areas
(`f_area`, `one_minus_f_area`) are ours; MIB's CPR and CMD are `src/eval/mib.py`'s.

    python src/eval/compare_methods.py -m data/models/smollm2-135m -t ioi \
        --ep-runs runs/smollm2_ioi/* -o assets/smollm2_ioi_comparison
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from . import l0
from .attribution import METHODS, edge_attribution
from .cli import load_circuit_model
from .evaluation import set_thresholds_for_sparsity
from .faithfulness import FRACTIONS, CurvePoint, area_summaries, circuit_metric, export_scored_circuit, save_curves
from .selection import top_n_edges

logger = logging.getLogger("edge_pruning")
# The methods compared by default (the recorded comparison's); --methods takes any of METHODS.
COMPARED = ("eap", "eap-ig-inputs", "eap-ig-activations")


def load_mask_parameters(model, checkpoint: str | Path) -> None:
    """Copy a pruned checkpoint's mask parameters into `model` (same graph)."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(Path(checkpoint).glob("*.safetensors")):
        state.update({k: v for k, v in load_file(file).items() if "circuit_masks." in k})
    if not state:
        raise ValueError(f"{checkpoint} holds no mask parameters: is it a pruned checkpoint?")
    masks = model.circuit_masks
    with torch.no_grad():
        for key, value in state.items():
            name = key.split("circuit_masks.")[-1]
            param = getattr(masks, name)
            if param.shape != value.shape:
                raise ValueError(f"{checkpoint}: {name} has shape {tuple(value.shape)}, the model {tuple(param.shape)}")
            param.copy_(value)


def edges_to_reach_kl(points: list[CurvePoint], threshold: float) -> int | None:
    ok = [p.n_edges for p in points if p.kl <= threshold]
    return min(ok) if ok else None


def compare_main(argv: list[str] | None = None) -> dict:
    from transformers import AutoTokenizer

    from .pruning import encode_split, pad_token_id
    from .tasks import get_task

    p = argparse.ArgumentParser(description="Faithfulness curves of Edge Pruning, EAP and EAP-IG")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-t", "--task", default="ioi")
    p.add_argument("-w", "--with-embedding-nodes", action="store_true")
    p.add_argument("--ep-runs", nargs="*", default=[], help="pruned checkpoints of the same model (Edge Pruning)")
    p.add_argument("--methods", nargs="*", default=list(COMPARED), choices=list(METHODS))
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--n-attribution", type=int, default=32, help="train examples scored by EAP/EAP-IG")
    p.add_argument("--n-eval", type=int, default=64, help="validation examples every circuit is evaluated on")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--fractions", type=float, nargs="*", default=list(FRACTIONS))
    p.add_argument("--kl-threshold", type=float, default=0.25)
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    task = get_task(args.task)
    model = load_circuit_model(args.model, args.with_embedding_nodes)
    model.freeze_model_weights()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    pad_id = pad_token_id(tokenizer)
    train = encode_split(task, tokenizer, None, "train", 512, args.n_attribution)
    evals = encode_split(task, tokenizer, None, "validation", 512, args.n_eval)
    graph = model.circuit_graph
    n_total = graph.n_edges

    full_logits: dict[int, torch.Tensor] = {}  # the full model's logits, computed once
    full_metric, _ = circuit_metric(model, task, evals, None, args.batch_size, pad_id, full_cache=full_logits)
    empty = torch.zeros(graph.n_readers, graph.n_writers)
    empty_metric, empty_kl = circuit_metric(model, task, evals, empty, args.batch_size, pad_id, full_cache=full_logits)
    span = full_metric - empty_metric

    def point(method: str, chosen: torch.Tensor) -> CurvePoint:
        metric, kl = circuit_metric(model, task, evals, chosen, args.batch_size, pad_id, full_cache=full_logits)
        n = int(chosen.sum())
        return CurvePoint(method, n, n / n_total, metric, kl, (metric - empty_metric) / span if span else float("nan"))

    sizes = sorted({max(1, round(f * n_total)) for f in args.fractions})
    points: list[CurvePoint] = []
    summaries: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    for method in args.methods:
        start = time.time()
        scores = edge_attribution(model, task, train, method, steps=args.ig_steps, batch_size=args.batch_size, pad_id=pad_id).scores
        timings[method] = time.time() - start
        mine = [point(method, top_n_edges(graph, scores, n)) for n in sizes]
        points += mine
        summaries[method] = area_summaries([q.edge_fraction for q in mine], [q.faithfulness for q in mine])
        mid = min(sizes, key=lambda n: abs(n - 0.02 * n_total))
        export_scored_circuit(out / f"circuit_{method}.json", graph, method, scores, top_n_edges(graph, scores, mid), {"task": task.name, "model": args.model})
        logger.info(f"{method}: {timings[method]:.1f} s, f area {summaries[method]['f_area']:.3f}")

    ep_checkpoints = []
    for run in args.ep_runs:
        load_mask_parameters(model, run)
        set_thresholds_for_sparsity(model)
        edges, nodes = model._eval_masks()
        chosen = graph.effective_edges(edges, nodes).float()
        ep_checkpoints.append((int(chosen.sum()), run, model.circuit_masks.edge_log_alphas.detach().clone()))
        pt = point("edge-pruning", chosen)
        points.append(pt)
        export_scored_circuit(out / f"circuit_edge-pruning_{Path(run).name}.json", graph, "edge-pruning", ep_checkpoints[-1][2], chosen, {"task": task.name, "model": args.model, "checkpoint": str(run)})
    if ep_checkpoints:
        # At each compared size, rank edges by log_alpha of the run whose circuit is nearest in size.
        ranked = []
        for n in sizes:
            _, _, log_alpha = min(ep_checkpoints, key=lambda c: abs(c[0] - n))
            ranked.append(point("edge-pruning (ranked)", top_n_edges(graph, l0.soft_mask(log_alpha), n)))
        points += ranked
        summaries["edge-pruning (ranked)"] = area_summaries([q.edge_fraction for q in ranked], [q.faithfulness for q in ranked])

    title = f"{task.name}: {Path(args.model).name}, {len(evals)} validation examples"
    paths = save_curves(points, summaries, out, title)
    methods = dict.fromkeys(q.method for q in points)
    summary = {
        "task": task.name,
        "model": args.model,
        "n_edges_total": n_total,
        "full_metric": full_metric,
        "empty_metric": empty_metric,
        "empty_kl": empty_kl,
        "attribution_seconds": timings,
        "areas": summaries,
        f"edges_to_reach_kl_{args.kl_threshold}": {m: edges_to_reach_kl([q for q in points if q.method == m], args.kl_threshold) for m in methods},
        "best_kl": {m: min(q.kl for q in points if q.method == m) for m in methods},
        "files": {k: str(v) for k, v in paths.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary
