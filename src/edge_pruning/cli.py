"""Command lines of the evaluation and circuit-export scripts (`src/eval/*.py`,
`src/modeling/vis_*.py`); the pruning scripts use `pruning.prune_main`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from .circuit import save_edges_json
from .models import arch_of_checkpoint, model_class, read_config_dict

logger = logging.getLogger("edge_pruning")


def load_circuit_model(path: str, with_embedding_nodes: bool, arch: str | None = None, device: str = "cpu", dtype=None):
    """A circuit model from a pruned checkpoint or a plain one of the architecture.

    A pruned checkpoint records `with_embedding_nodes` in its config; `-w` matters
    only for a plain checkpoint (which then starts with every mask on).
    """
    arch = arch or arch_of_checkpoint(path)
    config = read_config_dict(path)
    kwargs = {}
    if "with_embedding_nodes" in config:
        if with_embedding_nodes and not config["with_embedding_nodes"]:
            logger.warning(f"{path} was pruned without embedding nodes; ignoring -w")
    else:
        kwargs["with_embedding_nodes"] = with_embedding_nodes
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = model_class(arch).from_pretrained(path, **kwargs)
    return model.to(device).eval()


def eval_parser(description: str, model_flags: tuple[str, ...] = ("-m", "--model")) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(*model_flags, dest="model", required=True, help="pruned checkpoint, or any checkpoint of the architecture")
    p.add_argument("-w", "--with-embedding-nodes", action="store_true", help="embeddings are nodes (plain checkpoints)")
    p.add_argument("-d", "--data", default=None, help="dataset directory (default: the task's shipped data)")
    p.add_argument("-s", "--split", default="test")
    p.add_argument("-n", "--num-examples", type=int, default=None)
    p.add_argument("-b", "--batch-size", type=int, default=16)
    p.add_argument("-se", "--edge-sparsity", type=float, default=None, help="binarise to this edge sparsity")
    p.add_argument("-sn", "--node-sparsity", type=float, default=None, help="binarise to this node sparsity")
    p.add_argument("-e", "--edges", default=None, help="evaluate exactly this circuit (edges JSON)")
    p.add_argument("-t", "--tokenizer", default=None, help="default: the checkpoint's tokenizer")
    p.add_argument("-o", "--out", default=None, help="results JSON (default: <model>/eval_<task>_<split>.json)")
    p.add_argument("--ablation", default="interchange", choices=["interchange", "zero", "mean"])
    p.add_argument("--max-seq-length", type=int, default=512)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def eval_main(task_name: str | None, argv: list[str] | None = None, description: str = "Evaluate a circuit"):
    """Entry point of every `src/eval/<task>.py` script. Without a task name, the
    Boolean-expressions evaluation: `-m fewshot|instruction` picks the prompt format
    and `-p` names the checkpoint (the original's flags)."""
    from transformers import AutoTokenizer

    from .ablation import mean_writer_states
    from .evaluation import evaluate_circuit
    from .pruning import encode_split, pad_token_id
    from .tasks import get_task

    if task_name is None:
        parser = eval_parser(description, ("-p", "--model-path"))
        parser.add_argument("-m", "--mode", choices=["fewshot", "instruction"], default="fewshot")
        args = parser.parse_args(argv)
        task_name = "boolean_expressions_fs" if args.mode == "fewshot" else "boolean_expressions_ip"
    else:
        args = eval_parser(description).parse_args(argv)
    task = get_task(task_name)
    model = load_circuit_model(args.model, args.with_embedding_nodes, device=args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    pad_id = pad_token_id(tokenizer)
    examples = encode_split(task, tokenizer, args.data, args.split, args.max_seq_length, args.num_examples)
    mean_states = mean_writer_states(model, examples, pad_id, args.batch_size) if args.ablation == "mean" else None
    if args.edges:
        model.load_edges(args.edges)
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


def vis_main(argv: list[str] | None = None, arch: str | None = None):
    """`vis_*.py -i checkpoint [-w]`: binarise at the model's sparsity, write edges.json.
    `-m1 A -m2 B -o out.json`: the edges the circuits of A and B share."""
    from .evaluation import set_thresholds_for_sparsity

    p = argparse.ArgumentParser(description="Export a pruned checkpoint's circuit as edges.json, or intersect two")
    p.add_argument("-i", "--in-path", help="pruned checkpoint directory")
    p.add_argument("-m1", "--model1", help="first checkpoint of an intersection")
    p.add_argument("-m2", "--model2", help="second checkpoint of an intersection")
    p.add_argument("-w", "--with-embedding-nodes", action="store_true")
    p.add_argument("-o", "--out-path", default=None, help="default: <checkpoint>/edges.json")
    p.add_argument("-se", "--edge-sparsity", type=float, default=None)
    p.add_argument("-sn", "--node-sparsity", type=float, default=None)
    p.add_argument("--no-sanitize", action="store_true", help="keep edges not connected to both inputs and output")
    args = p.parse_args(argv)
    if bool(args.model1) != bool(args.model2) or bool(args.in_path) == bool(args.model1):
        p.error("give either -i CHECKPOINT or both -m1 and -m2")

    def circuit(path: str) -> list[tuple[str, str]]:
        model = load_circuit_model(path, args.with_embedding_nodes, arch=arch)
        edge_sparsity, node_sparsity = set_thresholds_for_sparsity(model, args.edge_sparsity, args.node_sparsity)
        edges = model.get_edges(sanitize=not args.no_sanitize)
        print(f"{path}: {len(edges)} edges (edge sparsity {edge_sparsity:.4f}, node sparsity {node_sparsity:.4f}, {len(model.get_edges())} before sanitising)")
        return edges

    if args.in_path:
        edges = circuit(args.in_path)
        out = Path(args.out_path) if args.out_path else Path(args.in_path) / "edges.json"
    else:
        second = set(circuit(args.model2))
        edges = [e for e in circuit(args.model1) if e in second]
        if not args.out_path:
            p.error("-o is required for an intersection")
        out = Path(args.out_path)
        print(f"{len(edges)} edges shared")
    save_edges_json(out, edges)
    print(f"{len(edges)} edges written to {out}")
    return edges
