"""Generate the gendered-pronoun dataset (Mathwin et al.).

Clean prompt: "So Mary is a really great friend, isn't" -> " she" (distractor
" he"). Several tag-question templates (data/helper_files/gp_templates.json).
Corruption: the name is swapped for an opposite-gender name whose ' Name' form
has the same number of tokens, so the right pronoun flips and the clean and
corrupted prompts have the same token length (checked; failures are redrawn).

Every (template, name) clean prompt appears at most once across all splits.

    python data/scripts/prepare_gp.py --tokenizer data/models/smollm2-135m
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
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
    write_generation_info,
)

PRONOUN = {"female": " she", "male": " he"}
OTHER = {"female": "male", "male": "female"}


@dataclass(frozen=True)
class GPExample:
    """One row of the saved dataset."""

    clean: str
    corrupted: str
    target: str
    distractor: str


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=DATASETS_DIR / "gp")
    parser.add_argument("--n_train", type=int, default=150)
    parser.add_argument("--n_validation", type=int, default=150)
    parser.add_argument("--n_test", type=int, default=1000)
    args = parser.parse_args(argv)

    tokenizer = load_tokenizer(args.tokenizer)
    for pronoun in PRONOUN.values():
        if n_tokens(tokenizer, pronoun) != 1:
            raise SystemExit(f"{pronoun!r} is not a single token under {args.tokenizer}")
    templates = json.loads((HELPERS_DIR / "gp_templates.json").read_text())["templates"]
    female = read_list(HELPERS_DIR / "names_female.txt")
    male = read_list(HELPERS_DIR / "names_male.txt")
    ambiguous = set(female) & set(male)
    names = {"female": [n for n in female if n not in ambiguous],
             "male": [n for n in male if n not in ambiguous]}
    # Names grouped by gender and by token length of " Name".
    by_len: dict[str, dict[int, list[str]]] = {g: defaultdict(list) for g in names}
    for gender, group in names.items():
        for name in group:
            by_len[gender][n_tokens(tokenizer, " " + name)].append(name)

    rng = random.Random(args.seed)
    candidates = [(t, g, name) for t in templates for g in names for name in names[g]
                  if by_len[OTHER[g]].get(n_tokens(tokenizer, " " + name))]
    rng.shuffle(candidates)
    # Alternate genders so every split is balanced.
    per_gender = {g: [c for c in candidates if c[1] == g] for g in names}
    interleaved = [c for pair in zip(per_gender["female"], per_gender["male"]) for c in pair]

    examples: list[GPExample] = []
    need = args.n_train + args.n_validation + args.n_test
    for template, gender, name in interleaved:
        if len(examples) == need:
            break
        pool = by_len[OTHER[gender]][n_tokens(tokenizer, " " + name)]
        for _ in range(10):
            other = rng.choice(pool)
            clean, corrupted = template.format(name=name), template.format(name=other)
            if n_tokens(tokenizer, clean) == n_tokens(tokenizer, corrupted):
                examples.append(GPExample(clean, corrupted, PRONOUN[gender], PRONOUN[OTHER[gender]]))
                break
    if len(examples) < need:
        raise SystemExit(f"only {len(examples)} GP examples available, {need} requested")
    splits = split_by_counts(examples, args.n_train, args.n_validation, args.n_test)
    out = args.out
    save_splits(out, splits)
    info = {
        "task": "gp",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sizes": {k: len(v) for k, v in splits.items()},
        "n_templates": len(templates),
        "names": {g: sorted(v) for g, v in names.items()},
    }
    write_generation_info(out, info)
    print(f"wrote {out}: {info['sizes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
