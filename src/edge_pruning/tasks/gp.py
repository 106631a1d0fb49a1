"""Gendered pronoun: " he" or " she" after a prompt naming one person."""

from __future__ import annotations

from ..errors import TaskDataError
from .choice import ChoiceTask


class GenderedPronounTask(ChoiceTask):
    name = "gp"
    default_dataset = "gp"
    layouts = {
        "original": ("prefix", "corr_prefix", "pronoun"),
        "ours": ("clean", "corrupted", "target", "distractor"),
    }

    def canonical(self, row, layout, where):
        if layout == "ours":
            return row
        pronoun = row["pronoun"].lower().strip()
        if pronoun not in ("he", "she"):
            raise TaskDataError(f"{where}: pronoun {row['pronoun']!r} is neither 'he' nor 'she'")
        return {
            "clean": row["prefix"],
            "corrupted": row["corr_prefix"],
            "target": " " + pronoun,
            "distractor": " he" if pronoun == "she" else " she",
        }
