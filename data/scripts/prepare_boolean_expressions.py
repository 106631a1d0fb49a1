"""Generate the Boolean-expressions dataset (BIG-Bench Hard style) the way the original Edge Pruning does.

Sampling, as the original's generator: draw a number of literals (1..6), each True or
False; while more than one expression is left, apply a random operator (or, and, not,
equally likely) at a random place: ``a or b`` / ``a and b`` join two neighbours,
``not a`` negates one, and an operand that is not a bare literal is parenthesised
(``not ( True and False ) or True``, tokens space-separated). The depth of the result
is its operator-tree depth (a literal 0, each operator one more than its deepest
operand); a draw deeper than 3, or with three ``not``s in a row (the text
``not ( not ( not``), is thrown away and drawn again. Expressions are unique; at most
``--num_examples`` (10,000) of them from ``5 x`` as many tries. The input is
``"EXPR is"``, the target ``"True"`` / ``"False"``.

Splits, as the original: shuffled, then validation 10 % (the split is called ``val``,
the original's name; the tasks' loader also answers to ``validation``), test 40 %,
train the rest (train first in the shuffled order, then val, then test).

Every random draw above is made in the original's order from one
``random.Random(seed)`` (seed 42), so the expressions and splits are the original
generator's.

Corruption (``corr_input``): the original's scripts read a ``corr_input`` that its
generator does not make, so this one is ours, drawn from a separate random stream: the
fewest literal (True<->False) and operator (and<->or) flips that flip the answer,
fewest first (random among equals; flipping every literal and operator negates any
expression, so one always exists), such that the corrupted prompt tokenises to the
clean prompt's length in every prompt format. Expressions without such a flip are
dropped (counted in generation_info.json).

Columns: the original's (``input``, ``target``, ``length``: literals, ``depth``) and
``corr_input``, ``corr_target``, ``corr_flips``.

    python data/scripts/prepare_boolean_expressions.py --tokenizer data/models/smollm2-135m
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edge_pruning.boolean_prompts import evaluate, prompt_for
from edge_pruning.datagen import (
    DATASETS_DIR,
    generator_parser,
    load_tokenizer,
    save_splits,
    split_rng,
    token_lengths,
    write_generation_info,
)

FLIP = {"True": "False", "False": "True", "and": "or", "or": "and"}
LITERALS = ("False", "True")
OPERATORS = ("or", "and", "not")  # the original's order (it matters for the random draws)


@dataclass(frozen=True)
class BoolExample:
    """One row of the saved dataset."""

    input: str
    target: str
    length: int
    depth: int
    corr_input: str = ""
    corr_target: str = ""
    corr_flips: int = 0


def operand(text: str) -> str:
    return text if text in LITERALS else f"( {text} )"


def sample_tree(rng: random.Random, max_literals: int) -> tuple[str, bool, int, int]:
    """One draw of the original's procedure: (text, value, literals, depth)."""
    n = rng.randint(1, max_literals)
    values = [rng.choice([False, True]) for _ in range(n)]
    items = [(str(v), v, 0) for v in values]  # (text, value, depth)
    while len(items) > 1:
        op = rng.choice(OPERATORS)
        if op == "not":
            i = rng.randint(0, len(items) - 1)
            text, value, depth = items[i]
            items[i] = (f"not {operand(text)}", not value, depth + 1)
        else:
            i = rng.randint(0, len(items) - 2)
            (lt, lv, ld), (rt, rv, rd) = items[i], items[i + 1]
            value = (lv or rv) if op == "or" else (lv and rv)
            items[i: i + 2] = [(f"{operand(lt)} {op} {operand(rt)}", value, max(ld, rd) + 1)]
    text, value, depth = items[0]
    return text, value, n, depth


def sample_example(rng: random.Random, max_literals: int, max_depth: int, max_nots: int,
                   max_draws: int = 10_000) -> BoolExample | None:
    """Draw until the depth and the run of ``not``s are within bounds (None: gave up)."""
    banned = " ".join(["not ("] * max_nots + ["not"])
    for _ in range(max_draws):
        text, value, n, depth = sample_tree(rng, max_literals)
        if banned not in text and depth <= max_depth:
            return BoolExample(f"{text} is", str(value), n, depth)
    return None


def sample_unique(rng, n: int, max_tries: int, max_literals: int, max_depth: int, max_nots: int) -> list[BoolExample]:
    seen: set[str] = set()
    out: list[BoolExample] = []
    for _ in range(max_tries):
        ex = sample_example(rng, max_literals, max_depth, max_nots)
        if ex is not None and ex.input not in seen:
            seen.add(ex.input)
            out.append(ex)
        if len(out) >= n:
            break
    return out


def flips_that_negate(rng: random.Random, expression: str, max_size: int = 3):
    """Candidate corrupted expressions, fewest flips first (random order among equals),
    each with its flip count; the last resort flips every literal and operator."""
    tokens = expression.split()
    value = evaluate(expression)
    where = [i for i, t in enumerate(tokens) if t in FLIP]
    for size in range(1, min(max_size, len(where)) + 1):
        sets = list(itertools.combinations(where, size))
        rng.shuffle(sets)
        for chosen in sets:
            flipped = [FLIP[t] if i in chosen else t for i, t in enumerate(tokens)]
            text = " ".join(flipped)
            if evaluate(text) != value:
                yield text, size
    yield " ".join(FLIP.get(t, t) for t in tokens), len(where)  # De Morgan: the negation


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=DATASETS_DIR / "boolean_expressions")
    parser.add_argument("--num_examples", type=int, default=10_000)
    parser.add_argument("--val_ratio", type=float, default=0.1)
    parser.add_argument("--test_ratio", type=float, default=0.4)
    parser.add_argument("--max_expr_length", type=int, default=6, help="literals")
    parser.add_argument("--max_expr_depth", type=int, default=3)
    parser.add_argument("--max_consecutive_not", type=int, default=2)
    parser.add_argument("--max_tries", type=int, default=None, help="default 5 x --num_examples")
    args = parser.parse_args(argv)
    max_tries = args.max_tries or 5 * args.num_examples

    tokenizer = load_tokenizer(args.tokenizer)
    rng = random.Random(args.seed)
    data = sample_unique(rng, args.num_examples, max_tries, args.max_expr_length, args.max_expr_depth,
                         args.max_consecutive_not)
    n = len(data)
    n_val, n_test = int(args.val_ratio * n), int(args.test_ratio * n)
    n_train = n - n_val - n_test
    rng.shuffle(data)
    splits = {"train": data[:n_train], "val": data[n_train: n_train + n_val], "test": data[n_train + n_val:]}

    # Corruption: ours, from its own stream, so the draws above stay the original's.
    corr_rng = split_rng(args.seed, "corruption")
    formats = [prompt_for(style, fs) for style in ("original", "qa") for fs in (True, False)]
    dropped = 0

    def corrupt(ex: BoolExample) -> BoolExample | None:
        expression = ex.input[: -len(" is")]
        for text, size in flips_that_negate(corr_rng, expression):
            a = token_lengths(tokenizer, [f(expression) for f in formats])
            b = token_lengths(tokenizer, [f(text) for f in formats])
            if a == b:
                return BoolExample(ex.input, ex.target, ex.length, ex.depth, f"{text} is", str(evaluate(text)), size)
        return None

    out = {}
    for name, rows in splits.items():
        kept = [c for c in map(corrupt, rows) if c is not None]
        dropped += len(rows) - len(kept)
        out[name] = kept
    save_splits(args.out, out)
    info = {
        "task": "boolean_expressions",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sampled": n,
        "sizes": {k: len(v) for k, v in out.items()},
        "max_expr_length": args.max_expr_length,
        "max_expr_depth": args.max_expr_depth,
        "max_consecutive_not": args.max_consecutive_not,
        "dropped_for_token_length": dropped,
        "answer_counts": {a: sum(e.target == a for v in out.values() for e in v) for a in ("True", "False")},
        "corr_flips": {k: sum(e.corr_flips == k for v in out.values() for e in v)
                       for k in sorted({e.corr_flips for v in out.values() for e in v})},
    }
    write_generation_info(args.out, info)
    print(f"wrote {args.out}: {info['sizes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
