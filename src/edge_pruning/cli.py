"""Command lines: the shared error wrapper of every entry point (`run_cli`), and the
evaluation and circuit-export scripts (`src/eval/*.py`, `src/modeling/vis_*.py`); the
pruning scripts parse their flags in `pruning.parse_args`. What they load, they load
through `models`.

Flags are the original scripts' (short and long forms), with ours kept as aliases
where they do not clash.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import sys
import traceback
from pathlib import Path
from typing import Callable

import torch

from .ablation import ABLATION_NAMES, Ablation, mean_writer_states
from .circuit import save_edges_json
from .errors import NonFiniteLossError, UsageError, UserError, one_line
from .evaluation import evaluate_circuit, set_thresholds_for_sparsity
from .models import load_circuit_model, load_edges_file, load_tokenizer, set_mask_rule
from .tasks import encode_split, get_task, pad_token_id

# Exit status of a user error (as argparse uses), and of a run stopped by a non-finite loss.
USER_ERROR_STATUS = 2
RUN_FAILED_STATUS = 1


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ValueError, OSError, EOFError, pickle.UnpicklingError]
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # older safetensors
        pass
    return tuple(types)


def _argparse_error(self: argparse.ArgumentParser, message: str):
    # "argument -n/--num-examples: invalid int value: 'x'" -> what first, then where.
    if message.startswith("argument ") and ": " in message:
        where, what = message[len("argument ") :].split(": ", 1)
        raise UsageError(what, f"argument {where}")
    raise UsageError(message, self.prog)


@contextlib.contextmanager
def _argparse_raises():
    """Inside the block every ArgumentParser (HfArgumentParser included) raises
    UsageError instead of printing usage and exiting."""
    previous = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _argparse_error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = previous


def run_cli(main: Callable[[list[str]], object], argv: list[str] | None = None) -> object:
    """Run an entry point's `main(argv)`: a user error (bad flag or data, missing or
    damaged checkpoint, wrong architecture, unknown edge) becomes one line
    `error: <what>, <where>` on stderr and exit status 2; a run stopped by a non-finite
    loss exits with 1. `--debug` anywhere on the command line shows the traceback."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    argv, debug = _take_debug_flag(argv)
    status = None
    with _argparse_raises():
        try:
            return main(argv)
        except NonFiniteLossError as e:
            if debug:
                raise
            message, status = one_line(e), RUN_FAILED_STATUS
        except _user_error_types() as e:
            if debug:
                raise
            message, status = one_line(e), USER_ERROR_STATUS
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            message, status = "interrupted", 130
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


# transformers' own `--debug OPTION` (TrainingArguments.debug) is left to it.
_HF_DEBUG_OPTIONS = {"underflow_overflow", "tpu_metrics_debug"}


def _take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    out, debug = [], False
    for i, arg in enumerate(argv):
        if arg == "--debug" and not (i + 1 < len(argv) and argv[i + 1] in _HF_DEBUG_OPTIONS):
            debug = True
        else:
            out.append(arg)
    return out, debug


# ----------------------------------------------------------------------------- flags


def add_mask_rule_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mask-rule", dest="mask_rule", choices=["original", "global"], default="original",
                   help="deterministic masks and threshold search: the original's per-tensor top-k and bisection, "
                   "or ours (one global top-k; any requested sparsity hit to one edge)")


def add_ungroup_kv_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ungroup_kv", "--ungroup-kv", dest="ungroup_kv", action="store_true",
                   help="grouped-query attention, plain checkpoints: K and V read per query head "
                   "(a pruned checkpoint records it)")


# ----------------------------------------------------------------------------- evaluation

# The original scripts' batch sizes and example counts (src/eval/*.py).
EVAL_DEFAULTS = {
    "ioi": {"batch_size": 16, "num_examples": 1000000},
    "gt": {"batch_size": 32, "num_examples": 1000000},
    "gp": {"batch_size": 16, "num_examples": 100000},
    "boolean": {"batch_size": 1, "num_examples": 400},
}


def eval_parser(description: str, boolean: bool = False, task: str | None = None) -> argparse.ArgumentParser:
    """The original's flags; ours as extra long forms (`--model`, `--data`, `--edge-sparsity`,
    `--out`) and options."""
    defaults = EVAL_DEFAULTS["boolean" if boolean else task] if (boolean or task in EVAL_DEFAULTS) else EVAL_DEFAULTS["ioi"]
    p = argparse.ArgumentParser(description=description)
    model_default = "meta-llama/CodeLlama-13b-Instruct-hf" if boolean else "data/runs/example/"
    model_flags = ("-m", "--model_name_or_path", "--model", "-p", "--model-path") if boolean else ("-m", "--model_name_or_path", "--model")
    p.add_argument(*model_flags, dest="model", default=model_default, help="pruned checkpoint, or any checkpoint of the architecture")
    p.add_argument("-w", "--with-embedding-nodes", "--with_embedding_nodes", dest="with_embedding_nodes", action="store_true",
                   help="embeddings are nodes (plain checkpoints; a pruned one records it)")
    data_flags = ("-d", "--dataset-path", "--data-path", "--data") if boolean else ("-d", "--data-path", "--data")
    p.add_argument(*data_flags, dest="data", default=None, help="dataset directory (default: the task's shipped data)")
    p.add_argument("-s", "--split", default="test")
    p.add_argument("-k", "--skip", type=int, default=0, help="skip the first K examples")
    p.add_argument("-n", "--num-examples", dest="num_examples", type=int, default=defaults["num_examples"])
    p.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=defaults["batch_size"])
    p.add_argument("-se", "--sparsity-edge", "--edge-sparsity", dest="edge_sparsity", type=float, default=None,
                   help="binarise to this edge sparsity")
    p.add_argument("-sn", "--sparsity-node", "--node-sparsity", dest="node_sparsity", type=float, default=None,
                   help="binarise to this node sparsity")
    p.add_argument("-e", "--edges", default=None, help="evaluate exactly this circuit (edges JSON)")
    p.add_argument("-o", "--out-path", "--out", dest="out", default=None,
                   help="results JSON (default: <model>/eval_<task>_<split>.json)")
    p.add_argument("-D", "--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tokenizer", default=None, help="default: the checkpoint's tokenizer")
    p.add_argument("--ablation", default="interchange", choices=ABLATION_NAMES)
    p.add_argument("--max-seq-length", dest="max_seq_length", type=int, default=512)
    add_mask_rule_flag(p)
    add_ungroup_kv_flag(p)
    if boolean:
        p.add_argument("-M", "--mode", choices=["instruction", "fewshot", "zeroshot"], default="instruction")
        p.add_argument("-r", "--reference_model", "--reference-model", dest="reference_model", default=None,
                       help="the unpruned model (its tokenizer is used when the checkpoint has none)")
        p.add_argument("-bf16", "--bf16", action="store_true", help="bf16 weights (masks stay fp32)")
        p.add_argument("-t", "--tag", default=None, help="a label, accepted as the original's (unused)")
    else:
        p.add_argument("-t", dest="tokenizer", default=None, help=argparse.SUPPRESS)
    return p


def eval_main(task_name: str | None, argv: list[str] | None = None, description: str = "Evaluate a circuit"):
    """Entry point of every `src/eval/<task>.py` script. Without a task name, the
    Boolean-expressions evaluation: `-M instruction|fewshot` picks the prompt format."""
    boolean = task_name is None
    args = eval_parser(description, boolean=boolean, task=task_name).parse_args(argv)
    args.ablation = Ablation(args.ablation)
    if args.out == "None":
        args.out = None
    if boolean:
        if args.mode == "zeroshot":
            raise UserError("mode zeroshot is not supported (instruction or fewshot)", "argument -M/--mode")
        task_name = "boolean_expressions_fs" if args.mode == "fewshot" else "boolean_expressions_ip"
    if args.num_examples < 0 or args.skip < 0 or args.batch_size < 1:
        raise UserError("-n and -k must be >= 0 and -b >= 1", "arguments -n/-k/-b")
    task = get_task(task_name)
    dtype = torch.bfloat16 if getattr(args, "bf16", False) else None
    model = load_circuit_model(args.model, args.with_embedding_nodes, device=args.device, dtype=dtype,
                               ungroup_kv=args.ungroup_kv)  # fmt: skip
    set_mask_rule(model, args.mask_rule)
    tokenizer = load_tokenizer(args.tokenizer, args.model, getattr(args, "reference_model", None))
    pad_id = pad_token_id(tokenizer)
    examples = encode_split(task, tokenizer, args.data, args.split, args.max_seq_length, args.skip + args.num_examples)
    examples = examples[args.skip :]
    if not examples:
        raise UserError(f"no examples left after skipping {args.skip}", f"split {args.split}")
    mean_states = None
    if args.ablation is Ablation.MEAN:
        mean_states = mean_writer_states(model, examples, pad_id, args.batch_size)
    if args.edges:
        load_edges_file(model, args.edges)
    result = evaluate_circuit(
        model,
        task,
        examples,
        args.split,
        args.batch_size,
        pad_id,
        edge_sparsity=args.edge_sparsity,
        node_sparsity=args.node_sparsity,
        ablation=args.ablation,
        mean_states=mean_states,
        search_thresholds=not args.edges,
    )
    print(result.summary())
    out = Path(args.out) if args.out else Path(args.model) / f"eval_{task.name}_{args.split}.json"
    if not args.out and not Path(args.model).is_dir():
        out = Path(f"eval_{task.name}_{args.split}.json")
    result.to_json(out)
    print(f"results written to {out}")
    return result


# ----------------------------------------------------------------------------- circuits


def vis_main(argv: list[str] | None = None, arch: str | None = None):
    """`vis_*.py -i checkpoint [-w] [-e S] [-n S]`: binarise at the model's sparsity (or at
    -e/-n), write edges.json. `-m1 A` alone: A's circuit; `-m1 A -m2 B -o out.json`: the
    edges the circuits of A and B share."""
    p = argparse.ArgumentParser(description="Export a pruned checkpoint's circuit as edges.json, or intersect two")
    p.add_argument("-i", "--in_path", "--in-path", dest="in_path", help="pruned checkpoint directory")
    p.add_argument("-m1", "--model1", help="a checkpoint (alone: as -i), or the first of an intersection")
    p.add_argument("-m2", "--model2", help="second checkpoint of an intersection")
    p.add_argument("-w", "--with_embedding_nodes", "--with-embedding-nodes", dest="with_embedding_nodes", action="store_true")
    p.add_argument("-o", "--out_path", "--out-path", "--output", dest="out_path", default=None,
                   help="default: <checkpoint>/edges.json")
    p.add_argument("-e", "-se", "--edge_sparsity", "--edge-sparsity", dest="edge_sparsity", type=float, default=None)
    p.add_argument("-n", "-sn", "--node_sparsity", "--node-sparsity", dest="node_sparsity", type=float, default=None)
    p.add_argument("--no-sanitize", action="store_true", help="keep edges not connected to both inputs and output")
    add_mask_rule_flag(p)
    add_ungroup_kv_flag(p)
    args = p.parse_args(argv)
    for flag in ("out_path", "model2"):
        if getattr(args, flag) == "":  # the original's "not given"
            setattr(args, flag, None)
    if args.model2 and not args.model1:
        raise UsageError("-m2 needs -m1", "argument -m2/--model2")
    if bool(args.in_path) == bool(args.model1):
        raise UsageError("give either -i CHECKPOINT or -m1 CHECKPOINT [-m2 CHECKPOINT -o OUT]", p.prog)
    if args.model2 and not args.out_path:
        raise UsageError("-o is required for an intersection", "argument -o/--out_path")

    def circuit(path: str) -> list[tuple[str, str]]:
        model = load_circuit_model(path, args.with_embedding_nodes, arch=arch, ungroup_kv=args.ungroup_kv)
        set_mask_rule(model, args.mask_rule)
        edge_sparsity, node_sparsity = set_thresholds_for_sparsity(model, args.edge_sparsity, args.node_sparsity)
        edges = model.get_edges(sanitize=not args.no_sanitize)
        print(f"{path}: {len(edges)} edges (edge sparsity {edge_sparsity:.4f}, node sparsity {node_sparsity:.4f}, {len(model.get_edges())} before sanitising)")
        return edges

    single = args.in_path or (args.model1 if not args.model2 else None)
    if single:
        edges = circuit(single)
        out = Path(args.out_path) if args.out_path else Path(single) / "edges.json"
    else:
        second = set(circuit(args.model2))
        edges = [e for e in circuit(args.model1) if e in second]
        out = Path(args.out_path)
        print(f"{len(edges)} edges shared")
    save_edges_json(out, edges)
    print(f"{len(edges)} edges written to {out}")
    return edges
