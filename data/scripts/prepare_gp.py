"""Generate the gendered-pronoun dataset (Mathwin et al.) the way the original Edge Pruning does.

Prompts: the original's 30 templates (data/helper_files/gp_templates.json), e.g.
"So Emily always remembers birthdays, doesn't" -> " she" (wrong: " he"), filled with
the original's names (data/helper_files/names.json: 1,000 girls' and 1,000 boys'
names, evened out to the shorter list). Every template with every name is one example
(60,000); as the original, names on both lists (72, e.g. Taylor) stay on both, with
both pronouns (``--drop_ambiguous`` removes them: ours).

Splits, as the original: the examples are shuffled; validation is the first 150, test
the next 3,000, train the next 150; each split is shuffled again.

Corruption, as the original's: the name is replaced by a random name of the other list
(the whole list) until the prompt tokenises to the same length; the pronoun flips.
Examples that no name of the other list can corrupt so (where the original would loop
for ever: with SmolLM2, long names such as Giancarlo) are dropped before the split.

Every random draw is made in the original's order from one ``random.Random(seed)``
(seed 42), so with GPT-2's tokenizer and its names the output is the original's.

Columns (the original's): prefix, pronoun ("he"/"she"), template, name, corr_prefix,
corr_name, corr_pronoun.

    python data/scripts/prepare_gp.py --tokenizer data/models/smollm2-135m
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edge_pruning.datagen import (
    DATASETS_DIR,
    HELPERS_DIR,
    generator_parser,
    load_tokenizer,
    save_splits,
    token_lengths,
    write_generation_info,
)

OTHER = {"he": ("she", "girls"), "she": ("he", "boys")}


@dataclass(frozen=True)
class GPExample:
    """One row of the saved dataset (the original's columns)."""

    prefix: str
    pronoun: str
    template: str
    name: str
    corr_prefix: str = ""
    corr_name: str = ""
    corr_pronoun: str = ""


def all_examples(templates: Sequence[str], boys: Sequence[str], girls: Sequence[str]) -> list[GPExample]:
    """Per template, every boy ("he") then every girl ("she"), the original's order."""
    out = []
    for template in templates:
        out += [GPExample(template.format(name=n), "he", template, n) for n in boys]
        out += [GPExample(template.format(name=n), "she", template, n) for n in girls]
    return out


def corruptible(tokenizer, data: list[GPExample], templates, names: dict[str, list[str]]) -> list[GPExample]:
    """The examples for which some name of the other list gives a prompt of equal token length."""
    lengths = {}
    for template in templates:
        for pool in ("boys", "girls"):
            lengths[template, pool] = set(token_lengths(tokenizer, [template.format(name=n) for n in names[pool]]))
    n = token_lengths(tokenizer, [e.prefix for e in data])
    return [e for e, k in zip(data, n) if k in lengths[e.template, OTHER[e.pronoun][1]]]


def corrupt(rng: random.Random, tokenizer, ex: GPExample, names: dict[str, list[str]],
            max_tries: int = 10_000) -> GPExample:
    n = len(tokenizer.tokenize(ex.prefix))
    pronoun, pool = OTHER[ex.pronoun]
    for _ in range(max_tries):
        name = rng.choice(names[pool])
        prefix = ex.template.format(name=name)
        if len(tokenizer.tokenize(prefix)) == n:
            return GPExample(ex.prefix, ex.pronoun, ex.template, ex.name, prefix, name, pronoun)
    raise SystemExit(f"no name of the same token length to corrupt {ex.prefix!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=DATASETS_DIR / "gp")
    parser.add_argument("--n_train", type=int, default=150)
    parser.add_argument("--n_validation", type=int, default=150)
    parser.add_argument("--n_test", type=int, default=3000)
    parser.add_argument("--names", type=Path, default=HELPERS_DIR / "names.json",
                        help='JSON {"girls": [...], "boys": [...]}')
    parser.add_argument("--templates", type=Path, default=HELPERS_DIR / "gp_templates.json")
    parser.add_argument("--enforce_single_token", action="store_true",
                        help="only names that are one token (the original's -e; it tests them without a space)")
    parser.add_argument("--drop_ambiguous", action="store_true", help="drop names on both lists (ours)")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    tokenizer = load_tokenizer(args.tokenizer)
    for pronoun in (" he", " she"):
        if len(tokenizer(pronoun, add_special_tokens=False)["input_ids"]) != 1:
            raise SystemExit(f"{pronoun!r} is not a single token under {args.tokenizer}")
    names = json.loads(args.names.read_text())
    names = {k: list(names[k]) for k in ("girls", "boys")}
    if args.drop_ambiguous:
        both = set(names["girls"]) & set(names["boys"])
        names = {k: [n for n in v if n not in both] for k, v in names.items()}
    girls, boys = names["girls"], names["boys"]
    if args.enforce_single_token:
        single = lambda n: len(tokenizer(n, add_special_tokens=False)["input_ids"]) == 1  # noqa: E731
        girls, boys = [n for n in girls if single(n)], [n for n in boys if single(n)]
    n_each = min(len(boys), len(girls))
    boys, girls = boys[:n_each], girls[:n_each]
    templates = json.loads(args.templates.read_text())["templates"]

    data = all_examples(templates, boys, girls)
    n_all = len(data)
    data = corruptible(tokenizer, data, templates, names)
    need = args.n_validation + args.n_test + args.n_train
    if len(data) < need:
        raise SystemExit(f"only {len(data)} GP examples, {need} requested")
    rng.shuffle(data)
    validation = data[: args.n_validation]
    test = data[args.n_validation: args.n_validation + args.n_test]
    train = data[args.n_validation + args.n_test: need]
    splits = {"train": train, "validation": validation, "test": test}
    for rows in splits.values():
        rng.shuffle(rows)
    splits = {k: [corrupt(rng, tokenizer, e, names) for e in rows] for k, rows in splits.items()}
    out = args.out
    save_splits(out, splits)
    info = {
        "task": "gp",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sizes": {k: len(v) for k, v in splits.items()},
        "n_templates": len(templates),
        "names_each": n_each,
        "dropped_not_corruptible": n_all - len(data),
        "ambiguous_names_kept": sorted(set(girls) & set(boys)),
    }
    write_generation_info(out, info)
    print(f"wrote {out}: {info['sizes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
