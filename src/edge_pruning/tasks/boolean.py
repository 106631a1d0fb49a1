"""Boolean expressions (BIG-Bench Hard style), few-shot or instruction prompts."""

from __future__ import annotations

import torch

from .. import boolean_prompts as bp
from ..errors import TaskDataError
from .choice import ChoiceTask
from .tokens import next_token, vocab_size

_TOKEN_CLASSES: dict[tuple, torch.Tensor] = {}


def stripped_token_classes(tokenizer) -> torch.Tensor:
    """(V,) ids such that two tokens share an id iff their decodings, stripped of
    whitespace, are equal: the original Boolean evaluation compares
    ``tokenizer.decode(argmax).strip()`` with the answer string."""
    n = vocab_size(tokenizer)
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
            next_token(tokenizer, row["clean"], row["target"], "answer", where),
            next_token(tokenizer, row["clean"], row["distractor"], "wrong answer", where),
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

    def _metrics(self, circuit_logits, full_logits, batch):
        out = super()._metrics(circuit_logits, full_logits, batch)
        if self._token_classes is None:  # not encoded by this instance: token ids only
            return out
        c = self._classes(circuit_logits[:, 0].argmax(-1))
        f = self._classes(full_logits[:, 0].argmax(-1))
        t = self._classes(batch.targets[:, 0])
        out["accuracy"] = (c == t).float()
        out["full_accuracy"] = (f == t).float()
        out["exact_match"] = (c == f).float()
        return out
