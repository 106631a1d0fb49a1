"""The MIB circuit track's tasks, from a local copy of its datasets (the hub's
mib-bench/ioi, copycolors_mcqa, arc_easy, arc_challenge, arithmetic_addition,
arithmetic_subtraction), read as MIB's `HFEAPDataset` reads them.

Each row gives a clean prompt, a counterfactual prompt and the two answers, whose
first tokens (without special tokens) are the labels; the metric is the logit
difference at the last real token:

* IOI: `prompt`; counterfactual `s2_io_flip_counterfactual.prompt`; right answer
  " " + `metadata.indirect_object`, wrong " " + `metadata.subject`;
* MCQA and ARC: `prompt`; counterfactual `symbol_counterfactual.prompt`; right
  `choices.label[answerKey]`, wrong the counterfactual's `choices.label[answerKey]`;
* arithmetic: `prompt`; counterfactual `random_counterfactual.prompt`; right
  str(`label`), wrong str(`random_counterfactual.label`), rows of the task's operator.

Rows MIB's filter drops are dropped here too (IOI: the three names' tokenisations of
unequal length; MCQA/ARC: the two answers' of unequal length; arithmetic: a label of
more than one token, no counterfactual, another operator), and so are rows whose
clean and counterfactual prompts tokenise to different lengths (MIB patches them
position by position; our models need equal lengths). Both counts are logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import TaskDataError
from .batch import Encoded
from .choice import ChoiceTask
from .tokens import first_token, tokens

logger = logging.getLogger("edge_pruning")

SPLIT_FILE_PATTERNS = ("{split}.jsonl", "{split}.json", "{split}.parquet", "{split}-*.parquet", "data/{split}-*.parquet")


def load_mib_rows(path: str | os.PathLike, split: str, config: str | None = None) -> list[dict]:
    """One split of a local copy of an MIB dataset: a `save_to_disk` folder, or the
    hub repository's files (`{split}.jsonl|json|parquet`, `{split}-*.parquet`,
    `data/{split}-*.parquet`), under the `config` subfolder when it has one (MCQA's
    `4_answer_choices`)."""
    from datasets import load_dataset, load_from_disk

    root = Path(path)
    if config and (root / config).is_dir():
        root = root / config
    if not root.is_dir():
        raise TaskDataError(f"MIB dataset folder {root} does not exist")
    if (root / "dataset_dict.json").exists():
        data = load_from_disk(str(root))
        if split not in data:
            raise TaskDataError(f"{root} has no split {split!r}; it has {', '.join(data.keys())}")
        return list(data[split])
    for pattern in SPLIT_FILE_PATTERNS:
        files = sorted(str(f) for f in root.glob(pattern.format(split=split)))
        if files:
            kind = "parquet" if files[0].endswith(".parquet") else "json"
            return list(load_dataset(kind, data_files=files, split="train"))
    raise TaskDataError(f"{root} has no files of split {split!r} (looked for {', '.join(p.format(split=split) for p in SPLIT_FILE_PATTERNS)})")


class MIBTask(ChoiceTask):
    """One MIB task: its rows' clean/counterfactual prompts and answers, MIB's filter."""

    counterfactual = ""
    dataset_config: str | None = None

    def answers(self, row: dict) -> tuple[str, str]:
        raise NotImplementedError

    def keep(self, tokenizer, row: dict) -> bool:
        """MIB's filter (`HFEAPDataset.filter_dataset`)."""
        return True

    def encode_rows(self, rows, tokenizer):
        out: list[Encoded] = []
        if not rows:
            return out
        self.detect_layout(rows[0].keys(), f"{self.name} rows")
        filtered = unequal = 0
        for i, row in enumerate(rows):
            where = f"{self.name} example {i}"
            if self.counterfactual not in row:
                raise TaskDataError(f"{where}: no {self.counterfactual!r} column")
            if not self.keep(tokenizer, row):
                filtered += 1
                continue
            if not isinstance(row[self.counterfactual], dict):
                raise TaskDataError(f"{where}: {self.counterfactual!r} is not a record with a prompt")
            clean, corrupted = row["prompt"], row[self.counterfactual]["prompt"]
            ids, corr = tokens(tokenizer, clean, True), tokens(tokenizer, corrupted, True)
            if len(ids) != len(corr):
                unequal += 1
                continue
            right, wrong = self.answers(row)
            target = first_token(tokenizer, right, "answer", where)
            distractor = first_token(tokenizer, wrong, "wrong answer", where)
            out.append(Encoded(ids, corr, [len(ids) - 1], [target], distractor))
        if filtered or unequal:
            logger.info(
                f"{self.name}: {len(out)} of {len(rows)} rows kept ({filtered} dropped by MIB's filter, "
                f"{unequal} with clean and counterfactual prompts of different token lengths)"
            )
        self.definitions = {
            "logit_difference": "logit(first token of the right answer) - logit(wrong answer's) at the last real token (MIB)",
            "data_layout": "mib",
        }
        return out


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokens(tokenizer, text, add_special_tokens=False))


class MIBIOITask(MIBTask):
    name = "mib-ioi"
    default_dataset = "mib_ioi"
    counterfactual = "s2_io_flip_counterfactual"
    layouts = {"mib": ("prompt", "metadata", "s2_io_flip_counterfactual")}

    def answers(self, row):
        return " " + row["metadata"]["indirect_object"], " " + row["metadata"]["subject"]

    def keep(self, tokenizer, row):
        meta = row["metadata"]
        io, s, c = (_n_tokens(tokenizer, " " + meta[k]) for k in ("indirect_object", "subject", "random_c"))
        return io == s == c


class MIBChoiceTask(MIBTask):
    """MCQA and ARC: multiple choice, the counterfactual moves the answer's symbol."""

    counterfactual = "symbol_counterfactual"
    layouts = {"mib": ("prompt", "choices", "answerKey", "symbol_counterfactual")}

    def answers(self, row):
        cf = row[self.counterfactual]
        return str(row["choices"]["label"][row["answerKey"]]), str(cf["choices"]["label"][cf["answerKey"]])

    def keep(self, tokenizer, row):
        right, wrong = self.answers(row)
        return _n_tokens(tokenizer, right) == _n_tokens(tokenizer, wrong)


class MIBMCQATask(MIBChoiceTask):
    name = "mib-mcqa"
    default_dataset = "mib_copycolors_mcqa"
    dataset_config = "4_answer_choices"


class MIBArcEasyTask(MIBChoiceTask):
    name = "mib-arc-easy"
    default_dataset = "mib_arc_easy"


class MIBArcChallengeTask(MIBChoiceTask):
    name = "mib-arc-challenge"
    default_dataset = "mib_arc_challenge"


class MIBArithmeticTask(MIBTask):
    counterfactual = "random_counterfactual"
    layouts = {"mib": ("prompt", "label", "operator", "random_counterfactual")}
    operator = "+"

    def answers(self, row):
        return str(row["label"]), str(row[self.counterfactual]["label"])

    def keep(self, tokenizer, row):
        cf = row[self.counterfactual]
        return (
            row["operator"] == self.operator
            and cf is not None
            and cf.get("prompt") is not None
            and _n_tokens(tokenizer, str(row["label"])) == 1
            and _n_tokens(tokenizer, str(cf["label"])) == 1
        )


class MIBAdditionTask(MIBArithmeticTask):
    name = "mib-arithmetic-addition"
    default_dataset = "mib_arithmetic_addition"


class MIBSubtractionTask(MIBArithmeticTask):
    name = "mib-arithmetic-subtraction"
    default_dataset = "mib_arithmetic_subtraction"
    operator = "-"


MIB_TASKS = {
    t.name: t
    for t in (MIBIOITask, MIBMCQATask, MIBArcEasyTask, MIBArcChallengeTask, MIBAdditionTask, MIBSubtractionTask)
}
