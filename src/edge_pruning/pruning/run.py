"""One pruning run, from the command line to a checkpoint: flags, model, data,
training, then the final evaluation, edges and flags written beside the model."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from transformers import TrainerCallback, TrainingArguments, set_seed

from ..circuit import save_edges_json
from ..evaluation import CircuitEvaluation, evaluate_circuit
from ..models import arch_of_checkpoint, load_tokenizer
from ..tasks import check_seq_length, encode_split, get_task, pad_token_id
from .args import PruningArguments, original_defaults, parse_args
from .model import load_for_pruning, prepare_masks, same_checkpoint
from .runtime import run_settings
from .trainer import train_masks

logger = logging.getLogger("edge_pruning")


def prune_main(
    arch: str | None, task_name: str, argv: list[str] | None = None, callbacks: list[TrainerCallback] | None = None
) -> CircuitEvaluation:
    """Entry point of every `src/prune/<arch>_<task>.py` script and of `python -m
    edge_pruning prune`; `arch` None: the architecture of --initialize_from.
    `callbacks` are added to the Trainer's."""
    pargs, targs = parse_args(argv, original_defaults(arch, task_name))
    with run_settings(Path(targs.output_dir), "prune.log", targs):
        return prune(arch, task_name, pargs, targs, callbacks)


def prune(
    arch: str | None,
    task_name: str,
    pargs: PruningArguments,
    targs: TrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> CircuitEvaluation:
    """One run with parsed flags, inside its process settings (`run_settings`)."""
    output_dir = Path(targs.output_dir)
    task = get_task(task_name)
    set_seed(targs.seed)
    arch = arch or arch_of_checkpoint(pargs.initialize_from)
    model, missing = load_for_pruning(arch, pargs.initialize_from, pargs, targs.bf16)
    prepare_masks(model, pargs, targs.seed, missing)
    reference = None
    if not same_checkpoint(pargs.ref_initialize_from, pargs.initialize_from):
        if targs.fsdp:
            raise ValueError("--ref_initialize_from other than --initialize_from is not supported with FSDP")
        reference = load_for_pruning(arch, pargs.ref_initialize_from, pargs, targs.bf16)[0].eval()
        if reference.circuit_graph.n_edges != model.circuit_graph.n_edges:
            raise ValueError(f"--ref_initialize_from {pargs.ref_initialize_from} has another graph than --initialize_from")
        reference.to(targs.device)
    tokenizer = load_tokenizer(pargs.tokenizer, pargs.ref_initialize_from, pargs.initialize_from)
    pad_id = pad_token_id(tokenizer)
    train = encode_split(task, tokenizer, pargs.dataset_path, pargs.train_split, pargs.max_seq_length, pargs.max_train_samples)
    evals = encode_split(task, tokenizer, pargs.dataset_path, pargs.eval_split, pargs.max_seq_length, pargs.max_eval_samples)
    check_seq_length(train, pargs.seq_length, pargs.train_split)
    check_seq_length(evals, pargs.seq_length, pargs.eval_split)
    trainer, mean_states = train_masks(
        model, task, train, pad_id, pargs, targs, tokenizer, callbacks, evals=evals, reference=reference
    )
    # Every rank evaluates (under FSDP each forward is collective); rank 0 writes.
    result = evaluate_circuit(
        model,
        task,
        evals,
        pargs.eval_split,
        pargs.eval_batch_size or targs.per_device_eval_batch_size,
        pad_id,
        ablation=pargs.ablation,
        mean_states=mean_states,
    )
    if trainer.is_world_process_zero():
        result.to_json(output_dir / "eval_results.json")
        save_edges_json(output_dir / "edges.json", model.get_edges())
        (output_dir / "pruning_args.json").write_text(json.dumps(dataclasses.asdict(pargs), indent=2))
        logger.info(result.summary())
    return result
