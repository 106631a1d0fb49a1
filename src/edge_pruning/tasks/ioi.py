"""Indirect object identification (Wang et al.), in the original's and our layouts."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..paths import HELPERS_DIR
from .choice import ChoiceTask
from .tokens import first_token

# IOI templates (Wang et al.; the original's 15 BABA + 15 ABBA), from the helper file the
# generator uses too. {A} is the indirect object (the answer), {B} the subject.
IOI_SLOTS = ("{A}", "{B}", "{PLACE}", "{OBJECT}")


@lru_cache(maxsize=None)
def ioi_templates(path: str | None = None) -> dict[str, tuple[str, ...]]:
    data = json.loads(Path(path or HELPERS_DIR / "ioi_templates.json").read_text())
    return {"baba": tuple(data["baba"]), "abba": tuple(data["abba"])}


def fit_ioi_template(sentence: str, template: str) -> dict[str, str] | None:
    """Slot fillers that turn `template` into `sentence`, word by word, or None.

    The original's rule (src/eval/ioi.py): equal words match; a trailing ',' or '.'
    common to both is set aside; any other difference must be a slot, filled
    consistently. Words are compared pairwise up to the shorter of the two.
    """
    slots: dict[str, str] = {}
    for word, pattern in zip(sentence.strip().split(), template.strip().split()):
        if word == pattern:
            continue
        if word[-1] == pattern[-1] and word[-1] in ",.":
            word, pattern = word[:-1], pattern[:-1]
        if pattern not in IOI_SLOTS:
            return None
        key = pattern[1:-1].lower()
        if slots.setdefault(key, word) != word:
            return None
    return slots


def find_ioi_template(sentence: str) -> dict | None:
    """The first template (BABA, then ABBA) that fits, with its slots, order and index."""
    for order, templates in ioi_templates().items():
        for index, template in enumerate(templates):
            slots = fit_ioi_template(sentence, template)
            if slots is not None and "a" in slots and "b" in slots:
                return {**slots, "order": order, "template_index": index}
    return None


class IOITask(ChoiceTask):
    """IOI. The original layout holds whole sentences (the answer is the last word);
    the wrong answer is the other name, found by fitting the sentence to a template,
    and sentences that fit none are skipped, as the original's evaluation does."""

    name = "ioi"
    default_dataset = "ioi"
    layouts = {
        "original": ("ioi_sentences", "corr_ioi_sentences"),
        "original_text": ("text", "corr_text"),
        "ours": ("clean", "corrupted", "target", "distractor"),
    }

    def canonical(self, row, layout, where):
        if layout == "ours":
            return row
        key = "ioi_sentences" if layout == "original" else "text"
        sentence, corr_sentence = row[key], row["corr_" + key]
        fit = find_ioi_template(sentence)
        if fit is None:
            return None
        target = sentence.strip().split()[-1]
        distractor = fit["b"] if fit["a"] == target else fit["a"]
        return {
            "clean": sentence[: sentence.rfind(" ")],
            "corrupted": corr_sentence[: corr_sentence.rfind(" ")],
            "target": " " + target,
            "distractor": " " + distractor,
        }

    def answer_tokens(self, tokenizer, row, layout, where):
        if layout == "ours":
            return super().answer_tokens(tokenizer, row, layout, where)
        # the original scores the first token of " Name"
        return (
            first_token(tokenizer, row["target"], "answer", where),
            first_token(tokenizer, row["distractor"], "wrong answer", where),
        )
