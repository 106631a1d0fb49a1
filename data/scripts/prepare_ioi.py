"""Generate the IOI datasets (indirect object identification, Wang et al. 2022) the way the original Edge Pruning does.

A sentence is one of the IOI benchmark's templates (data/helper_files/ioi_templates.json:
15 BABA + 15 ABBA, as in the original's src/eval/ioi.py) filled with its names, places
and objects (data/helper_files/ioi_{names,places,objects}.txt), e.g.
"Then, Mary and John went to the store. John gave a drink to Mary". The answer is the
last word, the indirect object (slot {A}); the subject ({B}) is the wrong answer.

Held-out templates: as the original's generator, 2 BABA and 2 ABBA templates are drawn
with Python's ``random.seed(42)`` then ``random.sample(baba, 2)``,
``random.sample(abba, 2)`` (BABA 10 and 1, ABBA 0 and 11); the test split uses only
those, train and validation the other 26.

Corruption, as the original's: four fresh, distinct names, none of the two clean ones,
drawn from the original's 2,000-name list (data/helper_files/names.json, boys and
girls), replace the first {A}, the first {B}, the second {A} (the answer) and the
second {B}, so the prompt before the answer reads X .. Y .. Z (ACDC's "ABB->XYZ").
Clean and corrupted sentences must tokenise to the same length (re-drawn otherwise).

Names, clean and corrupting, are restricted to those whose " Name" is one token under
the tokenizer (SmolLM2: 106 of the benchmark's 109, as Brandon, Connor and Kyle are two;
579 of the 1,928 distinct names of names.json), so the answer is one token.

Splits: validation (200), test (10,000, held-out templates) and train (200); train is
the start of train_400, which is the start of train_100k when that is asked for
(``--n_train_100k 100000``, written as ``<out>/train_100k.parquet``). Each split draws
from its own RNG, so asking for train_100k changes no other split; every clean sentence
occurs once over all splits. With ``--single_template`` (IOI-t1) every split uses one
template (default: ABBA 5, "After {A} and {B} went to the {PLACE}, {B} gave a {OBJECT}
to {A}") and test is fresh sentences of it.

Columns: the original's (``ioi_sentences``, ``corr_ioi_sentences``, ``a``, ``b``,
``corr_a``..``corr_d``, ``place``, ``object``, ``order``, ``template_index``) and ours
(``clean``, ``corrupted``: the sentences without their last word; ``target``,
``distractor``: " A", " B").

    python data/scripts/prepare_ioi.py --tokenizer data/models/smollm2-135m
    python data/scripts/prepare_ioi.py --tokenizer data/models/smollm2-135m --single_template
"""

from __future__ import annotations

import json
import random
import re
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
    split_rng,
    token_lengths,
    write_generation_info,
    write_parquet,
)

ORIGINAL_HOLDOUT_SEED = 42  # the original generator's default seed
HELD_OUT_PER_ORDER = 2  # its --num_test_templates 4, split over the two orders
SLOT = re.compile(r"\{(A|B|PLACE|OBJECT)\}")


@dataclass(frozen=True)
class IOITemplate:
    order: str  # "baba" | "abba" (the original's names)
    index: int  # position in its list
    text: str


@dataclass(frozen=True)
class IOIExample:
    """One row of the saved dataset (column names are the dataclass fields)."""

    ioi_sentences: str
    corr_ioi_sentences: str
    a: str
    b: str
    corr_a: str
    corr_b: str
    corr_c: str
    corr_d: str
    place: str | None
    object: str | None
    order: str
    template_index: int
    clean: str
    corrupted: str
    target: str
    distractor: str


def load_templates(path: Path) -> list[IOITemplate]:
    data = json.loads(path.read_text())
    return [IOITemplate(order, i, text) for order in ("baba", "abba") for i, text in enumerate(data[order])]


def held_out(templates: Sequence[IOITemplate], seed: int = ORIGINAL_HOLDOUT_SEED) -> set[tuple[str, int]]:
    """The original's choice: one seeded stream, BABA drawn first, then ABBA."""
    rng = random.Random(seed)
    out = set()
    for order in ("baba", "abba"):
        pool = [t for t in templates if t.order == order]
        out |= {(t.order, t.index) for t in rng.sample(pool, HELD_OUT_PER_ORDER)}
    return out


def fill(template: str, names: dict[str, list[str]], place: str, obj: str) -> str:
    """Fill the k-th {A} with names["A"][k] (likewise {B}), and the place and object."""
    seen = {"A": 0, "B": 0}

    def one(m: re.Match) -> str:
        slot = m.group(1)
        if slot == "PLACE":
            return place
        if slot == "OBJECT":
            return obj
        k = seen[slot]
        seen[slot] += 1
        return names[slot][k]

    return SLOT.sub(one, template)


def single_token_names(tokenizer, names: Sequence[str]) -> list[str]:
    """Names whose ' Name' form is exactly one token (and decodes back to itself)."""
    keep = []
    for name in names:
        ids = tokenizer(" " + name, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and tokenizer.decode(ids) == " " + name:
            keep.append(name)
    return keep


def without_last_word(sentence: str) -> str:
    return sentence[: sentence.rfind(" ")]


def draw(rng: random.Random, templates, names, corr_names, places, objects, seen: set[str]) -> IOIExample | None:
    t = rng.choice(templates)
    a, b = rng.sample(names, 2)
    place, obj = rng.choice(places), rng.choice(objects)
    sentence = fill(t.text, {"A": [a, a], "B": [b, b]}, place, obj)
    if sentence in seen:
        return None
    seen.add(sentence)
    while True:
        new_a, new_b, c, d = rng.sample(corr_names, 4)
        if not {new_a, new_b, c, d} & {a, b}:
            break
    corrupted = fill(t.text, {"A": [new_a, c], "B": [new_b, d]}, place, obj)
    return IOIExample(
        ioi_sentences=sentence, corr_ioi_sentences=corrupted, a=a, b=b,
        corr_a=new_a, corr_b=new_b, corr_c=c, corr_d=d,
        place=place if "{PLACE}" in t.text else None, object=obj if "{OBJECT}" in t.text else None,
        order=t.order, template_index=t.index,
        clean=without_last_word(sentence), corrupted=without_last_word(corrupted), target=" " + a, distractor=" " + b,
    )  # fmt: skip


def sample_split(rng, tokenizer, templates, names, corr_names, places, objects, n: int,
                 seen: set[str]) -> list[IOIExample]:
    """``n`` examples with new clean sentences (``seen`` is updated); clean and
    corrupted must tokenise equally long, as sentences and as prompts."""
    out: list[IOIExample] = []
    stalls = 0
    while len(out) < n:
        cands = [e for e in (draw(rng, templates, names, corr_names, places, objects, seen)
                             for _ in range(min(4096, 2 * (n - len(out)) + 8))) if e is not None]
        lengths = [token_lengths(tokenizer, [getattr(e, k) for e in cands])
                   for k in ("ioi_sentences", "corr_ioi_sentences", "clean", "corrupted")]
        good = [e for e, w, x, y, z in zip(cands, *lengths) if w == x and y == z]
        out.extend(good[: n - len(out)])
        stalls = stalls + 1 if not good else 0
        if stalls > 20:
            raise RuntimeError(f"could only draw {len(out)} of {n} unique IOI examples")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=None, help="output dir (default data/datasets/ioi or ioi-t1)")
    parser.add_argument("--single_template", action="store_true", help="IOI-t1: one template only")
    parser.add_argument("--template_order", choices=("abba", "baba"), default="abba", help="with --single_template")
    parser.add_argument("--template_index", type=int, default=5, help="with --single_template (0..14)")
    parser.add_argument("--n_train", type=int, default=200)
    parser.add_argument("--n_train_400", type=int, default=400)
    parser.add_argument("--n_train_100k", type=int, default=0, help="e.g. 100000; 0 omits the split")
    parser.add_argument("--n_validation", type=int, default=200)
    parser.add_argument("--n_test", type=int, default=10_000)
    parser.add_argument("--train_100k_as", choices=("parquet", "split"), default="parquet",
                        help="parquet: <out>/train_100k.parquet (default, small); split: inside the DatasetDict")
    parser.add_argument("--templates", type=Path, default=HELPERS_DIR / "ioi_templates.json")
    args = parser.parse_args(argv)

    out = args.out or DATASETS_DIR / ("ioi-t1" if args.single_template else "ioi")
    tokenizer = load_tokenizer(args.tokenizer)
    all_names = read_list(HELPERS_DIR / "ioi_names.txt")
    names = single_token_names(tokenizer, all_names)
    if len(names) < 2:
        raise SystemExit(f"only {len(names)} single-token names under {args.tokenizer}")
    pools = json.loads((HELPERS_DIR / "names.json").read_text())
    corr_names = single_token_names(tokenizer, list(dict.fromkeys(pools["boys"] + pools["girls"])))
    if len(corr_names) < 6:
        raise SystemExit(f"only {len(corr_names)} single-token corrupting names under {args.tokenizer}")
    places = read_list(HELPERS_DIR / "ioi_places.txt")
    objects = read_list(HELPERS_DIR / "ioi_objects.txt")
    templates = load_templates(args.templates)

    if args.single_template:
        train_t = test_t = [t for t in templates if (t.order, t.index) == (args.template_order, args.template_index)]
        if not train_t:
            raise SystemExit(f"no template {args.template_order} {args.template_index}")
    else:
        test_keys = held_out(templates)
        train_t = [t for t in templates if (t.order, t.index) not in test_keys]
        test_t = [t for t in templates if (t.order, t.index) in test_keys]

    seen: set[str] = set()

    def split(name: str, temps, n: int) -> list[IOIExample]:
        rng = split_rng(args.seed, name)
        return sample_split(rng, tokenizer, temps, names, corr_names, places, objects, n, seen) if n else []

    splits = {"validation": split("validation", train_t, args.n_validation)}
    splits["test"] = split("test", test_t, args.n_test)
    pool = split("train", train_t, max(args.n_train, args.n_train_400, args.n_train_100k))
    splits["train"] = pool[: args.n_train]
    splits["train_400"] = pool[: args.n_train_400]
    big = pool[: args.n_train_100k]
    if big and args.train_100k_as == "split":
        splits["train_100k"] = big
    splits = {k: splits[k] for k in ("train", "train_400", "train_100k", "validation", "test") if k in splits}

    save_splits(out, splits)
    sizes = {k: len(v) for k, v in splits.items()}
    if big and args.train_100k_as == "parquet":
        write_parquet(out, "train_100k", big)
        sizes["train_100k"] = len(big)
    info = {
        "task": "ioi-t1" if args.single_template else "ioi",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sizes": sizes,
        "train_100k_file": "train_100k.parquet" if big and args.train_100k_as == "parquet" else None,
        "train_templates": [[t.order, t.index] for t in train_t],
        "test_templates": [[t.order, t.index] for t in test_t],
        "names": names,
        "names_dropped_not_single_token": [n for n in all_names if n not in names],
        "n_corrupting_names": len(corr_names),
        "corruption": "first A, first B, second A, second B replaced by four fresh distinct names (original)",
    }
    write_generation_info(out, info)
    print(f"wrote {out}: {sizes} ({len(names)} single-token names)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
