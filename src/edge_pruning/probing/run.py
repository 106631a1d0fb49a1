"""`python -m edge_pruning probe --config configs/circuit_probing/NAME.yaml`: one
experiment. For every (model, variable, operation) of the config's probe grids: the
unmasked block's kNN accuracy, the probe's training, the masked block's kNN accuracy,
the circuit's size and the causal test on each evaluation task; then the baselines,
the requested circuit overlaps, `results.json`, the circuits (safetensors) and a plot.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from .baselines import LOCATIONS, ClassifierSettings, amnesic_probe, block_vectors, classifier_accuracy, train_classifier
from .config import load_config
from .data import Split, dataset_spec
from .edges import EdgeProbeGrid, run_edge_probe
from .evaluation import ablation_test, block_updates, circuit_overlap, nearest_neighbour_accuracy
from .fit import FitSettings, fit_probe
from .masks import MaskMethod, MaskUnit
from .probe import CircuitProbe, Operation
from .train import load_probed_model

logger = logging.getLogger(__name__)


class PlotKind(str, Enum):
    VARIABLES = "variables"  # kNN accuracy per variable and operation
    CHECKPOINTS = "checkpoints"  # accuracy across training (model keys are steps)


@dataclass
class ProbeGrid:
    """Probes for every model x variable x operation listed."""

    variables: list[str]
    operations: list[Operation] = field(default_factory=lambda: [Operation.ATTN, Operation.MLP])
    models: list[str] | None = None  # keys of `models` (None: all)
    task: int = 0  # the task of the dataset whose data train and test the probe
    eval_tasks: list[int] | None = None  # tasks the causal test measures (None: [task])


@dataclass
class ProbeSettings:
    layer: int = 0
    position: int = -1  # the labelled token: the '=' (last), as the original
    method: MaskMethod = MaskMethod.CONTINUOUS
    unit: MaskUnit = MaskUnit.NEURON
    mask_init: float | None = None  # None: 0 (continuous sparsification) or l0.INIT_MEAN
    train_size: int | None = None  # probe on a random subset of the task's training split
    knn_per_class: int | None = 1
    random_ablations: int = 5
    fit: FitSettings = field(default_factory=FitSettings)


@dataclass
class BaselineSettings:
    classifiers: bool = True  # linear and MLP probes
    amnesic: bool = True  # LEACE
    locations: list[str] = field(default_factory=lambda: list(LOCATIONS))
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)


@dataclass
class ProbeConfig:
    dataset: str
    models: dict[str, str]
    probes: list[ProbeGrid]
    output_dir: str
    description: str = ""
    settings: ProbeSettings = field(default_factory=ProbeSettings)
    baselines: BaselineSettings | None = None
    overlaps: list[list[str]] = field(default_factory=list)  # pairs of probe ids
    edge_probes: list[EdgeProbeGrid] = field(default_factory=list)  # beyond the paper: edge masks
    plot: PlotKind = PlotKind.VARIABLES

    def check(self, where: str) -> None:
        spec = dataset_spec(self.dataset, f"{where}: dataset")
        for grid in [*self.probes, *self.edge_probes]:
            for key in grid.models or []:
                if key not in self.models:
                    raise UserError(f"probe grid names model {key!r}, not one of {sorted(self.models)}", f"{where}: probes")
            for t in [grid.task, *(getattr(grid, "eval_tasks", None) or [])]:
                if not 0 <= t < len(spec.tasks):
                    raise UserError(f"task {t} does not exist (the dataset has {len(spec.tasks)})", f"{where}: probes")
            for v in grid.variables:
                if v not in spec.tasks[grid.task].all_variables():
                    raise UserError(f"task {grid.task} has no variable {v!r} (it has {list(spec.tasks[grid.task].all_variables())})", f"{where}: probes")
        ids = {probe_id(m, g.task, v, op) for g in self.probes for m in (g.models or self.models) for v in g.variables for op in g.operations}
        for pair in self.overlaps:
            if len(pair) != 2 or not set(pair) <= ids:
                raise UserError(f"an overlap names two probe ids of this config, got {pair}", f"{where}: overlaps")
        if self.plot is PlotKind.CHECKPOINTS and not all(k.isdigit() for k in self.models):
            raise UserError("a checkpoints plot needs model keys that are training steps", f"{where}: models")


def probe_id(model: str, task: int, variable: str, operation: Operation | str) -> str:
    return f"{model}:task{task}:{variable}:{Operation(operation).value}"


@dataclass
class ProbeRecord:
    id: str
    model: str
    task: int
    variable: str
    operation: str
    n_classes: int
    train_examples: int
    test_examples: int
    knn_test_acc: float
    knn_full_model_acc: float  # the same probe on the unmasked block
    majority_acc: float
    circuit_weights: int
    maskable_weights: int
    final_loss: float
    ablation: dict  # eval task -> {vanilla, ablated, random_ablated, random_mean}


def _load_models(cfg: ProbeConfig, root: Path) -> dict[str, torch.nn.Module]:
    out = {}
    for key, path in cfg.models.items():
        p = Path(path)
        out[key] = load_probed_model(p if p.is_absolute() else root / p)
    return out


def _load_circuit_model(path: str, root: Path):
    """Edge Pruning's circuit model of a probed checkpoint, every mask on, embeddings as nodes."""
    from ..models import load_circuit_model

    p = Path(path)
    p = p if p.is_absolute() else root / p
    load_probed_model(p)  # the same check and message as for the circuit probes
    return load_circuit_model(str(p), with_embedding_nodes=True).float()  # a float16 checkpoint loads as such


def _probe_data(split: Split, variable: str, size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, values = split.inputs, split.variables[variable]
    if size is not None and size < len(values):
        index = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed))[:size]
        inputs, values = inputs[index], values[index]
    return inputs, values


def run_probe(model, key: str, grid: ProbeGrid, variable: str, op: Operation, splits, s: ProbeSettings, out: Path) -> ProbeRecord:
    from safetensors.torch import save_file

    train, test = splits[grid.task]
    train_x, train_y = _probe_data(train, variable, s.train_size, s.fit.seed)
    test_y = test.variables[variable]
    probe = CircuitProbe(copy.deepcopy(model), s.layer, op, s.method, s.unit, s.mask_init)
    position = s.position
    with probe.state(use_mask=False):
        full = nearest_neighbour_accuracy(block_updates(probe, train_x, position), train_y,
                                          block_updates(probe, test.inputs, position), test_y, s.knn_per_class, s.fit.seed)  # fmt: skip
    torch.manual_seed(s.fit.seed)
    history = fit_probe(probe, train_x, train_y, position, s.fit)
    masked = nearest_neighbour_accuracy(block_updates(probe, train_x, position), train_y,
                                        block_updates(probe, test.inputs, position), test_y, s.knn_per_class, s.fit.seed)  # fmt: skip
    circuit = probe.circuit()
    pid = probe_id(key, grid.task, variable, op)
    save_file({k: v.to(torch.uint8).contiguous() for k, v in circuit.items()}, out / "circuits" / f"{pid.replace(':', '_')}.safetensors")
    ablation = {}
    for t in grid.eval_tasks or [grid.task]:
        res = ablation_test(probe, splits[t][1].inputs, splits[t][1].labels, s.random_ablations, s.fit.seed)
        ablation[f"task{t}"] = {**asdict(res), "random_mean": res.random_mean}
    n_classes = int(torch.cat([train.variables[variable], test_y]).max()) + 1
    return ProbeRecord(
        id=pid, model=key, task=grid.task, variable=variable, operation=op.value, n_classes=n_classes,
        train_examples=len(train_y), test_examples=len(test_y), knn_test_acc=masked.accuracy,
        knn_full_model_acc=full.accuracy, majority_acc=masked.majority,
        circuit_weights=int(sum(int(c.sum()) for c in circuit.values())), maskable_weights=probe.n_weights(),
        final_loss=history[-1].loss if history else float("nan"), ablation=ablation,
    )  # fmt: skip


def run_baselines(model, key: str, task: int, variable: str, splits, cfg: ProbeConfig) -> dict:
    b, s = cfg.baselines, cfg.settings
    train, test = splits[task]
    train_x, train_y = _probe_data(train, variable, s.train_size, s.fit.seed)
    test_y = test.variables[variable]
    n_classes = int(torch.cat([train.variables[variable], test_y]).max()) + 1
    row: dict = {"model": key, "task": task, "variable": variable}
    if b.classifiers:
        tr = block_vectors(model, train_x, s.layer, s.position)
        te = block_vectors(model, test.inputs, s.layer, s.position)
        for loc in b.locations:
            for kind in ("linear", "mlp"):
                net = train_classifier(kind, tr[loc], train_y, n_classes, b.classifier)
                row[f"{kind}_{loc}"] = classifier_accuracy(net, te[loc], test_y)
    if b.amnesic:
        for loc in ("resid_mid", "resid_post"):
            res = amnesic_probe(model, train_x, train_y, test.inputs, test_y, test.labels, s.layer, s.position, loc, n_classes, b.classifier)
            row[f"amnesic_{loc}"] = asdict(res)
    return row


def run(cfg: ProbeConfig, root: Path = Path(".")) -> dict:
    out = Path(cfg.output_dir)
    out = out if out.is_absolute() else root / out
    (out / "circuits").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "probe.log", mode="w")
    logging.getLogger("edge_pruning.probing").addHandler(handler)
    logging.getLogger("edge_pruning.probing").setLevel(logging.INFO)
    try:
        splits = dataset_spec(cfg.dataset).generate()
        models = _load_models(cfg, root)
        jobs = [(key, grid, v, op) for grid in cfg.probes for key in (grid.models or list(cfg.models))
                for v in grid.variables for op in grid.operations]  # fmt: skip
        records = []
        for key, grid, variable, op in tqdm(jobs, desc="circuit probes"):
            rec = run_probe(models[key], key, grid, variable, op, splits, cfg.settings, out)
            logger.info("%s", json.dumps(asdict(rec)))
            records.append(rec)
        baselines = []
        if cfg.baselines is not None:
            seen = sorted({(key, grid.task, v) for key, grid, v, _ in jobs}, key=lambda t: (list(cfg.models).index(t[0]), t[1], t[2]))
            for key, task, variable in tqdm(seen, desc="baselines"):
                row = run_baselines(models[key], key, task, variable, splits, cfg)
                logger.info("%s", json.dumps(row))
                baselines.append(row)
        overlaps = []
        if cfg.overlaps:
            from safetensors.torch import load_file

            for a, b in cfg.overlaps:
                ca = load_file(out / "circuits" / f"{a.replace(':', '_')}.safetensors")
                cb = load_file(out / "circuits" / f"{b.replace(':', '_')}.safetensors")
                ov = circuit_overlap(ca, cb)
                overlaps.append({"a": a, "b": b, **asdict(ov), "ratio_to_chance": ov.ratio_to_chance})
        edge_records = []
        edge_jobs = [(key, grid, reader, v) for grid in cfg.edge_probes for key in (grid.models or list(cfg.models))
                     for reader in grid.readers for v in grid.variables]  # fmt: skip
        for key, grid, reader, variable in tqdm(edge_jobs, desc="edge probes"):
            circuit_model = _load_circuit_model(cfg.models[key], root)
            rec = run_edge_probe(circuit_model, key, grid, reader, variable, splits, cfg.settings.position,
                                 cfg.settings.knn_per_class)  # fmt: skip
            logger.info("%s", json.dumps(asdict(rec)))
            edge_records.append(asdict(rec))
        results = {"description": cfg.description, "config": _plain(asdict(cfg)), "probes": [asdict(r) for r in records],
                   "baselines": baselines, "overlaps": overlaps, "edge_probes": edge_records}  # fmt: skip
        (out / "results.json").write_text(json.dumps(results, indent=1))
        from .plots import plot_results

        plot_results(results, cfg.plot, out / "knn_accuracy.png")
        return results
    finally:
        logging.getLogger("edge_pruning.probing").removeHandler(handler)


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def probe_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="edge_pruning probe", description="Circuit probing: one experiment from its config")
    p.add_argument("--config", required=True, help="an experiment config (configs/circuit_probing/*.yaml)")
    p.add_argument("--output-dir", dest="output_dir", default=None, help="override the config's output_dir")
    p.add_argument("--epochs", type=int, default=None, help="override the probes' epochs (quick checks)")
    args = p.parse_args(argv)
    cfg = load_config(ProbeConfig, args.config, {"output_dir": args.output_dir} if args.output_dir else None)
    if args.epochs is not None:
        cfg.settings.fit.epochs = args.epochs
    results = run(cfg)
    for r in results["probes"]:
        abl = ", ".join(f"{t}: {a['vanilla']:.3f} -> {a['ablated']:.3f} (random {a['random_mean'] if a['random_mean'] is None else round(a['random_mean'], 3)})"
                        for t, a in r["ablation"].items())  # fmt: skip
        tqdm.write(f"{r['id']}: kNN {r['knn_test_acc']:.3f} (full block {r['knn_full_model_acc']:.3f}, majority {r['majority_acc']:.3f}), "
                   f"{r['circuit_weights']}/{r['maskable_weights']} weights; accuracy {abl}")  # fmt: skip
    tqdm.write(f"results written to {cfg.output_dir}/results.json")
    return results
