"""Build an IOI dataset in MIB's layout (mib-bench/ioi) from our IOI data, for runs
without the hub.

Each row of ours (the original's columns: `a` the indirect object, `b` the subject,
`clean` the sentence without its last word) becomes

    {"prompt": clean,
     "metadata": {"indirect_object": a, "subject": b, "random_c": c, "place", "object",
                  "order", "template_index"},
     "s2_io_flip_counterfactual": {"prompt": clean with its last `b` replaced by `a`}}

MIB's s2_io_flip counterfactual: the second mention of the subject becomes the
indirect object, which flips the answer to the subject. `random_c` (read by MIB's
filter only) is the row's random name `corr_c`. Written with `save_to_disk`, so
that pruning (`--task mib-ioi --dataset_path OUT`) and `src/eval/mib.py` read it.

    python scripts/make_mib_ioi.py [--source data/datasets/ioi] [--out data/datasets/mib_ioi]
"""

from __future__ import annotations

import argparse
import re

from edge_pruning.cli import run_cli
from edge_pruning.errors import TaskDataError
from edge_pruning.paths import DATASETS_DIR


def mib_row(row: dict, where: str) -> dict:
    prompt, io, s = row["clean"], row["a"], row["b"]
    mentions = [m.start() for m in re.finditer(rf"\b{re.escape(s)}\b", prompt)]
    if len(mentions) < 2:
        raise TaskDataError(f"{where}: the subject {s!r} is mentioned {len(mentions)} time(s) in the prompt, not twice")
    start = mentions[-1]
    flipped = prompt[:start] + io + prompt[start + len(s):]
    random_c = row["corr_c"] if row["corr_c"] not in (io, s) else row["corr_a"]
    return {
        "prompt": prompt,
        "metadata": {
            "indirect_object": io,
            "subject": s,
            "random_c": random_c,
            "place": row["place"],
            "object": row["object"],
            "order": row["order"],
            "template_index": int(row["template_index"]),
        },
        "s2_io_flip_counterfactual": {"prompt": flipped},
    }


def main(argv: list[str]) -> None:
    from datasets import Dataset, DatasetDict, load_from_disk

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(DATASETS_DIR / "ioi"))
    p.add_argument("--out", default=str(DATASETS_DIR / "mib_ioi"))
    p.add_argument("--splits", nargs="*", default=["train", "validation", "test"])
    args = p.parse_args(argv)
    source = load_from_disk(args.source)
    out = {}
    for split in args.splits:
        if split not in source:
            raise TaskDataError(f"{args.source} has no split {split!r}")
        out[split] = Dataset.from_list([mib_row(r, f"{args.source} {split} row {i}") for i, r in enumerate(source[split])])
    DatasetDict(out).save_to_disk(args.out)
    print(f"{args.out}: " + ", ".join(f"{k} {len(v)}" for k, v in out.items()))


if __name__ == "__main__":
    run_cli(main)
