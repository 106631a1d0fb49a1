"""Tasks with one scored position and a right/wrong answer pair."""

from __future__ import annotations

import warnings

from .base import Task
from .batch import Encoded
from .tokens import single_token, token_pair


class ChoiceTask(Task):
    """One scored position and a right/wrong token pair: IOI, gendered pronoun, Boolean."""

    layouts = {"ours": ("clean", "corrupted", "target", "distractor")}

    def canonical(self, row: dict, layout: str, where: str) -> dict | None:
        """The row as {clean, corrupted, target, distractor} (None: the row is skipped)."""
        return row

    def answer_tokens(self, tokenizer, row: dict, layout: str, where: str) -> tuple[int, int]:
        return (
            single_token(tokenizer, row["target"], "answer", where),
            single_token(tokenizer, row["distractor"], "wrong answer", where),
        )

    def encode_rows(self, rows, tokenizer):
        out = []
        if not rows:
            return out
        layout = self.detect_layout(rows[0].keys(), f"{self.name} rows")
        skipped: list[int] = []
        for i, raw in enumerate(rows):
            where = f"{self.name} example {i}"
            row = self.canonical(raw, layout, where)
            if row is None:
                skipped.append(i)
                continue
            ids, corr = token_pair(tokenizer, row["clean"], row["corrupted"], where)
            target, distractor = self.answer_tokens(tokenizer, row, layout, where)
            out.append(Encoded(ids, corr, [len(ids) - 1], [target], distractor))
        if skipped:
            warnings.warn(
                f"{self.name}: skipped {len(skipped)} of {len(rows)} examples that fit no template "
                f"(as the original's evaluation does); first: example {skipped[0]}",
                stacklevel=2,
            )
        self.definitions = {
            "accuracy": "argmax over the full vocabulary == target token (original)",
            "binary_accuracy": "logit(target) > logit(distractor) (ours)",
            "data_layout": layout,
        }
        return out

    def _attribution_metric(self, logits, batch):
        """Logit difference, right answer minus wrong answer."""
        first = logits[:, 0].float()
        return (first.gather(1, batch.targets[:, :1]) - first.gather(1, batch.distractor[:, None])).squeeze(1)

    def _metrics(self, circuit_logits, full_logits, batch):
        out = super()._metrics(circuit_logits, full_logits, batch)
        out["logit_difference"] = self._attribution_metric(circuit_logits, batch)
        out["full_logit_difference"] = self._attribution_metric(full_logits, batch)
        out["binary_accuracy"] = (out["logit_difference"] > 0).float()
        out["full_binary_accuracy"] = (out["full_logit_difference"] > 0).float()
        return out
