"""Helpers shared by the dataset generators in data/scripts/ (prepare_*.py).

The generators are stand-alone scripts, not a package, so what they have in
common lives here: one definition of how seed files are read, how a tokenizer
is found, how token lengths are compared and how a generated dataset is saved,
so that every task's data is made the same way.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypeVar

from .paths import DATASETS_DIR, HELPERS_DIR, REPO_ROOT  # noqa: F401 - the generators import the folders from here

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

T = TypeVar("T")


def generator_parser(doc: str) -> argparse.ArgumentParser:
    """Parser with the options every generator takes (``--tokenizer``, ``--seed``).

    The seed defaults to the original Edge Pruning generators' 42: a generator that
    makes its random draws in the original's order then reproduces its data for the
    same tokenizer.

    The description is the first paragraph of the script's docstring, so
    ``--help`` and the module documentation cannot drift apart.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--tokenizer", default="gpt2", help="hub name or local path")
    parser.add_argument("--seed", type=int, default=42, help="default 42, the original generators' seed")
    return parser


def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a seed file, de-duplicated in order.

    Order is kept because the generators sample from these lists with a seeded
    RNG: the same file and seed must give the same dataset.
    """
    out: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line not in out:
            out.append(line)
    return out


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A hub name or a local path (relative paths may be relative to the repo root).

    Resolving against the repo root lets ``--tokenizer data/models/smollm2-135m``
    work from any working directory.
    """
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    if not path.exists() and (REPO_ROOT / path).exists():
        name_or_path = str(REPO_ROOT / path)
    return AutoTokenizer.from_pretrained(name_or_path)


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Token count of each text (no special tokens), tokenized as one batch.

    Clean and corrupted prompts must be equally long for the patching to line
    up position by position; batching keeps that check cheap on large pools.
    """
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def split_rng(seed: int, split: str) -> random.Random:
    """An RNG of its own for each split.

    A split's examples then do not depend on how many examples other splits
    draw: generating a large training split on demand leaves the shipped
    validation and test splits as they are.
    """
    return random.Random(f"{seed}:{split}")


def split_by_counts(
    items: Sequence[T], n_train: int, n_validation: int, n_test: int | None = None
) -> dict[str, list[T]]:
    """Consecutive, disjoint train/validation/test slices of ``items``.

    ``n_test=None`` gives test everything after validation. Slicing one
    shuffled pool keeps the splits disjoint without further checks.
    """
    end = None if n_test is None else n_train + n_validation + n_test
    return {
        "train": list(items[:n_train]),
        "validation": list(items[n_train: n_train + n_validation]),
        "test": list(items[n_train + n_validation: end]),
    }


def save_splits(out: Path, splits: Mapping[str, Sequence[Any]]) -> None:
    """Save dataclass rows as a ``DatasetDict`` at ``out`` (columns: the fields).

    A previous DatasetDict at ``out`` is removed first so that no stale split
    survives a regeneration; other directories are never deleted.
    """
    from datasets import Dataset, DatasetDict

    if out.exists() and (out / "dataset_dict.json").exists():
        shutil.rmtree(out)
    DatasetDict({k: Dataset.from_list([asdict(e) for e in v]) for k, v in splits.items()}).save_to_disk(str(out))


def write_parquet(out: Path, name: str, rows: Sequence[Any]) -> Path:
    """Save dataclass rows as ``<out>/<name>.parquet`` (zstd), for splits too large
    to keep in the DatasetDict (the tasks' loader reads them by split name)."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    path = out / f"{name}.parquet"
    table = Dataset.from_list([asdict(e) for e in rows]).data.table
    pq.write_table(table, path, compression="zstd", compression_level=19)
    return path


def write_generation_info(out: Path, info: Mapping[str, Any]) -> None:
    """Write ``generation_info.json`` next to the data, recording how it was made."""
    (out / "generation_info.json").write_text(json.dumps(info, indent=1) + "\n")
