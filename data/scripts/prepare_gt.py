"""Generate the greater-than dataset (Hanna et al. 2023) the way the original Edge Pruning does.

Prompts: six templates (data/helper_files/gt_templates.json, the original's), e.g.
"The war lasted from 1732 to 17", with the 120 nouns of Hanna et al.
(data/helper_files/gt_nouns.txt) and centuries 10..21. The model continues with a
year's last two digits.

Valid years. The original keeps, per century, the years "CCYY" that GPT-2 splits into
the two tokens "CC" and "YY". A tokenizer that splits digits (SmolLM2) makes every
year four digit tokens; there every year counts as valid. For the k-th valid year of a
century (not the first, not the last), an example's ``digits`` is that year's YY and its
prompt names the *previous* valid year: ``digits`` is the first valid year after the
start year, and the original's probability difference is P(YY > digits) - P(YY <
digits).

Year-disjoint splits, as the original: the values 00..99 of ``digits`` are shuffled;
validation takes every example of the first values until it has enough, then test,
then train (each truncated to its size, then shuffled). Each split therefore has its
own years (a single ``digits`` value at these sizes). Examples are enumerated template,
century, noun, year, in the original's order.

Corruption, as the original's: a random century (10..21) and random two digits
(01..98) for the same template and noun, re-drawn until the corrupted prompt tokenises
to the clean prompt's length and its century has a valid year after those digits.

Every random draw is made in the original's order from one ``random.Random(seed)``
(seed 42), so with GPT-2's tokenizer the output is the original's. Sizes: train 150,
validation 150, test 5,000; ``--n_train_80k 80000`` adds train_80k (the original's
train rule with that size, its own random stream) as ``<out>/train_80k.parquet``.

Columns (the original's): template, century, noun, digits, prefix, corr_noun,
corr_century, corr_digits, corr_prefix (digits as two-character strings). The
original's ``good``/``bad`` lists of valid years are left out (no script reads them).

    python data/scripts/prepare_gt.py --tokenizer data/models/smollm2-135m
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from edge_pruning.datagen import (
    DATASETS_DIR,
    HELPERS_DIR,
    generator_parser,
    load_tokenizer,
    read_list,
    save_splits,
    split_rng,
    write_generation_info,
    write_parquet,
)

CORRUPT_DIGITS = [f"{i:02d}" for i in range(1, 99)]  # the original draws from 01..98


@dataclass(frozen=True)
class GTExample:
    """One row of the saved dataset (the original's columns)."""

    template: str
    century: str
    noun: str
    digits: str
    prefix: str
    corr_noun: str = ""
    corr_century: str = ""
    corr_digits: str = ""
    corr_prefix: str = ""


def valid_year(tokenizer, year: str) -> bool:
    """"CCYY" tokenises as "CC", "YY" (GPT-2, the original's test) or as four digits."""
    pieces = [tokenizer.decode([i]) for i in tokenizer(year, add_special_tokens=False)["input_ids"]]
    return pieces == [year[:2], year[2:]] or pieces == list(year)


def valid_years(tokenizer, centuries: Sequence[int]) -> dict[int, list[str]]:
    """Per century, the valid YY in increasing order."""
    return {c: [f"{y:02d}" for y in range(100) if valid_year(tokenizer, f"{c:02d}{y:02d}")] for c in centuries}


def group(digits: str, templates, centuries, nouns, years: dict[int, list[str]]) -> Iterator[GTExample]:
    """Every example whose ``digits`` is `digits`, in the original's enumeration order."""
    for template in templates:
        for century in centuries:
            valid = years[century]
            if digits not in valid[1:-1]:  # at least one valid year before and after
                continue
            start = valid[valid.index(digits) - 1]
            for noun in nouns:
                yield GTExample(template, str(century), noun, digits,
                                template.format(noun=noun, start=f"{century}{start}", end_century=str(century)))


def take(order: list[str], at: int, n: int, groups) -> tuple[list[GTExample], int]:
    """Whole ``digits`` groups from position `at` of `order` until `n` examples."""
    out: list[GTExample] = []
    while len(out) < n:
        if at >= len(order):
            raise SystemExit(f"ran out of years after {len(out)} of {n} examples")
        out.extend(groups(order[at]))
        at += 1
    return out[:n], at


def corrupt(rng: random.Random, tokenizer, ex: GTExample, nouns, centuries: list[str], years,
            randomize_noun: bool, max_tries: int = 10_000) -> GTExample:
    n = len(tokenizer.tokenize(ex.prefix))
    for _ in range(max_tries):
        noun = rng.choice(nouns) if randomize_noun else ex.noun
        century = rng.choice(centuries)
        digits = rng.choice(CORRUPT_DIGITS)
        prefix = ex.template.format(noun=noun, start=century + digits, end_century=century)
        later = any(y > digits for y in years[int(century)])
        if len(tokenizer.tokenize(prefix)) == n and later:
            return GTExample(ex.template, ex.century, ex.noun, ex.digits, ex.prefix, noun, century, digits, prefix)
    raise SystemExit(f"no corruption of the same token length for {ex.prefix!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=DATASETS_DIR / "gt")
    parser.add_argument("--n_train", type=int, default=150)
    parser.add_argument("--n_validation", type=int, default=150)
    parser.add_argument("--n_test", type=int, default=5000)
    parser.add_argument("--n_train_80k", type=int, default=0, help="e.g. 80000; 0 omits the split")
    parser.add_argument("--start_century", type=int, default=10)
    parser.add_argument("--end_century", type=int, default=21)
    parser.add_argument("--use_only_original_template", action="store_true",
                        help="only the first template (the original's -u)")
    parser.add_argument("--randomize_noun", action="store_true", help="corrupt the noun too (the original's -rn)")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    tokenizer = load_tokenizer(args.tokenizer)
    nouns = read_list(HELPERS_DIR / "gt_nouns.txt")
    templates = json.loads((HELPERS_DIR / "gt_templates.json").read_text())["templates"]
    templates = templates[:1] if args.use_only_original_template else templates
    centuries = list(range(args.start_century, args.end_century + 1))
    years = valid_years(tokenizer, centuries)

    def groups(digits: str) -> list[GTExample]:
        return list(group(digits, templates, centuries, nouns, years))

    order = [f"{i:02d}" for i in range(100)]
    rng.shuffle(order)
    validation, at = take(order, 0, args.n_validation, groups)
    test, at = take(order, at, args.n_test, groups)
    train_at = at
    train, at = take(order, at, args.n_train, groups)
    splits = {"train": train, "validation": validation, "test": test}
    for name in splits:
        rng.shuffle(splits[name])
    names = [str(c) for c in centuries]
    splits = {name: [corrupt(rng, tokenizer, e, nouns, names, years, args.randomize_noun) for e in rows]
              for name, rows in splits.items()}
    out = args.out
    save_splits(out, splits)
    sizes = {k: len(v) for k, v in splits.items()}
    if args.n_train_80k:
        big_rng = split_rng(args.seed, "train_80k")
        big, _ = take(order, train_at, args.n_train_80k, groups)
        big_rng.shuffle(big)
        write_parquet(out, "train_80k", [corrupt(big_rng, tokenizer, e, nouns, names, years, args.randomize_noun)
                                         for e in big])
        sizes["train_80k"] = len(big)
    info = {
        "task": "gt",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sizes": sizes,
        "templates": templates,
        "centuries": [centuries[0], centuries[-1]],
        "valid_years_per_century": {c: len(v) for c, v in years.items()},
        "digits_order": order,
        "digits_per_split": {k: sorted({e.digits for e in v}) for k, v in splits.items()},
    }
    write_generation_info(out, info)
    print(f"wrote {out}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
