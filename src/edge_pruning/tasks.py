"""The task registry: how each task's data becomes model inputs, its loss and metrics.

Every task turns its examples into `Encoded` records: clean and corrupted token ids
of equal length, the positions whose next-token distribution is scored, the right
token at each, and (for two-way choices) the wrong one. The pruning loop and the
evaluation loop are the same for every task; only `loss` and `metrics` differ.

Data layouts. A task reads its rows in the original Edge Pruning column layout
(``ioi_sentences``/``corr_ioi_sentences``; ``prefix``/``corr_prefix``/``digits``;
``prefix``/``corr_prefix``/``pronoun``; ``input``/``corr_input``) as well as in
this project's own (``clean``/``corrupted``/``target``/``distractor``, ...). The
layout is detected from the columns; `Task.layouts` lists them in order of
preference.

Metrics. The defaults are the original's definitions (its ``src/eval/*.py``):

* ``accuracy``: the circuit's argmax over the full vocabulary at the scored position
  is the target token (Boolean expressions: the argmax token, decoded and stripped,
  equals the answer string); ``exact_match``: the circuit's argmax is the full
  model's (Boolean: as decoded strings). ``binary_accuracy`` is ours: the right
  answer's logit beats the wrong one's.
* greater-than: ``prob_difference`` P(YY > d) - P(YY < d) and ``prob_difference_10``
  (the same within ten years of d), over the 100 two-digit year tokens,
  renormalised, with d the start year's two digits (the dataset's ``digits``);
  Kendall tau between the circuit's and the full model's year distributions; KL over
  the renormalised year distribution. ``prob_difference_leq`` (P(YY > d) -
  P(YY <= d)) is ours. Tokenizers that split digits use the digit chain rule instead
  (see `GreaterThanTask`); the metrics say which definition they used.
* KL is the per-example mean everywhere.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS_DIR = REPO_ROOT / "data" / "datasets"
HELPERS_DIR = REPO_ROOT / "data" / "helper_files"


class TaskDataError(ValueError):
    """An example that cannot be used as given (the message names it)."""


@dataclass
class Encoded:
    input_ids: list[int]
    corr_input_ids: list[int]
    positions: list[int]  # scored positions: the logits there predict `targets`
    targets: list[int]
    distractor: int = -1  # the wrong answer's token at positions[0], for two-way tasks
    extra: dict = field(default_factory=dict)


def kl_divergence(full_logits: torch.Tensor, circuit_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_full || p_circuit) per row, over the last dimension."""
    full = F.log_softmax(full_logits.float(), dim=-1)
    circuit = F.log_softmax(circuit_logits.float(), dim=-1)
    return (full.exp() * (full - circuit)).sum(-1)


def _tokens(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def _single_token(tokenizer, text: str, what: str, where: str) -> int:
    ids = _tokens(tokenizer, text, add_special_tokens=False)
    if len(ids) != 1:
        raise TaskDataError(f"{where}: {what} {text!r} is {len(ids)} tokens for this tokenizer, not 1")
    return ids[0]


def _first_token(tokenizer, text: str, what: str, where: str) -> int:
    """The first token of `text` (the original's ``tokenizer.encode(" " + name)[0]``)."""
    ids = _tokens(tokenizer, text, add_special_tokens=False)
    if not ids:
        raise TaskDataError(f"{where}: {what} {text!r} is empty for this tokenizer")
    return ids[0]


def _next_token(tokenizer, prompt: str, continuation: str, what: str, where: str) -> int:
    """The one token that `continuation` adds to `prompt` when both are tokenised together."""
    a = _tokens(tokenizer, prompt, True)
    b = _tokens(tokenizer, prompt + continuation, True)
    if b[: len(a)] != a or len(b) != len(a) + 1:
        raise TaskDataError(
            f"{where}: {what} {continuation!r} does not add exactly one token to the prompt for this tokenizer"
        )
    return b[-1]


def _pair(tokenizer, clean: str, corrupted: str, where: str) -> tuple[list[int], list[int]]:
    a = _tokens(tokenizer, clean, True)
    b = _tokens(tokenizer, corrupted, True)
    if len(a) != len(b):
        raise TaskDataError(
            f"{where}: clean and corrupted prompts tokenize to {len(a)} and {len(b)} tokens; they must be equal"
        )
    return a, b


def _pad_id(tokenizer) -> int:
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if candidate is not None:
            return candidate
    return 0


class Task:
    """A task: encoding, the training loss (KL at scored positions) and metrics."""

    name: str = ""
    default_dataset: str = ""
    # layout name -> the columns that identify it, in order of preference
    layouts: dict[str, tuple[str, ...]] = {}

    def __init__(self) -> None:
        # What the metrics mean, filled in by `encode_rows` (e.g. which greater-than
        # definition the tokenizer allows); for results files.
        self.definitions: dict[str, str] = {}

    def detect_layout(self, columns: Iterable[str], where: str) -> str:
        cols = set(columns)
        for layout, required in self.layouts.items():
            if set(required) <= cols:
                return layout
        expected = "; ".join(f"{k}: {', '.join(v)}" for k, v in self.layouts.items())
        raise TaskDataError(
            f"{where}: columns {sorted(cols)} match no {self.name} data layout (expected one of: {expected})"
        )

    def encode_rows(self, rows: list[dict], tokenizer) -> list[Encoded]:
        raise NotImplementedError

    def loss(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean KL(full || circuit) over the scored positions."""
        kl = kl_divergence(full_logits, circuit_logits)
        valid = batch["position_valid"].float()
        return (kl * valid).sum() / valid.sum()

    def attribution_metric(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The per-example quantity attribution methods differentiate (KL has zero
        gradient at the full model): here the mean log-probability of the targets."""
        logp = F.log_softmax(logits.float(), -1).gather(-1, batch["targets"].clamp(min=0)[..., None]).squeeze(-1)
        valid = batch["position_valid"].float()
        return (logp * valid).sum(1) / valid.sum(1)

    def metrics(self, circuit_logits: torch.Tensor, full_logits: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example metrics of the circuit, and of the full model as `full_*`.

        Logits are taken at the scored positions only: (B, P, V). ``kl`` is each
        example's mean over its positions; ``accuracy``: the argmax over the full
        vocabulary is the target at every scored position (teacher-forced);
        ``exact_match``: the circuit's argmax is the full model's at every position.
        """
        kl = kl_divergence(full_logits, circuit_logits)
        valid = batch["position_valid"]
        exact = ((circuit_logits.argmax(-1) == full_logits.argmax(-1)) | ~valid).all(1)
        correct = ((circuit_logits.argmax(-1) == batch["targets"]) | ~valid).all(1)
        full_correct = ((full_logits.argmax(-1) == batch["targets"]) | ~valid).all(1)
        return {
            "kl": (kl * valid).sum(1) / valid.sum(1),
            "exact_match": exact.float(),
            "accuracy": correct.float(),
            "full_accuracy": full_correct.float(),
        }


# ----------------------------------------------------------------------------- two-way choices


class ChoiceTask(Task):
    """One scored position and a right/wrong token pair: IOI, gendered pronoun, Boolean."""

    layouts = {"ours": ("clean", "corrupted", "target", "distractor")}

    def canonical(self, row: dict, layout: str, where: str) -> dict | None:
        """The row as {clean, corrupted, target, distractor} (None: the row is skipped)."""
        return row

    def answer_tokens(self, tokenizer, row: dict, layout: str, where: str) -> tuple[int, int]:
        return (
            _single_token(tokenizer, row["target"], "answer", where),
            _single_token(tokenizer, row["distractor"], "wrong answer", where),
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
            ids, corr = _pair(tokenizer, row["clean"], row["corrupted"], where)
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

    def attribution_metric(self, logits, batch):
        """Logit difference, right answer minus wrong answer."""
        first = logits[:, 0].float()
        return (first.gather(1, batch["targets"][:, :1]) - first.gather(1, batch["distractor"][:, None])).squeeze(1)

    def metrics(self, circuit_logits, full_logits, batch):
        out = super().metrics(circuit_logits, full_logits, batch)
        out["logit_difference"] = self.attribution_metric(circuit_logits, batch)
        out["full_logit_difference"] = self.attribution_metric(full_logits, batch)
        out["binary_accuracy"] = (out["logit_difference"] > 0).float()
        out["full_binary_accuracy"] = (out["full_logit_difference"] > 0).float()
        return out


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
            _first_token(tokenizer, row["target"], "answer", where),
            _first_token(tokenizer, row["distractor"], "wrong answer", where),
        )


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


def _vocab_size(tokenizer) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return tokenizer.vocab_size


_TOKEN_CLASSES: dict[tuple, torch.Tensor] = {}


def stripped_token_classes(tokenizer) -> torch.Tensor:
    """(V,) ids such that two tokens share an id iff their decodings, stripped of
    whitespace, are equal: the original Boolean evaluation compares
    ``tokenizer.decode(argmax).strip()`` with the answer string."""
    n = _vocab_size(tokenizer)
    key = (id(tokenizer), getattr(tokenizer, "name_or_path", None), n)
    if key not in _TOKEN_CLASSES:
        ids = [[i] for i in range(n)]
        texts = tokenizer.batch_decode(ids) if hasattr(tokenizer, "batch_decode") else [tokenizer.decode(i) for i in ids]
        index: dict[str, int] = {}
        _TOKEN_CLASSES[key] = torch.tensor([index.setdefault(t.strip(), len(index)) for t in texts])
    return _TOKEN_CLASSES[key]


class BooleanExpressionsTask(ChoiceTask):
    """Boolean expressions (BIG-Bench Hard style); `fewshot` picks the prompt format.

    ``prompt_style="original"`` (default) uses the original's formats: few-shot is
    its three fixed solved expressions, one per line, then ``"EXPR is"`` (answer
    " True"/" False"); instruction is its Llama-2 chat prompt ending in ``[/INST] '``
    (answer "True"/"False"). ``prompt_style="qa"`` is ours (`boolean_prompts`).
    """

    default_dataset = "boolean_expressions"
    layouts = {
        "original": ("input", "corr_input"),
        "ours": ("expression", "answer", "corrupted_expression"),
    }

    def __init__(self, fewshot: bool, prompt_style: str = "original") -> None:
        super().__init__()
        if prompt_style not in ("original", "qa"):
            raise ValueError(f"prompt_style must be 'original' or 'qa', not {prompt_style!r}")
        self.fewshot = fewshot
        self.prompt_style = prompt_style
        self.name = "boolean_expressions_fs" if fewshot else "boolean_expressions_ip"
        self._token_classes: torch.Tensor | None = None

    def canonical(self, row, layout, where):
        from . import boolean_prompts as bp

        if layout == "original":
            answer = str(row["target"]).strip() if "target" in row else str(bp.evaluate(bp.strip_is(row["input"])))
            row = {
                "expression": bp.strip_is(row["input"]),
                "answer": answer,
                "corrupted_expression": bp.strip_is(row["corr_input"]),
            }
        if row["answer"] not in ("True", "False"):
            raise TaskDataError(f"{where}: answer {row['answer']!r} is neither 'True' nor 'False'")
        wrong = "False" if row["answer"] == "True" else "True"
        prompt = bp.prompt_for(self.prompt_style, self.fewshot)
        return {
            "clean": prompt(row["expression"]),
            "corrupted": prompt(row["corrupted_expression"]),
            "target": bp.continuation(self.prompt_style, self.fewshot, row["answer"]),
            "distractor": bp.continuation(self.prompt_style, self.fewshot, wrong),
        }

    def answer_tokens(self, tokenizer, row, layout, where):
        return (
            _next_token(tokenizer, row["clean"], row["target"], "answer", where),
            _next_token(tokenizer, row["clean"], row["distractor"], "wrong answer", where),
        )

    def encode_rows(self, rows, tokenizer):
        out = super().encode_rows(rows, tokenizer)
        self._token_classes = stripped_token_classes(tokenizer)
        self.definitions.update(
            accuracy="decode(argmax over the full vocabulary).strip() == answer (original)",
            exact_match="decoded, stripped argmax of circuit == that of the full model (original)",
            prompt_style=self.prompt_style,
        )
        return out

    def _classes(self, ids: torch.Tensor) -> torch.Tensor:
        cls = self._token_classes.to(ids.device)
        inside = ids < len(cls)
        return torch.where(inside, cls[ids.clamp(max=len(cls) - 1)], -1 - ids)

    def metrics(self, circuit_logits, full_logits, batch):
        out = super().metrics(circuit_logits, full_logits, batch)
        if self._token_classes is None:  # not encoded by this instance: token ids only
            return out
        c = self._classes(circuit_logits[:, 0].argmax(-1))
        f = self._classes(full_logits[:, 0].argmax(-1))
        t = self._classes(batch["targets"][:, 0])
        out["accuracy"] = (c == t).float()
        out["full_accuracy"] = (f == t).float()
        out["exact_match"] = (c == f).float()
        return out


# ----------------------------------------------------------------------------- greater-than

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
        two = [_tokens(tokenizer, f"{yy:02d}", False) for yy in range(100)]
        if all(len(t) == 1 for t in two):
            return "two_digit", [t[0] for t in two]
        digits = [_tokens(tokenizer, str(d), False) for d in range(10)]
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
        mode, tokens = self.year_tokens(tokenizer)
        out = []
        layout = self.detect_layout(rows[0].keys(), "gt rows") if rows else "ours"
        for i, row in enumerate(rows):
            where = f"gt example {i}"
            clean, corrupted, yy, corr_yy = self.canonical(row, layout, where)
            if not (0 <= yy <= 99 and 0 <= corr_yy <= 99):
                raise TaskDataError(f"{where}: start years' two digits must be 0..99, not {yy} / {corr_yy}")
            ids, corr = _pair(tokenizer, clean, corrupted, where)
            if mode == "two_digit":
                positions, targets = [len(ids) - 1], [tokens[yy]]
            else:
                ids = ids + [tokens[yy // 10]]
                corr = corr + [tokens[corr_yy // 10]]
                positions, targets = [len(ids) - 2, len(ids) - 1], [tokens[yy // 10], tokens[yy % 10]]
            out.append(Encoded(ids, corr, positions, targets, extra={"start_yy": yy, "year_tokens": tokens, "mode": mode}))
        self.definitions = {
            "gt_definition": "two_digit_tokens" if mode == "two_digit" else "digit_chain_rule",
            "prob_difference": "P(YY > d) - P(YY < d), renormalised over the year tokens (original)",
            "prob_difference_leq": "P(YY > d) - P(YY <= d) (ours)",
            "data_layout": layout,
        }
        return out

    def _renormalised(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Log-probabilities over the year tokens only, (B, P, 10|100)."""
        return F.log_softmax(logits[..., batch["year_tokens"][0]].float(), -1)

    def loss(self, circuit_logits, full_logits, batch):
        return self._kl(circuit_logits, full_logits, batch).mean()

    def _kl(self, circuit_logits, full_logits, batch):
        full = self._renormalised(full_logits, batch)
        circuit = self._renormalised(circuit_logits, batch)
        kl = (full.exp() * (full - circuit)).sum(-1)  # (B, P)
        if kl.shape[1] == 1:
            return kl[:, 0]
        x1 = (batch["start_yy"] // 10)[:, None]
        weight = full[:, 0].exp().gather(1, x1).squeeze(1)
        return kl[:, 0] + weight * kl[:, 1]

    def year_probabilities(self, logits, batch) -> dict[str, torch.Tensor]:
        """P(YY > d), P(YY < d), P(YY = d) and (two-digit tokens) the ±10 windows."""
        probs = self._renormalised(logits, batch).exp()
        d = batch["start_yy"][:, None]
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

    def attribution_metric(self, logits, batch):
        """Probability difference P(YY > d) - P(YY < d) (the reported one)."""
        p = self.year_probabilities(logits, batch)
        return p["greater"] - p["less"]

    def metrics(self, circuit_logits, full_logits, batch):
        from scipy.stats import kendalltau

        kl = self._kl(circuit_logits, full_logits, batch)
        valid = batch["position_valid"]
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


# ----------------------------------------------------------------------------- custom


class CustomTask(Task):
    """JSONL examples with the answer marked `<predict>...</predict>`.

    As the original (src/prune/fpt2_custom.py): the clean text is tokenised as a
    whole (prefix and answer together, so GPT-2 keeps " 3" one token); the answer's
    tokens are those after the prefix's own tokens (the prefix without trailing
    whitespace), every one scored (teacher-forced); the corrupted input is the
    corrupted text with its <predict> span removed, padded to the clean length.
    ``corrupted="keep_answer"`` is ours: the corrupted text keeps its answer, and both
    texts must tokenise to equal lengths. Either way the clean and corrupted prefixes
    must tokenise to equal lengths, so that the scored positions line up. The loss is
    the per-example mean over the answer's positions, averaged over examples.
    """

    name = "custom"
    default_dataset = "example_custom.jsonl"
    layouts = {"ours": ("clean_prefix", "clean_answer", "corrupted_prefix", "corrupted_answer")}

    def __init__(self, corrupted: str = "original") -> None:
        super().__init__()
        if corrupted not in ("original", "keep_answer"):
            raise ValueError(f"corrupted must be 'original' or 'keep_answer', not {corrupted!r}")
        self.corrupted = corrupted

    def encode_rows(self, rows, tokenizer):
        from .custom_data import encode_custom

        out = []
        for row in rows:
            where = ":".join(str(x) for x in (row.get("path"), row.get("line")) if x is not None)
            where = where if row.get("path") else f"line {row.get('line')}"
            try:
                ids, corr, start, answer = encode_custom(
                    tokenizer, row["clean_prefix"], row["clean_answer"], row["corrupted_prefix"],
                    row["corrupted_answer"], self.corrupted, _pad_id(tokenizer),
                )
            except ValueError as err:
                raise TaskDataError(f"{where}: {err}") from None
            out.append(Encoded(ids, corr, list(range(start, start + len(answer))), answer))
        self.definitions = {"corrupted": self.corrupted}
        return out

    def loss(self, circuit_logits, full_logits, batch):
        """Each example's mean KL over its answer positions, averaged over examples."""
        kl = kl_divergence(full_logits, circuit_logits)
        valid = batch["position_valid"].float()
        return ((kl * valid).sum(1) / valid.sum(1)).mean()


TASKS: dict[str, Callable[..., Task]] = {
    "ioi": IOITask,
    "ioi-t1": IOITask,
    "gt": GreaterThanTask,
    "gp": GenderedPronounTask,
    "custom": CustomTask,
    "boolean_expressions_ip": lambda **kw: BooleanExpressionsTask(fewshot=False, **kw),
    "boolean_expressions_fs": lambda **kw: BooleanExpressionsTask(fewshot=True, **kw),
}


def get_task(name: str, **options) -> Task:
    """A task by name; `options` go to its constructor (e.g. ``prompt_style="qa"``)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)


# Split names that mean the same thing (the original's Boolean data calls validation "val").
SPLIT_ALIASES = {"validation": ("val",), "val": ("validation",)}


def _generate_hint(task: Task, split: str) -> str:
    script = {"ioi": "prepare_ioi.py", "gt": "prepare_gt.py", "gp": "prepare_gp.py"}.get(task.name)
    if split.startswith("train_") and script:
        n = split[len("train_"):].replace("k", "000")
        return f"; generate it with data/scripts/{script} --n_{split} {n}" if n.isdigit() else ""
    return ""


def load_rows(task: Task, dataset_path: str | os.PathLike | None, split: str) -> list[dict]:
    """Rows of one split: an HF dataset saved to disk (with large splits as
    ``<split>.parquet`` beside it), or a custom JSONL file. The column layout must be
    one the task knows."""
    path = Path(dataset_path) if dataset_path else DATASETS_DIR / task.default_dataset
    if str(path).endswith(".jsonl"):
        from .custom_data import parse_custom_jsonl, split_examples

        if split not in ("train", "validation"):
            raise TaskDataError(f"custom JSONL datasets have splits train and validation, not {split!r}")
        examples = split_examples(parse_custom_jsonl(path))[split]
        return [dict(vars(e), path=str(path)) for e in examples]
    from datasets import Dataset, load_from_disk

    if not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist (see data/scripts/prepare_*.py)")
    data = load_from_disk(str(path))
    names = [split, *SPLIT_ALIASES.get(split, ())]
    found = next((n for n in names if n in data), None)
    if found is not None:
        ds = data[found]
        where = f"{path} split {found!r}"
    else:
        parquet = next((path / f"{n}.parquet" for n in names if (path / f"{n}.parquet").exists()), None)
        if parquet is None:
            raise TaskDataError(
                f"{path} has no split {split!r}; it has {', '.join(data.keys())}{_generate_hint(task, split)}"
            )
        ds = Dataset.from_parquet(str(parquet))  # large splits ship (or are generated) compressed
        where = str(parquet)
    if task.layouts:
        task.detect_layout(ds.column_names, where)
    return list(ds)


def collate(examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; `positions` padded with -1 where an example scores fewer."""
    S = max(len(e.input_ids) for e in examples)
    P = max(len(e.positions) for e in examples)
    B = len(examples)
    batch = {
        "input_ids": torch.full((B, S), pad_id, dtype=torch.long),
        "corr_input_ids": torch.full((B, S), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((B, S), dtype=torch.long),
        "positions": torch.full((B, P), -1, dtype=torch.long),
        "targets": torch.full((B, P), -1, dtype=torch.long),
        "distractor": torch.tensor([e.distractor for e in examples], dtype=torch.long),
    }
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        batch["input_ids"][i, :n] = torch.tensor(e.input_ids)
        batch["corr_input_ids"][i, :n] = torch.tensor(e.corr_input_ids)
        batch["attention_mask"][i, :n] = 1
        batch["positions"][i, : len(e.positions)] = torch.tensor(e.positions)
        batch["targets"][i, : len(e.targets)] = torch.tensor(e.targets)
    batch["position_valid"] = batch["positions"] >= 0
    if examples and "start_yy" in examples[0].extra:
        batch["start_yy"] = torch.tensor([e.extra["start_yy"] for e in examples])
        batch["year_tokens"] = torch.tensor([e.extra["year_tokens"] for e in examples])
    return batch


# The Tracr tasks register themselves into TASKS (imported last: they build on this module).
from . import tracr_tasks  # noqa: E402,F401
