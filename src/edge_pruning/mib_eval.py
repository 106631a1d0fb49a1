"""MIB's circuit evaluation (hannamw/MIB-circuit-track `evaluate_area_under_curve`,
with EAP-IG's `Graph.apply_topn`, `prune` and `evaluate_graph`), on our models.

m is the task's logit difference at the last real token, averaged over examples;
m(M) the full model, m(∅) every edge ablated (interchange: the counterfactual
prompt's activations). For k in 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5
and 1 the circuit C_k is the top int(k |E|) edges (|E|: MIB's edge count) by score
(`absolute`: by |score|), its nodes those with an outgoing and an incoming edge
(`input` always has one), then MIB's pruning to a fixed point: nodes without an
outgoing or incoming edge dropped, then edges from dropped nodes or into their inputs
(`logits` stays). f_k = (m(C_k) - m(∅)) / (m(M) - m(∅)); each circuit's size is its
edge count after pruning (MIB's `weighted_edge_count`). Over the ten k on a linear
axis, with trapezoids: `area_under` = ∫ f and `area_from_1` = ∫ |1 - f|. MIB's CPR
is `area_under` with signed ranking (absolute=False), its CMD `area_from_1` with
absolute ranking (print_results.py takes each from that run when both exist).

A submission of nine circuits is evaluated the same way, each circuit as given (then
pruned) at its k, and the full model at k = 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .errors import UserError
from .faithfulness import circuit_metric
from .mib import CURVE_FRACTIONS, SUBMISSION_FRACTIONS, MIBGraph, MIBMap, mib_map, mib_prune, node_rule, read_circuit, read_mib, top_n
from .tasks import Encoded, Task

logger = logging.getLogger("edge_pruning")


@dataclass
class MIBCurve:
    """One faithfulness curve, with MIB's summaries of it."""

    method: str
    ranking: str  # "signed" | "absolute" | "circuits" (nine given circuits)
    fractions: list[float]
    n_requested: list[int]  # int(k |E|) (circuits: the given circuit's edges)
    weighted_edge_counts: list[int]  # edges after MIB's pruning
    metrics: list[float]  # m(C_k)
    faithfulnesses: list[float]  # f_k
    area_under: float
    area_from_1: float
    average: float

    def mib_results(self) -> dict:
        """The dict MIB's run_evaluation.py pickles."""
        keys = ("weighted_edge_counts", "area_under", "area_from_1", "average", "faithfulnesses")
        return {k: getattr(self, k) for k in keys}


def mib_areas(fractions: list[float], faithfulnesses: list[float], log_scale: bool = False) -> tuple[float, float, float]:
    """(area_under, area_from_1, average) exactly as MIB's loop computes them: trapezoids
    between consecutive k (in the order given), on ln k when `log_scale`."""
    under = from_1 = 0.0
    for i in range(len(faithfulnesses) - 1):
        x1, x2 = fractions[i], fractions[i + 1]
        if log_scale:
            x1, x2 = math.log(x1), math.log(x2)
        f1, f2 = faithfulnesses[i], faithfulnesses[i + 1]
        from_1 += (x2 - x1) * ((abs(1.0 - f1) + abs(1.0 - f2)) / 2)
        under += (x2 - x1) * ((f1 + f2) / 2)
    return under, from_1, sum(faithfulnesses) / len(faithfulnesses)


@dataclass
class MIBScores:
    """CPR and CMD of one method, from its curves."""

    method: str
    cpr: float
    cmd: float
    curves: dict[str, MIBCurve] = field(default_factory=dict)


class MIBEvaluator:
    """Evaluates MIB circuits on one model, task and set of examples. The model must
    read K/V per query head, as MIB does (`--ungroup_kv` for grouped-query models)."""

    def __init__(self, model, task: Task, examples: list[Encoded], batch_size: int, pad_id: int) -> None:
        self.mapping: MIBMap = mib_map(model)
        if self.mapping.grouped:
            raise UserError("MIB reads K and V per query head: load the grouped-query model with --ungroup_kv")
        self.model, self.task, self.examples = model, task, examples
        self.batch_size, self.pad_id = batch_size, pad_id
        self.cfg = self.mapping.cfg
        self.n_edges = int(self.mapping.real.sum())
        self._full_logits: dict[int, torch.Tensor] = {}
        self._corrupted: dict[int, torch.Tensor | None] = {}  # the counterfactual run's states, per batch
        self.full_metric = self._metric(None)
        self.empty_metric = self.circuit_metric(torch.zeros_like(self.mapping.real))[0]

    def _metric(self, chosen: torch.Tensor | None) -> float:
        return circuit_metric(
            self.model, self.task, self.examples, chosen, self.batch_size, self.pad_id,
            full_cache=self._full_logits, corrupted_cache=self._corrupted,
        )[0]

    def circuit_metric(self, in_graph: torch.Tensor) -> tuple[float, int]:
        """m of an MIB circuit after MIB's pruning, and its pruned edge count."""
        edges, _ = mib_prune(self.cfg, in_graph, node_rule(self.cfg, in_graph))
        chosen = self.mapping.from_mib(edges, True, "circuit").float()  # GPT-2's pos_embeds stay clean
        return self._metric(chosen), int(edges.sum())

    def faithfulness(self, metric: float) -> float:
        span = self.full_metric - self.empty_metric
        return (metric - self.empty_metric) / span if span else float("nan")

    def _curve(self, method: str, ranking: str, circuits: list[torch.Tensor], fractions: list[float], requested: list[int]) -> MIBCurve:
        metrics, counts = [], []
        for in_graph in tqdm(circuits, desc=f"MIB {method} ({ranking})", leave=False):
            metric, count = self.circuit_metric(in_graph)
            metrics.append(metric)
            counts.append(count)
        f = [self.faithfulness(m) for m in metrics]
        under, from_1, average = mib_areas(fractions, f)
        return MIBCurve(method, ranking, list(fractions), requested, counts, metrics, f, under, from_1, average)

    def scores_curve(self, method: str, scores: torch.Tensor, absolute: bool) -> MIBCurve:
        """The curve of an importance-score file: top int(k |E|) edges at each k."""
        requested = [int(k * self.n_edges) for k in CURVE_FRACTIONS]
        circuits = [top_n(self.cfg, scores, n, absolute) for n in requested]
        return self._curve(method, "absolute" if absolute else "signed", circuits, list(CURVE_FRACTIONS), requested)

    def circuits_curve(self, method: str, circuits: dict[float, MIBGraph]) -> MIBCurve:
        """The curve of a submission of circuits, one per k (k = 1: the full model)."""
        fractions = sorted(circuits)
        for k in fractions:
            n = int(circuits[k].in_graph.sum())
            if n > int(k * self.n_edges):
                raise UserError(f"the circuit for k = {k} has {n} edges, more than int(k |E|) = {int(k * self.n_edges)}")
        graphs = [circuits[k].in_graph for k in fractions]
        if fractions[-1] != 1.0:
            fractions.append(1.0)
            graphs.append(self.mapping.real.clone())
        return self._curve(method, "circuits", graphs, fractions, [int(g.sum()) for g in graphs])

    def score(self, method: str, scores: torch.Tensor | None = None, circuits: dict[float, MIBGraph] | None = None) -> MIBScores:
        """CPR (signed ranking) and CMD (absolute ranking); a score set that is never
        negative ranks the same both ways and is evaluated once."""
        if circuits is not None:
            curve = self.circuits_curve(method, circuits)
            return MIBScores(method, curve.area_under, curve.area_from_1, {"circuits": curve})
        if scores is None:
            raise ValueError("score() needs scores or circuits")
        absolute = self.scores_curve(method, scores, absolute=True)
        if bool((scores[self.mapping.real] >= 0).all()):
            signed = MIBCurve(**{**asdict(absolute), "ranking": "signed"})
        else:
            signed = self.scores_curve(method, scores, absolute=False)
        return MIBScores(method, signed.area_under, absolute.area_from_1, {"signed": signed, "absolute": absolute})


# ----------------------------------------------------------------------------- reading circuits


def read_submission(folder: Path) -> dict[float, MIBGraph]:
    """A folder of nine circuits named by their k (`0.001.pt`, ... `0.5.json`)."""
    circuits = {}
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.json")]):
        try:
            k = float(path.stem)
        except ValueError:
            continue
        if k not in SUBMISSION_FRACTIONS:
            raise UserError(f"circuit file named for k = {k}, not one of MIB's {SUBMISSION_FRACTIONS}", path)
        circuits[k] = read_mib(path)
    return circuits


def load_circuit(spec: str, evaluator: MIBEvaluator) -> tuple[str, torch.Tensor | None, dict[float, MIBGraph] | None]:
    """NAME=PATH: an MIB file (.json/.pt with `cfg`), a folder of nine MIB circuits,
    or a circuit of ours (a pruned checkpoint or its mask folder, an edges.json, a
    scored circuit JSON). Returns (name, MIB scores or None, circuits or None)."""
    name, sep, raw = spec.partition("=")
    if not sep or not name or not raw:
        raise UserError("--circuit takes NAME=PATH", spec)
    path = Path(raw)
    mapping = evaluator.mapping
    if path.is_dir() and not (path / "config.json").exists() and not any(path.glob("*.safetensors")):
        circuits = read_submission(path)
        if not circuits:
            raise UserError("folder holds neither a checkpoint nor MIB circuits named by their k", path)
        for k, graph in circuits.items():
            if graph.cfg != mapping.cfg:
                raise UserError(f"cfg {asdict(graph.cfg)} is not this model's {asdict(mapping.cfg)}", path / f"{k}")
        return name, None, circuits
    if path.suffix in (".pt", ".json") and path.is_file() and (path.suffix == ".pt" or '"cfg"' in path.read_text()[:200]):
        graph = read_mib(path)
        if graph.cfg != mapping.cfg:
            raise UserError(f"cfg {asdict(graph.cfg)} is not this model's {asdict(mapping.cfg)}", path)
        return name, graph.scores, None
    ours = read_circuit(path, evaluator.model)
    return name, mapping.to_mib(ours.scores.float()), None


# ----------------------------------------------------------------------------- command line


def _save_results(out: Path, method: str, task: str, model: str, split: str, result: MIBScores) -> None:
    """MIB's results layout: results/{method}_patching_edge/{task}_{model}_{split}_abs-{bool}.pkl (and .json)."""
    folder = out / "results" / f"{method}_patching_edge"
    folder.mkdir(parents=True, exist_ok=True)
    for ranking, curve in result.curves.items():
        absolute = {"absolute": True, "signed": False}.get(ranking, True)
        stem = folder / f"{task}_{model}_{split}_abs-{absolute}"
        with open(f"{stem}.pkl", "wb") as f:
            pickle.dump(curve.mib_results(), f)
        Path(f"{stem}.json").write_text(json.dumps(asdict(curve), indent=2))


def read_results(folder: Path, split: str) -> list[MIBScores]:
    """The methods of an earlier output folder (its results/*/*.json curves)."""
    out = []
    for method_dir in sorted((folder / "results").glob("*_patching_edge")):
        curves = {}
        for path in sorted(method_dir.glob(f"*_{split}_abs-*.json")):
            curve = MIBCurve(**json.loads(path.read_text()))
            curves[curve.ranking] = curve
        if "circuits" in curves:
            c = curves["circuits"]
            out.append(MIBScores(c.method, c.area_under, c.area_from_1, curves))
        elif curves:
            out.append(MIBScores(curves["signed"].method, curves["signed"].area_under, curves["absolute"].area_from_1, curves))
    return out


def _plot(results: list[MIBScores], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        for ax, ranking in zip(axes, ("signed", "absolute")):
            curve = r.curves.get(ranking) or r.curves.get("circuits")
            label = f"{r.method} (" + (f"CPR {r.cpr:.3f}" if ranking == "signed" else f"CMD {r.cmd:.3f}") + ")"
            ax.plot(curve.fractions, curve.faithfulnesses, "o-", label=label)
    for ax, what in zip(axes, ("signed ranking (CPR: area under f)", "absolute ranking (CMD: area of |1 - f|)")):
        ax.set_xscale("log")
        ax.set_xlabel("k (fraction of MIB's edges)")
        ax.set_ylabel("faithfulness f_k")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(what, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@contextlib.contextmanager
def _log_to(path: Path):
    """Our logger to `path` and the console inside the block."""
    handlers = [logging.FileHandler(path), logging.StreamHandler(sys.stdout)]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


def mib_eval_main(argv: list[str] | None = None) -> dict:
    """`src/eval/mib.py`: CPR, CMD and the f_k curves of circuits (and of EAP / EAP-IG
    scores computed here) on a model and an MIB task."""
    from .attribution import METHODS, edge_attribution
    from .cli import add_ungroup_kv_flag
    from .models import load_circuit_model, load_tokenizer
    from .tasks import get_task, pad_token_id
    from .tasks.mib import MIB_TASKS, load_mib_rows

    p = argparse.ArgumentParser(description="MIB's circuit evaluation (CPR, CMD, f_k) of circuits and attribution scores")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-t", "--task", default="mib-ioi", choices=sorted(MIB_TASKS))
    p.add_argument("-d", "--data", required=True, help="a local copy of the MIB dataset (see tasks/mib.py)")
    p.add_argument("-s", "--split", default="validation", help="MIB's default: validation")
    p.add_argument("-n", "--num-examples", type=int, default=None, help="the first N examples that pass MIB's filter (its --head)")
    p.add_argument("-b", "--batch-size", type=int, default=20, help="MIB's default: 20")
    add_ungroup_kv_flag(p)
    p.add_argument("--mib-model", help="the model's name in MIB's folder and file names (default: the model folder's)")
    p.add_argument("--circuit", action="append", default=[], metavar="NAME=PATH",
                   help="an MIB .json/.pt, a folder of nine MIB circuits, or a circuit of ours; repeatable")
    p.add_argument("--attribute", nargs="*", default=[], choices=list(METHODS), help="score these methods here first")
    p.add_argument("--attribution-split", default="train")
    p.add_argument("--n-attribution", type=int, default=32)
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--include", nargs="*", default=[], metavar="OUT",
                   help="output folders of earlier runs on the same model, task and examples: their methods join the table")
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args(argv)
    if not args.circuit and not args.attribute and not args.include:
        raise UserError("nothing to evaluate: give --circuit NAME=PATH, --attribute METHOD or --include OUT")
    if any(not all(c.isalnum() or c in "-_." for c in spec.partition("=")[0]) for spec in args.circuit):
        raise UserError("--circuit NAME may hold only letters, digits, '-', '_' and '.' (it names files)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _log_to(out / "mib_eval.log"):
        task = get_task(args.task)
        model = load_circuit_model(args.model, with_embedding_nodes=True, ungroup_kv=args.ungroup_kv)
        model.freeze_model_weights()
        tokenizer = load_tokenizer(args.model)
        pad_id = pad_token_id(tokenizer)
        config = task.dataset_config
        # As MIB's --head: the first N examples that pass the filter (filter, then cut).
        examples = task.encode_rows(load_mib_rows(args.data, args.split, config), tokenizer)[: args.num_examples]
        if not examples:
            raise UserError(f"no {args.split} examples left after MIB's filter", args.data)
        start = time.time()
        evaluator = MIBEvaluator(model, task, examples, args.batch_size, pad_id)
        mib_task = args.task.removeprefix("mib-")
        mib_model = args.mib_model or Path(args.model).name
        logger.info(f"MIB {mib_task}_{mib_model}: {len(examples)} {args.split} examples, {evaluator.n_edges} edges, "
                    f"m(M) {evaluator.full_metric:.4f}, m(empty) {evaluator.empty_metric:.4f}")  # fmt: skip
        todo: list[tuple[str, torch.Tensor | None, dict | None]] = []
        seconds: dict[str, float] = {}
        if args.attribute:
            train = task.encode_rows(load_mib_rows(args.data, args.attribution_split, config), tokenizer)[: args.n_attribution]
            for method in args.attribute:
                t0 = time.time()
                scores = edge_attribution(model, task, train, method, steps=args.ig_steps, batch_size=args.batch_size, pad_id=pad_id).scores
                seconds[method] = time.time() - t0
                mib_scores = evaluator.mapping.to_mib(scores)
                graph = MIBGraph(evaluator.cfg, mib_scores, torch.zeros_like(evaluator.mapping.real), torch.zeros(evaluator.cfg.n_forward, dtype=torch.bool))
                folder = out / "circuits" / f"{method}_patching_edge" / f"{mib_task}_{mib_model}"
                folder.mkdir(parents=True, exist_ok=True)
                graph.save(folder / "importances.pt")
                todo.append((method, mib_scores, None))
        todo += [load_circuit(spec, evaluator) for spec in args.circuit]
        results = []
        for folder in args.include:
            earlier = json.loads((Path(folder) / "summary.json").read_text())
            same = all(earlier[k] == v for k, v in (("task", mib_task), ("model", mib_model), ("split", args.split),
                                                    ("n_examples", len(examples)), ("n_edges", evaluator.n_edges)))
            if not same or abs(earlier["full_metric"] - evaluator.full_metric) > 1e-4:
                raise UserError("--include: another model, task or set of examples", folder)
            for earlier_result in read_results(Path(folder), args.split):
                _save_results(out, earlier_result.method, mib_task, mib_model, args.split, earlier_result)
                results.append(earlier_result)
            seconds.update({f"{k} ({folder})": v for k, v in earlier["seconds"].items()})
        for name, scores, circuits in todo:
            t0 = time.time()
            result = evaluator.score(name, scores, circuits)
            seconds[f"{name} (evaluation)"] = time.time() - t0
            _save_results(out, name, mib_task, mib_model, args.split, result)
            results.append(result)
            logger.info(f"{name}: CPR {result.cpr:.4f}, CMD {result.cmd:.4f}")
        title = f"MIB {mib_task}_{mib_model}: {len(examples)} {args.split} examples, {evaluator.n_edges} edges"
        _plot(results, out / "mib_faithfulness.png", title)
        summary = {
            "task": mib_task,
            "model": mib_model,
            "model_path": args.model,
            "data": args.data,
            "split": args.split,
            "n_examples": len(examples),
            "n_edges": evaluator.n_edges,
            "full_metric": evaluator.full_metric,
            "empty_metric": evaluator.empty_metric,
            "scores": {r.method: {"CPR": r.cpr, "CMD": r.cmd} for r in results},
            "seconds": {**seconds, "total": time.time() - start},
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print("method".ljust(28) + "CPR (higher better)   CMD (lower better)")
        for r in results:
            print(f"{r.method:<28}{r.cpr:>10.4f}{r.cmd:>21.4f}")
    return summary
