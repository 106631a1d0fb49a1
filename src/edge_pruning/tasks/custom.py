"""Custom data: JSONL examples with the answer marked `<predict>...</predict>`."""

from __future__ import annotations

from ..custom_data import encode_custom
from ..errors import TaskDataError
from .base import Task, kl_divergence
from .batch import Encoded
from .tokens import pad_token_id


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
        out = []
        for row in rows:
            where = ":".join(str(x) for x in (row.get("path"), row.get("line")) if x is not None)
            where = where if row.get("path") else f"line {row.get('line')}"
            try:
                ids, corr, start, answer = encode_custom(
                    tokenizer, row["clean_prefix"], row["clean_answer"], row["corrupted_prefix"],
                    row["corrupted_answer"], self.corrupted, pad_token_id(tokenizer),
                )
            except ValueError as err:
                raise TaskDataError(f"{where}: {err}") from None
            out.append(Encoded(ids, corr, list(range(start, start + len(answer))), answer))
        self.definitions = {"corrupted": self.corrupted}
        return out

    def _loss(self, circuit_logits, full_logits, batch):
        """Each example's mean KL over its answer positions, averaged over examples."""
        kl = kl_divergence(full_logits, circuit_logits)
        valid = batch.position_valid.float()
        return ((kl * valid).sum(1) / valid.sum(1)).mean()
