"""User-supplied clean/corrupted prompt pairs ("custom" task).

File format: a stream of JSON objects, e.g. one per line (JSONL)::

    {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 4 = <predict>5</predict>", "split": "train"}

Objects may also be pretty-printed over several lines and simply concatenated
(the style of the original Edge Pruning README); both are accepted because we
read the file as a sequence of JSON values, not line by line. Blank lines are
ignored; nothing else (commas, brackets, comments) may appear between objects.

Rules, each violation raising :class:`CustomDatasetError` with path and line
(the line where the offending object starts, or where the JSON breaks):

* keys: ``clean`` and ``corrupted`` (strings, required), ``split`` (optional,
  ``"train"`` or ``"validation"``; ``null`` counts as absent); no other keys,
  so that typos such as ``"spilt"`` do not pass silently;
* each text holds exactly one ``<predict>...</predict>`` span, with a non-empty
  answer, something before it, and nothing but whitespace after it;
* an example without ``split`` serves both train and validation.

The prefix/answer strings are kept verbatim (``"1 + 2 = "`` and ``"3"``):
whitespace is not moved across the tag, since where a space belongs depends on
the tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

OPEN, CLOSE = "<predict>", "</predict>"
SPLITS = ("train", "validation")
REQUIRED_KEYS = ("clean", "corrupted")
ALLOWED_KEYS = frozenset((*REQUIRED_KEYS, "split"))


class CustomDatasetError(ValueError):
    """A malformed custom dataset; the message starts with ``path:line:``."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ":".join(str(x) for x in (self.path, line) if x is not None)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class CustomExample:
    """One clean/corrupted pair split at the ``<predict>`` tag."""

    clean_prefix: str
    clean_answer: str
    corrupted_prefix: str
    corrupted_answer: str
    split: str | None
    line: int

    @property
    def clean(self) -> str:
        return self.clean_prefix + self.clean_answer

    @property
    def corrupted(self) -> str:
        return self.corrupted_prefix + self.corrupted_answer


def split_predict(text: str, key: str, path: str | Path, line: int) -> tuple[str, str]:
    """``"1 + 2 = <predict>3</predict>"`` -> ``("1 + 2 = ", "3")``."""
    n_open, n_close = text.count(OPEN), text.count(CLOSE)
    if n_open != 1 or n_close != 1:
        raise CustomDatasetError(
            f"{key!r} must contain exactly one {OPEN}...{CLOSE} span "
            f"(found {n_open} {OPEN} and {n_close} {CLOSE})", path, line)
    start, end = text.index(OPEN), text.index(CLOSE)
    if end < start:
        raise CustomDatasetError(f"{key!r}: {CLOSE} comes before {OPEN}", path, line)
    prefix, answer, rest = text[:start], text[start + len(OPEN): end], text[end + len(CLOSE):]
    if not prefix.strip():
        raise CustomDatasetError(f"{key!r}: nothing before {OPEN}", path, line)
    if not answer:
        raise CustomDatasetError(f"{key!r}: empty {OPEN}{CLOSE} answer", path, line)
    if rest.strip():
        raise CustomDatasetError(
            f"{key!r}: text after {CLOSE} ({rest.strip()[:30]!r}); the answer must end the prompt",
            path, line)
    return prefix, answer


def _iter_objects(text: str, path: str | Path) -> Iterable[tuple[int, object]]:
    """Yield (start line, value) for each JSON value in a whitespace-separated stream."""
    decoder = json.JSONDecoder()
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise CustomDatasetError(f"invalid JSON: {err.msg}", path, err.lineno) from None
        yield line, value


def parse_example(obj: object, path: str | Path, line: int) -> CustomExample:
    """Validate one decoded JSON value."""
    if not isinstance(obj, dict):
        raise CustomDatasetError(f"expected a JSON object, got {type(obj).__name__}", path, line)
    unknown = sorted(set(obj) - ALLOWED_KEYS)
    if unknown:
        raise CustomDatasetError(
            f"unknown key(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}", path, line)
    for key in REQUIRED_KEYS:
        if key not in obj:
            raise CustomDatasetError(f"missing key {key!r}", path, line)
        if not isinstance(obj[key], str):
            raise CustomDatasetError(
                f"{key!r} must be a string, got {type(obj[key]).__name__}", path, line)
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        raise CustomDatasetError(f"unknown split {split!r}; use one of {list(SPLITS)}", path, line)
    clean_prefix, clean_answer = split_predict(obj["clean"], "clean", path, line)
    corr_prefix, corr_answer = split_predict(obj["corrupted"], "corrupted", path, line)
    return CustomExample(clean_prefix, clean_answer, corr_prefix, corr_answer, split, line)


def parse_custom_jsonl(path: str | Path) -> list[CustomExample]:
    """Read and validate a custom dataset file (JSONL or concatenated JSON objects)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CustomDatasetError(f"not UTF-8 text ({err.reason})", path) from None
    examples = [parse_example(obj, path, line) for line, obj in _iter_objects(text, path)]
    if not examples:
        raise CustomDatasetError("empty file: no examples", path, 1)
    return examples


def split_examples(
    examples: Sequence[CustomExample], require_nonempty: bool = True
) -> dict[str, list[CustomExample]]:
    """``{"train": [...], "validation": [...]}``; examples without a split go to both."""
    out: dict[str, list[CustomExample]] = {name: [] for name in SPLITS}
    for ex in examples:
        for name in SPLITS if ex.split is None else (ex.split,):
            out[name].append(ex)
    if require_nonempty:
        for name, items in out.items():
            if not items:
                raise CustomDatasetError(
                    f"no examples for split {name!r} (give some examples split={name!r} "
                    "or leave the split key out)")
    return out


def check_token_lengths(examples: Sequence[CustomExample], tokenizer, path: str | Path | None = None) -> None:
    """Clean and corrupted prefixes, and answers, must tokenize to equal lengths.

    Prefix and answer are tokenized separately, without special tokens.
    """
    def lengths(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    if not examples:
        return
    cp = lengths([e.clean_prefix for e in examples])
    kp = lengths([e.corrupted_prefix for e in examples])
    ca = lengths([e.clean_answer for e in examples])
    ka = lengths([e.corrupted_answer for e in examples])
    for ex, a, b, c, d in zip(examples, cp, kp, ca, ka):
        if a != b:
            raise CustomDatasetError(
                f"clean prefix {ex.clean_prefix!r} has {a} tokens but corrupted prefix "
                f"{ex.corrupted_prefix!r} has {b}", path, ex.line)
        if c != d:
            raise CustomDatasetError(
                f"clean answer {ex.clean_answer!r} has {c} tokens but corrupted answer "
                f"{ex.corrupted_answer!r} has {d}", path, ex.line)


def load_custom_dataset(path: str | Path, tokenizer=None) -> dict[str, list[CustomExample]]:
    """Parse, optionally check token lengths, and split."""
    examples = parse_custom_jsonl(path)
    if tokenizer is not None:
        check_token_lengths(examples, tokenizer, path)
    return split_examples(examples)
