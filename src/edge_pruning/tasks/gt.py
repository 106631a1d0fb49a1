"""Greater-than (Hanna et al.): the probability of a later end year, for two-digit
year tokens (the original's definition) and for digit tokenizers (the chain rule)."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ..errors import TaskDataError
from .base import Task
from .batch import Batch, Encoded
from .tokens import token_pair, tokens

_YEAR = re.compile(r"(\d{2})(\d{2})(?!.*\d{4})", re.S)


def start_yy(text: str, where: str) -> int:
    """The last two digits of the last four-digit year in `text`."""
    m = _YEAR.search(text)
    if m is None:
        raise TaskDataError(f"{where}: no four-digit start year in {text!r}")
    return int(m.group(2))


class GreaterThanTask(Task):
    """Greater-than (Hanna et al.): "The war lasted from 1732 to 17" -> YY > 32.

    With two-digit year tokens (GPT-2), one position is scored over the 100 tokens
    "00".."99" (the original's definition: probabilities renormalised over them).
    With a tokenizer that splits digits, the year is two next-digit predictions: the
    prompt is extended with the start year's tens digit x1, so the first scored
    position gives P(d1) and the second P(d2 | d1 = x1), each renormalised over the
    ten digits. Then P(YY > d) = P(d1 > x1) + P(d1 = x1) P(d2 > x2 | x1) exactly, and
    the loss is the chain-rule KL restricted to those terms: KL(d1) + p_full(x1)
    KL(d2 | x1). ``prob_difference_10`` needs P(d2 | d1) for the neighbouring tens
    digits too, which one pass does not give, so that definition reports none; and
    Kendall tau is taken over the first digit. The metrics carry a key
    ``gt_definition_two_digit_tokens`` or ``gt_definition_digit_chain_rule`` (1.0).
    """

    name = "gt"
    default_dataset = "gt"
    layouts = {
        "original": ("prefix", "corr_prefix", "digits"),
        "ours": ("prefix", "century", "start_yy", "corr_prefix", "corr_start_yy"),
    }

    def year_tokens(self, tokenizer) -> tuple[str, list[int]]:
        two = [tokens(tokenizer, f"{yy:02d}", False) for yy in range(100)]
        if all(len(t) == 1 for t in two):
            return "two_digit", [t[0] for t in two]
        digits = [tokens(tokenizer, str(d), False) for d in range(10)]
        if not all(len(t) == 1 for t in digits):
            raise TaskDataError("greater-than needs single tokens for either 00..99 or 0..9")
        return "digit", [t[0] for t in digits]

    def canonical(self, row: dict, layout: str, where: str) -> tuple[str, str, int, int]:
        """(clean prompt, corrupted prompt, start YY, corrupted start YY)."""
        if layout == "original":
            corr_yy = row.get("corr_digits")
            corr_yy = start_yy(row["corr_prefix"], where + " (corrupted)") if corr_yy is None else int(corr_yy)
            return row["prefix"], row["corr_prefix"], int(row["digits"]), corr_yy
        return (row["prefix"] + row["century"], row["corr_prefix"] + row["century"],
                int(row["start_yy"]), int(row["corr_start_yy"]))

    def encode_rows(self, rows, tokenizer):
        mode, year_ids = self.year_tokens(tokenizer)
        out = []
        layout = self.detect_layout(rows[0].keys(), "gt rows") if rows else "ours"
        for i, row in enumerate(rows):
            where = f"gt example {i}"
            clean, corrupted, yy, corr_yy = self.canonical(row, layout, where)
            if not (0 <= yy <= 99 and 0 <= corr_yy <= 99):
                raise TaskDataError(f"{where}: start years' two digits must be 0..99, not {yy} / {corr_yy}")
            ids, corr = token_pair(tokenizer, clean, corrupted, where)
            if mode == "two_digit":
                positions, targets = [len(ids) - 1], [year_ids[yy]]
            else:
                ids = ids + [year_ids[yy // 10]]
                corr = corr + [year_ids[corr_yy // 10]]
                positions, targets = [len(ids) - 2, len(ids) - 1], [year_ids[yy // 10], year_ids[yy % 10]]
            out.append(Encoded(ids, corr, positions, targets, extra={"start_yy": yy, "year_tokens": year_ids, "mode": mode}))
        self.definitions = {
            "gt_definition": "two_digit_tokens" if mode == "two_digit" else "digit_chain_rule",
            "prob_difference": "P(YY > d) - P(YY < d), renormalised over the year tokens (original)",
            "prob_difference_leq": "P(YY > d) - P(YY <= d) (ours)",
            "data_layout": layout,
        }
        return out

    def _renormalised(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Log-probabilities over the year tokens only, (B, P, 10|100)."""
        return F.log_softmax(logits[..., batch.year_tokens[0]].float(), -1)

    def _loss(self, circuit_logits, full_logits, batch):
        return self._kl(circuit_logits, full_logits, batch).mean()

    def _kl(self, circuit_logits, full_logits, batch):
        full = self._renormalised(full_logits, batch)
        circuit = self._renormalised(circuit_logits, batch)
        kl = (full.exp() * (full - circuit)).sum(-1)  # (B, P)
        if kl.shape[1] == 1:
            return kl[:, 0]
        x1 = (batch.start_yy // 10)[:, None]
        weight = full[:, 0].exp().gather(1, x1).squeeze(1)
        return kl[:, 0] + weight * kl[:, 1]

    def year_probabilities(self, logits, batch) -> dict[str, torch.Tensor]:
        """P(YY > d), P(YY < d), P(YY = d) and (two-digit tokens) the ±10 windows."""
        probs = self._renormalised(logits, batch).exp()
        d = batch.start_yy[:, None]
        if probs.shape[1] == 1:
            p = probs[:, 0]
            yy = torch.arange(100, device=d.device)[None, :]
            return {
                "greater": (p * (yy > d)).sum(-1),
                "less": (p * (yy < d)).sum(-1),
                "equal": p.gather(1, d).squeeze(1),
                "greater_10": (p * ((yy > d) & (yy <= d + 10))).sum(-1),
                "less_10": (p * ((yy < d) & (yy >= d - 10))).sum(-1),
            }
        x1, x2 = d // 10, d % 10
        digit = torch.arange(10, device=d.device)[None, :]
        p1, p2 = probs[:, 0], probs[:, 1]
        p_x1 = p1.gather(1, x1).squeeze(1)
        return {
            "greater": (p1 * (digit > x1)).sum(-1) + p_x1 * (p2 * (digit > x2)).sum(-1),
            "less": (p1 * (digit < x1)).sum(-1) + p_x1 * (p2 * (digit < x2)).sum(-1),
            "equal": p_x1 * p2.gather(1, x2).squeeze(1),
        }

    def _attribution_metric(self, logits, batch):
        """Probability difference P(YY > d) - P(YY < d) (the reported one)."""
        p = self.year_probabilities(logits, batch)
        return p["greater"] - p["less"]

    def _metrics(self, circuit_logits, full_logits, batch):
        from scipy.stats import kendalltau

        kl = self._kl(circuit_logits, full_logits, batch)
        valid = batch.position_valid
        exact = ((circuit_logits.argmax(-1) == full_logits.argmax(-1)) | ~valid).all(1)
        out = {"kl": kl, "exact_match": exact.float()}
        for prefix, logits in (("", circuit_logits), ("full_", full_logits)):
            p = self.year_probabilities(logits, batch)
            out[prefix + "prob_difference"] = p["greater"] - p["less"]
            out[prefix + "prob_difference_leq"] = p["greater"] - p["less"] - p["equal"]
            if "greater_10" in p:
                out[prefix + "prob_difference_10"] = p["greater_10"] - p["less_10"]
        a = self._renormalised(circuit_logits, batch)[:, 0].exp().cpu().numpy()
        b = self._renormalised(full_logits, batch)[:, 0].exp().cpu().numpy()
        out["kendall_tau"] = torch.tensor([kendalltau(x, y).statistic for x, y in zip(a, b)], dtype=torch.float)
        two_digit = circuit_logits.shape[1] == 1
        key = "gt_definition_two_digit_tokens" if two_digit else "gt_definition_digit_chain_rule"
        out[key] = torch.ones_like(kl)
        return out
