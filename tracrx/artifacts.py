"""Write the committed artefacts: datasets, weight pickles, ground truths.

Why a module rather than script bodies: the four ``data/scripts`` entry points
and the tests share this code, so what the tests check is what the scripts
wrote.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from tracrx.circuit import GroundTruth, derive_ground_truth
from tracrx.data import all_examples, all_input_ids
from tracrx.export import TracrWeights, compile_task, save_weights
from tracrx.programs import TaskSpec

SPLITS = ("train", "validation", "test")
SHUFFLE_SEED = 0


def targets_array(spec: TaskSpec) -> np.ndarray:
    """``[N, n_tokens]`` expected outputs (ids or values), BOS dropped."""
    exs = all_examples(spec)
    if spec.categorical_output:
        return np.array([e.target_ids[1:] for e in exs], dtype=np.int64)
    return np.array([e.target[1:] for e in exs], dtype=np.float64)


def dataset_splits(spec: TaskSpec) -> Dict[str, List[dict]]:
    """Every split holds the complete input space.

    The Tracr task is recovering the circuit of a fixed program, not
    generalisation, and a circuit is only "the" circuit if it is right on
    every input; the paper's code likewise used one full dataset for both
    training and evaluation. ``train`` is shuffled (seed 0) so that
    sequential batches are mixed; ``validation`` and ``test`` are in
    canonical (lexicographic) order.
    """
    rows = [dict(id=i, **ex.to_json()) for i, ex in enumerate(all_examples(spec))]
    train = list(rows)
    random.Random(SHUFFLE_SEED).shuffle(train)
    return {
        "train": [dict(r, split="train") for r in train],
        "validation": [dict(r, split="validation") for r in rows],
        "test": [dict(r, split="test") for r in rows],
    }


def write_dataset(spec: TaskSpec, out_dir: Union[str, Path]) -> List[Path]:
    """Write ``{split}.jsonl`` files (one example per line) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, rows in dataset_splits(spec).items():
        path = out_dir / f"{split}.jsonl"
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        paths.append(path)
    return paths


def ground_truth(spec: TaskSpec, weights: TracrWeights) -> GroundTruth:
    return derive_ground_truth(weights, all_input_ids(spec), targets_array(spec))


def write_model(spec: TaskSpec, out_dir: Union[str, Path]) -> Tuple[Path, Path]:
    """Compile, save ``{task}.tracr.pkl`` and ``{task}_ground_truth.json``."""
    out_dir = Path(out_dir)
    compiled = compile_task(spec)
    pkl = out_dir / f"{spec.name}.tracr.pkl"
    save_weights(compiled.weights, pkl)
    gt = ground_truth(spec, compiled.weights)
    if gt.circuit_accuracy != 1.0 or gt.full_model_accuracy != 1.0:
        raise RuntimeError(f"{spec.name}: ground truth is not exact: {gt.notes}")
    gt_path = out_dir / f"{spec.name}_ground_truth.json"
    gt_path.write_text(format_json(gt.to_json()))
    return pkl, gt_path


def format_json(obj: dict) -> str:
    """JSON with one top-level key per line and one list item per line.

    Keeps edge lists readable in diffs (``["writer", "reader"]`` per line).
    """
    lines = []
    for key, value in obj.items():
        if isinstance(value, list) and value:
            items = ",\n".join("  " + json.dumps(v) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
