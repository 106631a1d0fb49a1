"""A split's rows from disk (HF datasets, parquet, custom JSONL, Tracr JSONL), and
their encoding checked against the sequence-length flags."""

from __future__ import annotations

import os
from pathlib import Path

from ..custom_data import parse_custom_jsonl, split_examples
from ..errors import TaskDataError
from ..paths import DATASETS_DIR
from .base import Task
from .batch import Encoded
from .tracr import TracrTask

# Split names that mean the same thing (the original's Boolean data calls validation "val").
SPLIT_ALIASES = {"validation": ("val",), "val": ("validation",)}


def _generate_hint(task: Task, split: str) -> str:
    script = {"ioi": "prepare_ioi.py", "gt": "prepare_gt.py", "gp": "prepare_gp.py"}.get(task.name)
    if split.startswith("train_") and script:
        n = split[len("train_"):].replace("k", "000")
        return f"; generate it with data/scripts/{script} --n_{split} {n}" if n.isdigit() else ""
    return ""


def load_rows(task: Task, dataset_path: str | os.PathLike | None, split: str) -> list[dict]:
    """Rows of one split: an HF dataset saved to disk (with large splits as
    ``<split>.parquet`` beside it), or a custom JSONL file. The column layout must be
    one the task knows."""
    path = Path(dataset_path) if dataset_path else DATASETS_DIR / task.default_dataset
    if str(path).endswith(".jsonl"):
        if split not in ("train", "validation"):
            raise TaskDataError(f"custom JSONL datasets have splits train and validation, not {split!r}")
        examples = split_examples(parse_custom_jsonl(path))[split]
        return [dict(vars(e), path=str(path)) for e in examples]
    from datasets import Dataset, load_from_disk

    if not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist (see data/scripts/prepare_*.py)")
    data = load_from_disk(str(path))
    names = [split, *SPLIT_ALIASES.get(split, ())]
    found = next((n for n in names if n in data), None)
    if found is not None:
        ds = data[found]
        where = f"{path} split {found!r}"
    else:
        parquet = next((path / f"{n}.parquet" for n in names if (path / f"{n}.parquet").exists()), None)
        if parquet is None:
            raise TaskDataError(
                f"{path} has no split {split!r}; it has {', '.join(data.keys())}{_generate_hint(task, split)}"
            )
        ds = Dataset.from_parquet(str(parquet))  # large splits ship (or are generated) compressed
        where = str(parquet)
    if task.layouts:
        task.detect_layout(ds.column_names, where)
    return list(ds)


def encode_split(task: Task, tokenizer, dataset_path, split: str, max_seq_length: int, limit: int | None) -> list[Encoded]:
    """The first `limit` rows of a split, encoded; none may exceed `max_seq_length` tokens."""
    rows = load_rows(task, dataset_path, split)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise TaskDataError(f"split {split!r} of {dataset_path or task.default_dataset} is empty")
    examples = task.encode_rows(rows, tokenizer)
    for i, e in enumerate(examples):
        if len(e.input_ids) > max_seq_length:
            raise TaskDataError(
                f"{split} example {i} is {len(e.input_ids)} tokens, longer than --max_seq_length {max_seq_length}"
            )
    return examples


def encode_tracr_split(task: TracrTask, vocab: dict, dataset_path, split: str, limit: int | None) -> list[Encoded]:
    """A Tracr split's first `limit` rows, their ids checked against the model's vocabulary."""
    rows = task.load_split(dataset_path, split)[:limit]
    if not rows:
        raise TaskDataError(f"split {split!r} of {dataset_path or task.default_dataset} is empty")
    return task.encode_rows(rows, vocab)


def check_seq_length(examples: list[Encoded], seq_length: int | None, split: str) -> None:
    """--seq_length (the original Tracr scripts'): every example is exactly that long."""
    if seq_length is None:
        return
    for i, e in enumerate(examples):
        if len(e.input_ids) != seq_length:
            raise TaskDataError(f"{split} example {i} is {len(e.input_ids)} tokens, not --seq_length {seq_length}")
