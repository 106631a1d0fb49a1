"""Generate the greater-than dataset (Hanna et al. 2023).

Clean prompt: "The war lasted from the year 1732 to the year 17"; a correct
continuation is any two-digit year YY > 32. Stored per example:

* ``prefix``        "The war lasted from the year 1732 to the year " (no century digits)
* ``century``       "17"   (clean prompt = prefix + century)
* ``start_yy``      32     (kept in 02..98 so both ">" and "<=" continuations exist)
* ``corr_prefix``   "The war lasted from the year 1701 to the year " (start YY := 01)
* ``corr_start_yy`` 1

Only strings and ints are stored: the task code decides how to score two-digit
year tokens (GPT-2) or digit-by-digit tokenizers (SmolLM2). Examples whose clean
and corrupted prompts tokenize to different lengths are dropped (for GPT-2 this
removes years such as 1701 that are single tokens).

    python data/scripts/prepare_gt.py --tokenizer data/models/smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPERS = REPO_ROOT / "data" / "helper_files"
DATASETS = REPO_ROOT / "data" / "datasets"

TEMPLATE = "The {noun} lasted from the year {century}{yy:02d} to the year "
CORRUPT_YY = 1


@dataclass(frozen=True)
class GTExample:
    """One row of the saved dataset."""

    prefix: str
    century: str
    start_yy: int
    corr_prefix: str
    corr_start_yy: int


def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a seed file, de-duplicated in order."""
    out: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line not in out:
            out.append(line)
    return out


def load_tokenizer(name_or_path: str):
    """A hub name or a local path (relative paths may be relative to the repo root)."""
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    if not path.exists() and (REPO_ROOT / path).exists():
        name_or_path = str(REPO_ROOT / path)
    return AutoTokenizer.from_pretrained(name_or_path)


def token_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def make_example(noun: str, century: int, yy: int) -> GTExample:
    return GTExample(
        prefix=TEMPLATE.format(noun=noun, century=century, yy=yy),
        century=str(century),
        start_yy=yy,
        corr_prefix=TEMPLATE.format(noun=noun, century=century, yy=CORRUPT_YY),
        corr_start_yy=CORRUPT_YY,
    )


def same_length(tokenizer, examples: Sequence[GTExample]) -> list[bool]:
    """Clean vs corrupted prompt (prefix + century) and prefix alone tokenize equally long."""
    a = token_lengths(tokenizer, [e.prefix + e.century for e in examples])
    b = token_lengths(tokenizer, [e.corr_prefix + e.century for e in examples])
    c = token_lengths(tokenizer, [e.prefix for e in examples])
    d = token_lengths(tokenizer, [e.corr_prefix for e in examples])
    return [x == y and z == w for x, y, z, w in zip(a, b, c, d)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", default="gpt2", help="hub name or local path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DATASETS / "gt")
    parser.add_argument("--n_train", type=int, default=150)
    parser.add_argument("--n_validation", type=int, default=150)
    parser.add_argument("--n_test", type=int, default=1000)
    parser.add_argument("--centuries", type=int, nargs="+", default=list(range(11, 18)),
                        help="two-digit centuries XX (default 11..17)")
    parser.add_argument("--min_yy", type=int, default=2)
    parser.add_argument("--max_yy", type=int, default=98)
    args = parser.parse_args(argv)
    if not 2 <= args.min_yy <= args.max_yy <= 98:
        parser.error("need 2 <= min_yy <= max_yy <= 98")

    from datasets import Dataset, DatasetDict

    tokenizer = load_tokenizer(args.tokenizer)
    nouns = read_list(HELPERS / "gt_nouns.txt")
    universe = [make_example(n, c, yy) for n in nouns for c in args.centuries
                for yy in range(args.min_yy, args.max_yy + 1)]
    random.Random(args.seed).shuffle(universe)
    need = args.n_train + args.n_validation + args.n_test
    usable: list[GTExample] = []
    checked = 0
    while len(usable) < need and checked < len(universe):  # check in chunks: only what we need
        chunk = universe[checked: checked + max(256, 2 * (need - len(usable)))]
        checked += len(chunk)
        usable += [e for e, good in zip(chunk, same_length(tokenizer, chunk)) if good]
    if len(usable) < need:
        raise SystemExit(f"only {len(usable)} usable examples, {need} requested")
    splits = {
        "train": usable[: args.n_train],
        "validation": usable[args.n_train: args.n_train + args.n_validation],
        "test": usable[args.n_train + args.n_validation: need],
    }
    out = args.out
    if out.exists() and (out / "dataset_dict.json").exists():
        shutil.rmtree(out)
    DatasetDict({k: Dataset.from_list([asdict(e) for e in v]) for k, v in splits.items()}).save_to_disk(str(out))
    info = {
        "task": "gt",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sizes": {k: len(v) for k, v in splits.items()},
        "template": TEMPLATE,
        "centuries": args.centuries,
        "yy_range": [args.min_yy, args.max_yy],
        "dropped_for_token_length": checked - len(usable),
    }
    (out / "generation_info.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out}: {info['sizes']} (dropped {info['dropped_for_token_length']} for token length)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
