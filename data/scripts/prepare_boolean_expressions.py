"""Generate the Boolean-expressions dataset (BIG-Bench Hard style).

Expressions use the literals True/False, the operators not/and/or and
parentheses, written with single spaces (``not ( True and False ) or True``),
with at most ``--max_literals`` (6) literals and parenthesis depth at most
``--max_depth`` (3); "not" is applied to a literal or a parenthesised group at
most twice in a row.

The full space is far too large to enumerate (billions of expressions already
at 6 literals), so we *sample* it: random expressions are drawn (literal count
uniform in 1..6, random structure), deduplicated, balanced 50/50 between
answers True and False, and collected until ``--max_total`` (default 5000)
unique expressions exist or the sampler runs dry. They are then shuffled
(seeded) and split 50/10/40 into train/validation/test. The few-shot examples
of :mod:`edge_pruning.boolean_prompts` are excluded.

Corruption: one literal (True<->False) or one binary operator (and<->or) is
flipped such that the answer flips; both prompt formats must keep the same token
length under the tokenizer. Expressions with no such flip are dropped.

Columns: expression, answer ("True"/"False"), corrupted_expression, corrupted_answer.

    python data/scripts/prepare_boolean_expressions.py --tokenizer data/models/smollm2-135m
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edge_pruning.boolean_prompts import (
    FEW_SHOT_EXAMPLES,
    evaluate,
    few_shot_prompt,
    instruction_prompt,
)
from edge_pruning.datagen import (
    DATASETS_DIR,
    generator_parser,
    load_tokenizer,
    save_splits,
    split_by_counts,
    token_lengths,
    write_generation_info,
)

FLIP = {"True": "False", "False": "True", "and": "or", "or": "and"}
NOT_WEIGHTS = (0.65, 0.30, 0.05)  # probability of 0, 1, 2 leading "not"s on a term


@dataclass(frozen=True)
class BoolExample:
    """One row of the saved dataset."""

    expression: str
    answer: str
    corrupted_expression: str
    corrupted_answer: str


def _composition(rng: random.Random, n: int, parts: int) -> list[int]:
    cuts = sorted(rng.sample(range(1, n), parts - 1))
    bounds = [0, *cuts, n]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def sample_expression(rng: random.Random, n: int, depth: int) -> list[str]:
    """``n`` literals joined by and/or; groups of >1 literal are parenthesised (depth-1).

    At least two terms whenever n >= 2, so no redundant "( ( ... ) )" wrapping.
    """
    parts = [1] * n if depth == 0 else _composition(rng, n, rng.randint(min(2, n), n))
    tokens: list[str] = []
    for i, size in enumerate(parts):
        if i:
            tokens.append(rng.choice(("and", "or")))
        tokens.extend(sample_term(rng, size, depth))
    return tokens


def sample_term(rng: random.Random, n: int, depth: int) -> list[str]:
    nots = rng.choices((0, 1, 2), weights=NOT_WEIGHTS)[0]
    if n == 1 and (depth == 0 or rng.random() < 0.85):
        core = [rng.choice(("True", "False"))]
    else:
        core = ["(", *sample_expression(rng, n, depth - 1), ")"]
    return ["not"] * nots + core


def corrupt(rng: random.Random, expression: str) -> str | None:
    """Flip one literal or and/or so that the value flips; None if impossible."""
    tokens = expression.split()
    value = evaluate(expression)
    positions = [i for i, tok in enumerate(tokens) if tok in FLIP]
    rng.shuffle(positions)
    for i in positions:
        flipped = tokens[:i] + [FLIP[tokens[i]]] + tokens[i + 1:]
        candidate = " ".join(flipped)
        if evaluate(candidate) != value:
            return candidate
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=DATASETS_DIR / "boolean_expressions")
    parser.add_argument("--max_total", type=int, default=5000,
                        help="cap on the number of unique expressions (before the split)")
    parser.add_argument("--max_literals", type=int, default=6)
    parser.add_argument("--max_depth", type=int, default=3)
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.5, 0.1, 0.4),
                        metavar=("TRAIN", "VAL", "TEST"))
    args = parser.parse_args(argv)

    tokenizer = load_tokenizer(args.tokenizer)
    rng = random.Random(args.seed)
    excluded = {e for e, _ in FEW_SHOT_EXAMPLES}
    seen: set[str] = set(excluded)
    per_answer = {"True": [], "False": []}
    quota = args.max_total // 2
    misses, no_flip = 0, 0
    while min(len(v) for v in per_answer.values()) < quota and misses < 200_000:
        n = rng.randint(1, args.max_literals)
        expression = " ".join(sample_expression(rng, n, args.max_depth))
        if expression in seen:
            misses += 1
            continue
        seen.add(expression)
        answer = str(evaluate(expression))
        if len(per_answer[answer]) >= quota:
            continue
        corrupted = corrupt(rng, expression)
        if corrupted is None:
            no_flip += 1
            continue
        per_answer[answer].append(BoolExample(expression, answer, corrupted, str(evaluate(corrupted))))

    # Same token length for the bare expression and for both prompt formats.
    k = min(len(v) for v in per_answer.values())
    candidates = per_answer["True"][:k] + per_answer["False"][:k]
    checks = [lambda s: s, instruction_prompt, few_shot_prompt]
    good = [True] * len(candidates)
    for fmt in checks:
        a = token_lengths(tokenizer, [fmt(e.expression) for e in candidates])
        b = token_lengths(tokenizer, [fmt(e.corrupted_expression) for e in candidates])
        good = [g and x == y for g, x, y in zip(good, a, b)]
    examples = [e for e, g in zip(candidates, good) if g]
    rng.shuffle(examples)

    total = len(examples)
    n_train = int(round(args.fractions[0] * total))
    n_val = int(round(args.fractions[1] * total))
    splits = split_by_counts(examples, n_train, n_val)
    out = args.out
    save_splits(out, splits)
    info = {
        "task": "boolean_expressions",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sizes": {k_: len(v) for k_, v in splits.items()},
        "max_total": args.max_total,
        "max_literals": args.max_literals,
        "max_depth": args.max_depth,
        "dropped_no_answer_flipping_corruption": no_flip,
        "dropped_for_token_length": len(candidates) - total,
        "answer_counts": {a: sum(e.answer == a for e in examples) for a in ("True", "False")},
    }
    write_generation_info(out, info)
    print(f"wrote {out}: {info['sizes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
