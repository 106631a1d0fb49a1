"""The task registry: how each task's data becomes model inputs, its loss and metrics.

Every task turns its examples into `Encoded` records: clean and corrupted token ids
of equal length, the positions whose next-token distribution is scored, the right
token at each, and (for two-way choices) the wrong one. The pruning loop and the
evaluation loop are the same for every task; only `loss` and `metrics` differ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS_DIR = REPO_ROOT / "data" / "datasets"


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


def _pair(tokenizer, clean: str, corrupted: str, where: str) -> tuple[list[int], list[int]]:
    a = _tokens(tokenizer, clean, True)
    b = _tokens(tokenizer, corrupted, True)
    if len(a) != len(b):
        raise TaskDataError(
            f"{where}: clean and corrupted prompts tokenize to {len(a)} and {len(b)} tokens; they must be equal"
        )
    return a, b


class Task:
    """A task: encoding, the training loss (KL at scored positions) and metrics."""

    name: str = ""
    default_dataset: str = ""

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

        Logits are taken at the scored positions only: (B, P, V).
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


class ChoiceTask(Task):
    """One scored position and a right/wrong token pair: IOI, gendered pronoun, Boolean."""

    def prompt(self, row: dict) -> tuple[str, str]:
        return row["clean"], row["corrupted"]

    def answers(self, row: dict) -> tuple[str, str]:
        return row["target"], row["distractor"]

    def encode_rows(self, rows, tokenizer):
        out = []
        for i, row in enumerate(rows):
            where = f"{self.name} example {i}"
            clean, corrupted = self.prompt(row)
            ids, corr = _pair(tokenizer, clean, corrupted, where)
            target, distractor = self.answers(row)
            out.append(
                Encoded(
                    ids,
                    corr,
                    [len(ids) - 1],
                    [_single_token(tokenizer, target, "answer", where)],
                    _single_token(tokenizer, distractor, "wrong answer", where),
                )
            )
        return out

    def attribution_metric(self, logits, batch):
        """Logit difference, right answer minus wrong answer."""
        first = logits[:, 0].float()
        return (first.gather(1, batch["targets"][:, :1]) - first.gather(1, batch["distractor"][:, None])).squeeze(1)

    def metrics(self, circuit_logits, full_logits, batch):
        out = super().metrics(circuit_logits, full_logits, batch)
        out["logit_difference"] = self.attribution_metric(circuit_logits, batch)
        out["full_logit_difference"] = self.attribution_metric(full_logits, batch)
        out["accuracy"] = (out["logit_difference"] > 0).float()
        out["full_accuracy"] = (out["full_logit_difference"] > 0).float()
        return out


class IOITask(ChoiceTask):
    name = "ioi"
    default_dataset = "ioi"


class GenderedPronounTask(ChoiceTask):
    name = "gp"
    default_dataset = "gp"


class BooleanExpressionsTask(ChoiceTask):
    """BIG-Bench-Hard style Boolean expressions; `fewshot` picks the prompt format."""

    default_dataset = "boolean_expressions"

    def __init__(self, fewshot: bool) -> None:
        self.fewshot = fewshot
        self.name = "boolean_expressions_fs" if fewshot else "boolean_expressions_ip"

    def prompt(self, row):
        from .boolean_prompts import few_shot_prompt, instruction_prompt

        fmt = few_shot_prompt if self.fewshot else instruction_prompt
        return fmt(row["expression"]), fmt(row["corrupted_expression"])

    def answers(self, row):
        from .boolean_prompts import target

        wrong = "False" if row["answer"] == "True" else "True"
        return target(row["answer"]), target(wrong)


class GreaterThanTask(Task):
    """Greater-than (Hanna et al.): "...from the year 1732 to the year 17" -> YY > 32.

    With two-digit year tokens (GPT-2), one position is scored over the 100 tokens
    "00".."99". With a tokenizer that splits digits, the year is two next-digit
    predictions: the prompt is extended with the start year's tens digit x1, so the
    first scored position gives P(d1) and the second P(d2 | d1 = x1). Then
    P(YY > XX) = P(d1 > x1) + P(d1 = x1) P(d2 > x2 | x1) exactly, and the loss is the
    chain-rule KL restricted to those terms: KL(d1) + p_full(x1) KL(d2 | x1).
    """

    name = "gt"
    default_dataset = "gt"

    def year_tokens(self, tokenizer) -> tuple[str, list[int]]:
        two = [_tokens(tokenizer, f"{yy:02d}", False) for yy in range(100)]
        if all(len(t) == 1 for t in two):
            return "two_digit", [t[0] for t in two]
        digits = [_tokens(tokenizer, str(d), False) for d in range(10)]
        if not all(len(t) == 1 for t in digits):
            raise TaskDataError("greater-than needs single tokens for either 00..99 or 0..9")
        return "digit", [t[0] for t in digits]

    def encode_rows(self, rows, tokenizer):
        mode, tokens = self.year_tokens(tokenizer)
        out = []
        for i, row in enumerate(rows):
            where = f"gt example {i}"
            yy, corr_yy = int(row["start_yy"]), int(row["corr_start_yy"])
            clean = row["prefix"] + row["century"]
            corrupted = row["corr_prefix"] + row["century"]
            ids, corr = _pair(tokenizer, clean, corrupted, where)
            if mode == "two_digit":
                positions, targets = [len(ids) - 1], [tokens[yy]]
            else:
                ids = ids + [tokens[yy // 10]]
                corr = corr + [tokens[corr_yy // 10]]
                positions, targets = [len(ids) - 2, len(ids) - 1], [tokens[yy // 10], tokens[yy % 10]]
            out.append(Encoded(ids, corr, positions, targets, extra={"start_yy": yy, "year_tokens": tokens, "mode": mode}))
        return out

    def restricted(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Log-probabilities over the year tokens (full vocabulary softmax), (B, P, 10|100)."""
        return F.log_softmax(logits.float(), -1)[..., batch["year_tokens"][0]]

    def loss(self, circuit_logits, full_logits, batch):
        return self._kl(circuit_logits, full_logits, batch).mean()

    def _kl(self, circuit_logits, full_logits, batch):
        tokens = batch["year_tokens"][0]
        full = F.log_softmax(full_logits[..., tokens].float(), -1)
        circuit = F.log_softmax(circuit_logits[..., tokens].float(), -1)
        kl = (full.exp() * (full - circuit)).sum(-1)  # (B, P)
        if kl.shape[1] == 1:
            return kl[:, 0]
        x1 = (batch["start_yy"] // 10)[:, None]
        weight = full[:, 0].exp().gather(1, x1).squeeze(1)
        return kl[:, 0] + weight * kl[:, 1]

    def prob_greater(self, logits, batch) -> torch.Tensor:
        probs = self.restricted(logits, batch).exp()
        yy = batch["start_yy"]
        if probs.shape[1] == 1:
            above = torch.arange(100, device=yy.device)[None, :] > yy[:, None]
            return (probs[:, 0] * above).sum(-1), (probs[:, 0] * ~above).sum(-1)
        x1, x2 = (yy // 10)[:, None], (yy % 10)[:, None]
        d = torch.arange(10, device=yy.device)[None, :]
        p1, p2 = probs[:, 0], probs[:, 1]
        p_x1 = p1.gather(1, x1).squeeze(1)
        greater = (p1 * (d > x1)).sum(-1) + p_x1 * (p2 * (d > x2)).sum(-1)
        not_greater = (p1 * (d < x1)).sum(-1) + p_x1 * (p2 * (d <= x2)).sum(-1)
        return greater, not_greater

    def attribution_metric(self, logits, batch):
        """Probability difference P(YY > XX) - P(YY <= XX)."""
        greater, not_greater = self.prob_greater(logits, batch)
        return greater - not_greater

    def metrics(self, circuit_logits, full_logits, batch):
        from scipy.stats import kendalltau

        out = super().metrics(circuit_logits, full_logits, batch)
        out["kl"] = self._kl(circuit_logits, full_logits, batch)
        g, ng = self.prob_greater(circuit_logits, batch)
        fg, fng = self.prob_greater(full_logits, batch)
        out["prob_difference"] = g - ng
        out["full_prob_difference"] = fg - fng
        a = self.restricted(circuit_logits, batch)[:, 0].cpu().numpy()
        b = self.restricted(full_logits, batch)[:, 0].cpu().numpy()
        out["kendall_tau"] = torch.tensor([kendalltau(x, y).statistic for x, y in zip(a, b)])
        return out


class CustomTask(Task):
    """JSONL examples with the answer marked `<predict>...</predict>` (all answer tokens scored)."""

    name = "custom"
    default_dataset = "example_custom.jsonl"

    def encode_rows(self, rows, tokenizer):
        out = []
        for row in rows:
            where = f"line {row['line']}"
            prefix, corr_prefix = _pair(tokenizer, row["clean_prefix"], row["corrupted_prefix"], where)
            answer = _tokens(tokenizer, row["clean_answer"], False)
            corr_answer = _tokens(tokenizer, row["corrupted_answer"], False)
            if len(answer) != len(corr_answer):
                raise TaskDataError(f"{where}: clean and corrupted answers tokenize to different lengths")
            if not answer:
                raise TaskDataError(f"{where}: the <predict> span is empty")
            start = len(prefix) - 1
            out.append(
                Encoded(prefix + answer, corr_prefix + corr_answer, list(range(start, start + len(answer))), answer)
            )
        return out


TASKS: dict[str, Callable[[], Task]] = {
    "ioi": IOITask,
    "ioi-t1": IOITask,
    "gt": GreaterThanTask,
    "gp": GenderedPronounTask,
    "custom": CustomTask,
    "boolean_expressions_ip": lambda: BooleanExpressionsTask(fewshot=False),
    "boolean_expressions_fs": lambda: BooleanExpressionsTask(fewshot=True),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


def load_rows(task: Task, dataset_path: str | os.PathLike | None, split: str) -> list[dict]:
    """Rows of one split: an HF dataset saved to disk, or a custom JSONL file."""
    path = Path(dataset_path) if dataset_path else DATASETS_DIR / task.default_dataset
    if str(path).endswith(".jsonl"):
        from .custom_data import parse_custom_jsonl, split_examples

        if split not in ("train", "validation"):
            raise TaskDataError(f"custom JSONL datasets have splits train and validation, not {split!r}")
        examples = split_examples(parse_custom_jsonl(path))[split]
        return [dict(vars(e)) for e in examples]
    from datasets import load_from_disk

    if not path.exists():
        raise FileNotFoundError(f"dataset {path} does not exist (see data/scripts/prepare_*.py)")
    data = load_from_disk(str(path))
    if split not in data and (path / f"{split}.parquet").exists():
        from datasets import Dataset

        return list(Dataset.from_parquet(str(path / f"{split}.parquet")))  # large splits ship compressed
    if split not in data:
        raise TaskDataError(f"{path} has no split {split!r}; it has {', '.join(data.keys())}")
    return list(data[split])


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
