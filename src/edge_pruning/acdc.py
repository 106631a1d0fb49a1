"""ACDC (Conmy et al. 2023, "Towards Automated Circuit Discovery") on the circuit models.

Start from the full graph, with M the metric of the current circuit (KL(full ||
circuit) by default: 0 at the start). Visit the readers in reverse topological order
(`resid_post`, then from the last layer down each layer's MLP, V, K and Q readers);
for each of a reader's incoming edges (its latest writer first) remove the edge and
measure M'; if M' - M < τ the edge stays removed and M becomes M', else it is put
back. Removed edges stay removed. The circuit is the kept edges.

The models are ours, masks and kernel included: a candidate circuit is a
`masks_override` matrix, and a removed edge carries what Edge Pruning's removed edges
carry (interchange, zero or mean ablation). Three things make it fast without
changing what it computes:

- A prefix cache: an edge into a reader of layer l changes nothing below l, and in
  reverse order no reader below l has changed yet, so the writers before l hold the
  full model's outputs. Those deltas are computed once, and each evaluation runs only
  the layers from l on (`CircuitModelMixin.resume_from_layer`); `resid_post`'s
  edges run no layer at all.
- Dead readers: a reader whose writer nodes have no kept outgoing edge cannot reach
  the output, so removing its edges changes nothing (exactly); they are removed
  without an evaluation.
- All examples are evaluated in a few large batches, their full-model logits once.

A run saves its state (the current circuit, where it is, M, the counts) to
`acdc_state.pt` after every reader and every `save_every` seconds, and continues
from it when started again with the same settings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .ablation import Ablation
from .circuit import PrefixState, save_edges_json
from .errors import UserError
from .evaluation import batches, corrupted_states, model_logits, to_device
from .tasks import Encoded, Task

logger = logging.getLogger("edge_pruning.acdc")

STATE_FILE = "acdc_state.pt"


class ACDCMetric(str, Enum):
    """What ACDC keeps small. KL: the task's loss, KL(full || circuit) (Edge Pruning's
    objective, ACDC's default for IOI); TASK: minus the task's attribution metric
    (logit or probability difference, log-probability of the target)."""

    KL = "kl"
    TASK = "task"


@dataclass(frozen=True)
class ACDCConfig:
    """The settings a saved state must match to be continued."""

    tau: float
    metric: ACDCMetric = ACDCMetric.KL
    ablation: Ablation = Ablation.INTERCHANGE
    n_examples: int = 0
    n_edges: int = 0

    def as_dict(self) -> dict:
        return {"tau": self.tau, "metric": self.metric.value, "ablation": self.ablation.value,
                "n_examples": self.n_examples, "n_edges": self.n_edges}  # fmt: skip


@dataclass
class ACDCState:
    """Where a run is: the kept edges, each tested edge's M' - M, the next reader (a
    position in the visiting order) and the writer below which its edges are left."""

    current: torch.Tensor  # (readers, writers) bool: kept edges
    effects: torch.Tensor  # (readers, writers) float: M' - M of tested edges, NaN if untested
    position: int = 0
    next_writer: int | None = None  # None: the reader at `position` has not started
    metric: float = 0.0
    n_evaluations: int = 0
    n_removed_unevaluated: int = 0  # edges of dead readers
    seconds: float = 0.0
    eval_seconds: float = 0.0
    finished: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ACDCResult:
    """One finished (or stopped) run, for results files."""

    tau: float
    metric: str
    ablation: str
    n_examples: int
    finished: bool
    n_edges: int
    n_edges_total: int
    n_edges_sanitized: int
    final_metric: float
    n_evaluations: int
    n_removed_unevaluated: int
    seconds: float
    seconds_per_evaluation: float
    evaluation: dict = field(default_factory=dict)


def visiting_order(graph) -> list[int]:
    """Readers in reverse topological order: later sites first, and within a layer's
    attention V, then K, then Q readers (each from the last head down)."""
    return list(range(graph.n_readers - 1, -1, -1))


class CircuitMetric:
    """M of a circuit on fixed examples. The full model's logits, the writers' deltas
    x_w - c_w and the corrupted prefix sums at each layer are computed once."""

    def __init__(
        self,
        model,
        task: Task,
        examples: list[Encoded],
        metric: ACDCMetric,
        ablation: Ablation,
        batch_size: int,
        pad_id: int,
        mean_states: torch.Tensor | None = None,
    ) -> None:
        if not examples:
            raise ValueError("ACDC needs at least one example")
        self.model, self.task, self.metric = model, task, ACDCMetric(metric)
        self.n_examples = len(examples)
        graph = model.circuit_graph
        n_layers = graph.final_site.layer
        # Writers before each layer's attention site, and before resid_post.
        self.prefix_len = [graph.attn_site(l).n_writers_before for l in range(n_layers)] + [graph.final_site.n_writers_before]
        device = next(model.parameters()).device
        model.eval()
        self.chunks = []
        with torch.no_grad():
            for batch in batches(examples, batch_size, pad_id):
                batch = to_device(batch, device)
                corr_x = corrupted_states(model, batch, ablation.value, mean_states)
                clean = model(batch["input_ids"], attention_mask=batch["attention_mask"], output_writer_states=True).writer_states
                deltas = clean if corr_x is None else clean - corr_x
                sums = None
                if corr_x is not None:
                    cum = torch.cumsum(corr_x, 0)
                    sums = [cum[p - 1] if p else torch.zeros_like(cum[0]) for p in self.prefix_len]
                full = model_logits(model, batch, circuit=False)
                self.chunks.append((batch, corr_x, deltas, sums, full))

    def __call__(self, masks: torch.Tensor, layer: int | None = None) -> float:
        """M of the circuit `masks` (readers x writers). `layer`: every reader below it
        has the full model's masks, so the forward starts there."""
        total = 0.0
        model = self.model
        with torch.no_grad(), model.masks_override(masks.to(next(model.parameters()).dtype)):
            for batch, corr_x, deltas, sums, full in self.chunks:
                if layer is None:
                    logits = model_logits(model, batch, circuit=True, corr_x=corr_x)
                else:
                    p = self.prefix_len[layer]
                    prefix = PrefixState(layer, deltas[:p], None if sums is None else sums[layer])
                    with model.resume_from_layer(prefix):
                        logits = model_logits(model, batch, circuit=True, corr_x=corr_x)
                n = batch["input_ids"].shape[0]
                if self.metric is ACDCMetric.KL:
                    total += self.task.loss(logits, full, batch).item() * n
                else:
                    total -= self.task.attribution_metric(logits, batch).sum().item()
        return total / self.n_examples


class ACDCStopped(Exception):
    """Raised inside the loop when the run's evaluation or time budget is spent."""


def load_state(path: Path, config: ACDCConfig) -> ACDCState | None:
    """The saved state at `path` if there is one; an error if it was made with other settings."""
    if not path.is_file():
        return None
    data = torch.load(path, weights_only=True)
    saved = data.get("config", {})
    for key, value in config.as_dict().items():
        if saved.get(key) != value:
            raise UserError(f"saved ACDC state has {key}={saved.get(key)!r}, this run {value!r}; use another output folder", path)
    return ACDCState(**data["state"])


def save_state(path: Path, config: ACDCConfig, state: ACDCState) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"config": config.as_dict(), "state": state.to_dict()}, tmp)
    os.replace(tmp, path)


def run_acdc(
    model,
    metric_fn: CircuitMetric,
    config: ACDCConfig,
    state_path: str | os.PathLike | None = None,
    max_evaluations: int | None = None,
    max_seconds: float | None = None,
    save_every: float = 60.0,
    show_progress: bool = True,
) -> ACDCState:
    """Run (or continue) ACDC at `config.tau`. With `state_path` the state is saved
    there and a saved state is continued. Stops early, saving, after
    `max_evaluations` evaluations or `max_seconds` in this call; `finished` says
    whether the whole graph was visited."""
    if not config.tau >= 0 or math.isinf(config.tau):
        raise UserError(f"τ must be a finite number >= 0, got {config.tau}", "argument --tau")
    graph = model.circuit_graph
    path = None if state_path is None else Path(state_path)
    state = load_state(path, config) if path is not None else None
    if state is None:
        valid = graph.edge_valid.clone()
        state = ACDCState(valid, torch.full(valid.shape, float("nan")), metric=metric_fn(valid.float()))
    if state.finished:
        return state
    order = visiting_order(graph)
    feeds = graph.feeds
    began = start = last_save = time.time()
    evals_here = 0
    decided = int(graph.n_edges - sum(int(graph.edge_valid[r].sum()) for r in order[state.position :]))
    bar = tqdm(total=graph.n_edges, initial=decided, desc=f"ACDC τ={config.tau:g}", disable=not show_progress, unit="edge")

    def checkpoint(force: bool) -> None:
        nonlocal last_save, start
        now = time.time()
        state.seconds += now - start
        start = now
        if path is not None and (force or now - last_save >= save_every):
            save_state(path, config, state)
            last_save = now

    try:
        while state.position < len(order):
            r = order[state.position]
            reader = graph.readers[r]
            row = state.current[r]
            consumers = feeds[r]
            alive = state.current.any(0)
            hi = int(graph.reader_prefix[r]) if state.next_writer is None else state.next_writer
            if consumers.any() and not (consumers & alive).any():
                state.n_removed_unevaluated += int(row[:hi].sum())
                state.current[r, :hi] = False
                bar.update(int(graph.edge_valid[r, :hi].sum()))
            else:
                layer = reader.layer  # resid_post's is n_layers: the forward runs no layer
                for w in range(hi - 1, -1, -1):
                    if not row[w]:
                        state.next_writer = w
                        bar.update(1)
                        continue
                    if max_evaluations is not None and evals_here >= max_evaluations:
                        raise ACDCStopped
                    if max_seconds is not None and time.time() - began >= max_seconds:
                        raise ACDCStopped
                    trial = state.current.clone()
                    trial[r, w] = False
                    t0 = time.time()
                    value = metric_fn(trial.float(), layer)
                    state.eval_seconds += time.time() - t0
                    state.n_evaluations += 1
                    evals_here += 1
                    state.effects[r, w] = value - state.metric
                    if value - state.metric < config.tau:
                        state.current[r, w] = False
                        state.metric = value
                    state.next_writer = w  # decided: the writers below it are left
                    bar.update(1)
                    bar.set_postfix(metric=f"{state.metric:.4f}", kept=int(state.current.sum()))
                    checkpoint(force=False)
            kept_in = int(state.current[r].sum())
            state.position += 1
            state.next_writer = None
            checkpoint(force=True)
            logger.info(
                f"{reader.name}: {kept_in} edges kept; metric {state.metric:.5f}; {int(state.current.sum())} edges kept in all; "
                f"{state.n_evaluations} evaluations, {state.seconds:.0f} s"
            )
        state.finished = True
        checkpoint(force=True)
    except ACDCStopped:
        checkpoint(force=True)
        logger.info(f"stopped at reader {state.position} of {len(order)} after {evals_here} evaluations; run again to continue")
    finally:
        bar.close()
    return state


def result_of(graph, config: ACDCConfig, state: ACDCState) -> ACDCResult:
    n = int(state.current.sum())
    return ACDCResult(
        tau=config.tau,
        metric=config.metric.value,
        ablation=config.ablation.value,
        n_examples=config.n_examples,
        finished=state.finished,
        n_edges=n,
        n_edges_total=graph.n_edges,
        n_edges_sanitized=int(graph.sanitize(state.current).sum()),
        final_metric=state.metric,
        n_evaluations=state.n_evaluations,
        n_removed_unevaluated=state.n_removed_unevaluated,
        seconds=state.seconds,
        seconds_per_evaluation=state.eval_seconds / max(state.n_evaluations, 1),
    )


# ----------------------------------------------------------------------------- command line


def acdc_main(argv: list[str] | None = None) -> list[ACDCResult]:
    """`python -m edge_pruning acdc` / `src/eval/acdc.py`: ACDC over a τ sweep, each τ in
    OUT/tau_<τ>/ (state, edges.json, circuit.json in docs/circuit_format.md's format,
    result.json); progress bar, log in OUT/acdc.log, resume by running again."""
    import argparse

    from .faithfulness import circuit_metric, export_scored_circuit
    from .tasks import TRACR_TASKS

    p = argparse.ArgumentParser(description="ACDC on the circuit graph (KL or task metric, a τ sweep, resumable)")
    p.add_argument("-m", "--model", help="checkpoint (not for the Tracr tasks, whose models ship)")
    p.add_argument("-t", "--task", default="ioi")
    p.add_argument("-w", "--with-embedding-nodes", action="store_true")
    p.add_argument("-d", "--data", default=None, help="dataset directory (default: the task's shipped data)")
    p.add_argument("-s", "--split", default="train", help="examples ACDC measures the metric on")
    p.add_argument("-n", "--num-examples", type=int, default=200)
    p.add_argument("-b", "--batch-size", type=int, default=50)
    p.add_argument("--tau", type=float, nargs="+", required=True, help="one or more thresholds (a sweep)")
    p.add_argument("--metric", choices=[m.value for m in ACDCMetric], default="kl")
    p.add_argument("--ablation", choices=[a.value for a in Ablation], default=None,
                   help="default: interchange (Tracr tasks: zero)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (saving the state) after this long; run again to continue")
    p.add_argument("--eval-split", default=None, help="evaluate each finished circuit on this split (KL and task metric)")
    p.add_argument("--n-eval", type=int, default=200)
    p.add_argument("--max-seq-length", type=int, default=512)
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.num_examples < 1 or args.batch_size < 1:
        raise UserError("-n and -b must be >= 1", "arguments -n/-b")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "acdc.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        tracr = args.task in TRACR_TASKS
        model, task, pad_id, examples, eval_examples = _load(args, tracr)
        ablation = Ablation.parse(args.ablation or ("zero" if tracr else "interchange"))
        mean_states = None
        if ablation is Ablation.MEAN:
            from .ablation import mean_writer_states

            mean_states = mean_writer_states(model, examples, pad_id, args.batch_size)
        metric = ACDCMetric(args.metric)
        t0 = time.time()
        metric_fn = CircuitMetric(model, task, examples, metric, ablation, args.batch_size, pad_id, mean_states)
        logger.info(f"ACDC {args.task}: {len(examples)} examples, metric {metric.value}, {ablation.value} ablation; setup {time.time() - t0:.1f} s")
        graph = model.circuit_graph
        results = []
        for tau in args.tau:
            config = ACDCConfig(tau, metric, ablation, len(examples), graph.n_edges)
            folder = out / f"tau_{tau:g}"
            folder.mkdir(exist_ok=True)
            max_seconds = None if args.max_minutes is None else args.max_minutes * 60
            state = run_acdc(model, metric_fn, config, folder / STATE_FILE, max_seconds=max_seconds, show_progress=not args.no_progress)
            result = result_of(graph, config, state)
            if state.finished:
                save_edges_json(folder / "edges.json", graph.edge_list(state.current))
                scores = torch.nan_to_num(state.effects, nan=0.0)
                export_scored_circuit(folder / "circuit.json", graph, "acdc", scores, state.current.float(),
                                      {"task": task.name, "model": args.model or task.name, "tau": tau, "metric": metric.value})  # fmt: skip
                if eval_examples:
                    eval_metric, eval_kl = circuit_metric(model, task, eval_examples, state.current.float(), args.batch_size, pad_id,
                                                          ablation.value, mean_states)  # fmt: skip
                    result.evaluation = {"split": args.eval_split, "n_examples": len(eval_examples), "kl": eval_kl, "metric": eval_metric}
            (folder / "result.json").write_text(json.dumps(asdict(result), indent=2))
            results.append(result)
            status = "finished" if state.finished else "stopped (run again to continue)"
            print(f"τ={tau:g}: {status}; {result.n_edges} of {result.n_edges_total} edges, metric {result.final_metric:.4f}, "
                  f"{result.n_evaluations} evaluations, {result.seconds:.0f} s ({result.seconds_per_evaluation:.3f} s each)"
                  + (f"; {args.eval_split}: KL {result.evaluation['kl']:.4f}" if result.evaluation else ""))  # fmt: skip
            if not state.finished:
                break
        return results
    finally:
        logger.removeHandler(handler)
        handler.close()


def _load(args, tracr: bool):
    """Model, task, pad id, ACDC's examples and the evaluation examples."""
    if tracr:
        from .models import load_tracr_model
        from .tasks import get_tracr_task

        task = get_tracr_task(args.task)
        model = load_tracr_model(task.model_path)
        vocab = model.config.token_to_id()
        pad_id = model.config.pad_token_id
        examples = task.encode_rows(task.load_split(args.data, args.split), vocab)[: args.num_examples]
        eval_examples = task.encode_rows(task.load_split(args.data, args.eval_split), vocab)[: args.n_eval] if args.eval_split else []
    else:
        from .models import load_circuit_model, load_tokenizer
        from .tasks import encode_split, get_task, pad_token_id

        if not args.model:
            raise UserError("a model is needed for this task", "argument -m/--model")
        task = get_task(args.task)
        model = load_circuit_model(args.model, args.with_embedding_nodes)
        tokenizer = load_tokenizer(None, args.model)
        pad_id = pad_token_id(tokenizer)
        examples = encode_split(task, tokenizer, args.data, args.split, args.max_seq_length, args.num_examples)
        eval_examples = encode_split(task, tokenizer, args.data, args.eval_split, args.max_seq_length, args.n_eval) if args.eval_split else []
    model.freeze_model_weights()
    return model, task, pad_id, examples, eval_examples
