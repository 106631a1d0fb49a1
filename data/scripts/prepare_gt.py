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

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edge_pruning.datagen import (
    DATASETS_DIR,
    HELPERS_DIR,
    generator_parser,
    load_tokenizer,
    read_list,
    save_splits,
    split_by_counts,
    token_lengths,
    write_generation_info,
)

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
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=DATASETS_DIR / "gt")
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

    tokenizer = load_tokenizer(args.tokenizer)
    nouns = read_list(HELPERS_DIR / "gt_nouns.txt")
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
    splits = split_by_counts(usable, args.n_train, args.n_validation, args.n_test)
    out = args.out
    save_splits(out, splits)
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
    write_generation_info(out, info)
    print(f"wrote {out}: {info['sizes']} (dropped {info['dropped_for_token_length']} for token length)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
