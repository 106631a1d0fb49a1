"""Generate the IOI (indirect object identification, Wang et al. 2022) datasets.

Clean prompt: "When Mary and John went to the store, John gave a drink to" -> " Mary"
(IO = Mary, S = John). 15 base templates x {ABBA, BABA} = 30 templates feed
train/validation; 6 further base templates (12 templates) are held out for test.

Corruption (ACDC's "ABB->XYZ, BAB->XYZ"): all three name slots are refilled with
three fresh, distinct names that differ from both clean names; place and object
are kept. Names are restricted to those that are one ' Name' token under the
given tokenizer, so clean and corrupted prompts have identical token length
(this is also re-checked example by example).

Splits: train (200) is the first part of train_400, which is the first part of
train_100k; validation is disjoint from all of them; test uses the held-out
templates. With --single_template (IOI-t1) only one template is used everywhere
and test is made of fresh examples of that template.

train_100k is ~19 MB as Arrow, so by default it is written next to the
DatasetDict as a zstd Parquet file (``<out>/train_100k.parquet``, ~3 MB; load it
with ``datasets.Dataset.from_parquet``) and the DatasetDict holds the other
splits. ``--train_100k_as split`` puts it in the DatasetDict instead.

    python data/scripts/prepare_ioi.py --tokenizer data/models/smollm2-135m
    python data/scripts/prepare_ioi.py --tokenizer data/models/smollm2-135m --single_template
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from edge_pruning.datagen import (
    DATASETS_DIR,
    HELPERS_DIR,
    generator_parser,
    load_tokenizer,
    read_list,
    save_splits,
    token_lengths,
    write_generation_info,
)

ORDERS = ("ABBA", "BABA")


@dataclass(frozen=True)
class IOITemplate:
    """One concrete template: a base sentence plus a name order."""

    template_id: int
    base: str
    order: str
    held_out: bool


@dataclass(frozen=True)
class IOIExample:
    """One row of the saved dataset (column names are the dataclass fields)."""

    clean: str
    corrupted: str
    target: str
    distractor: str
    template_id: int
    order: str


def single_token_names(tokenizer, names: Sequence[str]) -> list[str]:
    """Names whose ' Name' form is exactly one token (and decodes back to itself)."""
    keep = []
    for name in names:
        ids = tokenizer(" " + name, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and tokenizer.decode(ids) == " " + name:
            keep.append(name)
    return keep


def build_templates(spec: dict) -> list[IOITemplate]:
    """ids 2b / 2b+1 are base b in ABBA / BABA order; train bases come first."""
    templates = []
    bases = [(b, False) for b in spec["train"]] + [(b, True) for b in spec["test"]]
    for index, (base, held_out) in enumerate(bases):
        for k, order in enumerate(ORDERS):
            templates.append(IOITemplate(2 * index + k, base, order, held_out))
    return templates


def fill(template: IOITemplate, io: str, s: str, place: str, obj: str) -> str:
    first, second = (io, s) if template.order == "ABBA" else (s, io)
    return template.base.format(A=first, B=second, C=s, PLACE=place, OBJECT=obj)


def fill_xyz(template: IOITemplate, x: str, y: str, z: str, place: str, obj: str) -> str:
    return template.base.format(A=x, B=y, C=z, PLACE=place, OBJECT=obj)


def sample_split(
    rng: random.Random,
    tokenizer,
    templates: Sequence[IOITemplate],
    names: Sequence[str],
    places: Sequence[str],
    objects: Sequence[str],
    n: int,
    seen: set[str],
    batch: int = 4096,
) -> list[IOIExample]:
    """Draw ``n`` examples whose clean prompt is not in ``seen`` (updated in place)."""
    out: list[IOIExample] = []
    stalls = 0
    while len(out) < n:
        cands: list[IOIExample] = []
        for _ in range(min(batch, 2 * (n - len(out)) + 8)):
            t = rng.choice(templates)
            io, s, x, y, z = rng.sample(names, 5)  # corrupted names differ from io, s
            place, obj = rng.choice(places), rng.choice(objects)
            clean = fill(t, io, s, place, obj)
            if clean in seen:
                continue
            seen.add(clean)
            cands.append(IOIExample(clean, fill_xyz(t, x, y, z, place, obj), " " + io, " " + s,
                                    t.template_id, t.order))
        lc = token_lengths(tokenizer, [c.clean for c in cands])
        lk = token_lengths(tokenizer, [c.corrupted for c in cands])
        good = [c for c, a, b in zip(cands, lc, lk) if a == b]
        out.extend(good[: n - len(out)])
        stalls = stalls + 1 if not good else 0
        if stalls > 20:
            raise RuntimeError(f"could only draw {len(out)} of {n} unique IOI examples")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = generator_parser(__doc__)
    parser.add_argument("--out", type=Path, default=None,
                        help="output dir (default data/datasets/ioi or ioi-t1)")
    parser.add_argument("--single_template", action="store_true", help="IOI-t1: one template only")
    parser.add_argument("--template_id", type=int, default=0,
                        help="the template used with --single_template (0: 'When A and B went to the ...', ABBA)")
    parser.add_argument("--n_train", type=int, default=200)
    parser.add_argument("--n_train_400", type=int, default=400)
    parser.add_argument("--n_train_100k", type=int, default=100_000, help="0 to omit the split")
    parser.add_argument("--n_validation", type=int, default=200)
    parser.add_argument("--n_test", type=int, default=10_000)
    parser.add_argument("--train_100k_as", choices=("parquet", "split"), default="parquet",
                        help="parquet: <out>/train_100k.parquet (default, small); split: inside the DatasetDict")
    parser.add_argument("--templates", type=Path, default=HELPERS_DIR / "ioi_templates.json")
    args = parser.parse_args(argv)

    from datasets import Dataset

    out = args.out or DATASETS_DIR / ("ioi-t1" if args.single_template else "ioi")
    tokenizer = load_tokenizer(args.tokenizer)
    rng = random.Random(args.seed)

    raw_names = read_list(HELPERS_DIR / "names_female.txt") + read_list(HELPERS_DIR / "names_male.txt")
    names = single_token_names(tokenizer, list(dict.fromkeys(raw_names)))
    if len(names) < 5:
        raise RuntimeError(f"only {len(names)} single-token names under {args.tokenizer}")
    places = read_list(HELPERS_DIR / "ioi_places.txt")
    objects = read_list(HELPERS_DIR / "ioi_objects.txt")
    templates = build_templates(json.loads(args.templates.read_text()))

    if args.single_template:
        train_t = test_t = [t for t in templates if t.template_id == args.template_id]
        if not train_t:
            raise SystemExit(f"no template with id {args.template_id}")
    else:
        train_t = [t for t in templates if not t.held_out]
        test_t = [t for t in templates if t.held_out]

    seen: set[str] = set()
    pool_n = max(args.n_train, args.n_train_400, args.n_train_100k)
    pool = sample_split(rng, tokenizer, train_t, names, places, objects, pool_n, seen)
    splits = {"train": pool[: args.n_train], "train_400": pool[: args.n_train_400]}
    big = pool[: args.n_train_100k]
    if big and args.train_100k_as == "split":
        splits["train_100k"] = big
    splits["validation"] = sample_split(rng, tokenizer, train_t, names, places, objects,
                                        args.n_validation, seen)
    splits["test"] = sample_split(rng, tokenizer, test_t, names, places, objects, args.n_test, seen)

    save_splits(out, splits)
    sizes = {k: len(v) for k, v in splits.items()}
    if big and args.train_100k_as == "parquet":
        import pyarrow.parquet as pq

        table = Dataset.from_list([asdict(e) for e in big]).data.table
        pq.write_table(table, out / "train_100k.parquet", compression="zstd", compression_level=19)
        sizes["train_100k"] = len(big)
    info = {
        "task": "ioi-t1" if args.single_template else "ioi",
        "tokenizer": args.tokenizer,
        "seed": args.seed,
        "sizes": sizes,
        "train_100k_file": "train_100k.parquet" if big and args.train_100k_as == "parquet" else None,
        "train_template_ids": sorted({t.template_id for t in train_t}),
        "test_template_ids": sorted({t.template_id for t in test_t}),
        "names": names,
        "corruption": "all three name slots refilled with three fresh distinct names (ABB->XYZ)",
    }
    write_generation_info(out, info)
    print(f"wrote {out}: {info['sizes']} ({len(names)} single-token names)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
