"""User-supplied clean/corrupted prompt pairs ("custom" task).

File format: a stream of JSON objects, e.g. one per line (JSONL)::

    {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 4 = <predict>5</predict>", "split": "train"}

Objects may also be pretty-printed over several lines and simply concatenated
(the style of the original Edge Pruning README); both are accepted because we
read the file as a sequence of JSON values, not line by line. Blank lines are
ignored; nothing else (commas, brackets, comments) may appear between objects.

Rules, each violation raising :class:`CustomDatasetError` with path and line
(the line where the offending object starts, also when its JSON breaks on a
later line; the message then says where):

* keys: ``clean`` and ``corrupted`` (strings, required), ``split`` (optional,
  ``"train"`` or ``"validation"``; ``null`` counts as absent); no other keys,
  so that typos such as ``"spilt"`` do not pass silently;
* each text holds exactly one ``<predict>...</predict>`` span, with a non-empty
  answer, something before it, and nothing but whitespace after it;
* an example without ``split`` serves both train and validation.

The prefix/answer strings are kept verbatim (``"1 + 2 = "`` and ``"3"``):
whitespace is not moved across the tag, since where a space belongs depends on
the tokenizer.

Tokenisation (:func:`encode_custom`), as the original (src/prune/fpt2_custom.py):
the clean text is tokenised whole, prefix and answer together, so a tokenizer
that glues the space to the answer (GPT-2's ``" 3"``) keeps one token; the
answer's tokens are those after the tokens of the prefix without its trailing
whitespace. The corrupted input is the corrupted text with the <predict> span
removed (the original's), padded to the clean length; ``corrupted="keep_answer"``
(ours) keeps the corrupted answer instead. The clean and corrupted prefixes must
tokenise to equal lengths so that the scored positions line up.
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
            # Report the line where the broken value starts: that is where a reader
            # finds the object (a pretty-printed one spans several lines).
            at = "" if err.lineno == line else f" (on line {err.lineno}, column {err.colno})"
            raise CustomDatasetError(f"invalid JSON in the value starting here: {err.msg}{at}", path, line) from None
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


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def encode_custom(
    tokenizer,
    clean_prefix: str,
    clean_answer: str,
    corrupted_prefix: str,
    corrupted_answer: str,
    corrupted: str = "original",
    pad_id: int = 0,
) -> tuple[list[int], list[int], int, list[int]]:
    """(clean ids, corrupted ids, first scored position, answer ids); ValueError if unusable.

    The answer's tokens are predicted at positions first .. first + len(answer) - 1.
    """
    joint = _ids(tokenizer, clean_prefix + clean_answer)
    head = _ids(tokenizer, clean_prefix.rstrip())
    if joint[: len(head)] != head:
        raise ValueError(
            f"the answer {clean_answer!r} and the end of the prefix {clean_prefix!r} tokenise into "
            "one token; move the <predict> tag to a token boundary")
    if len(joint) == len(head):
        raise ValueError(f"the answer {clean_answer!r} adds no token to the prefix")
    corr_head = _ids(tokenizer, corrupted_prefix.rstrip())
    if len(corr_head) != len(head):
        raise ValueError(
            f"clean prefix {clean_prefix!r} has {len(head)} tokens but corrupted prefix "
            f"{corrupted_prefix!r} has {len(corr_head)}")
    if corrupted == "original":
        corr = _ids(tokenizer, corrupted_prefix)[: len(joint)]
        corr = corr + [pad_id] * (len(joint) - len(corr))
    elif corrupted == "keep_answer":
        corr = _ids(tokenizer, corrupted_prefix + corrupted_answer)
        if len(corr) != len(joint):
            raise ValueError(
                f"clean text {clean_prefix + clean_answer!r} has {len(joint)} tokens but corrupted text "
                f"{corrupted_prefix + corrupted_answer!r} has {len(corr)}")
    else:
        raise ValueError(f"corrupted must be 'original' or 'keep_answer', not {corrupted!r}")
    return joint, corr, len(head) - 1, joint[len(head):]


def check_token_lengths(
    examples: Sequence[CustomExample], tokenizer, path: str | Path | None = None, corrupted: str = "original"
) -> None:
    """Every example must encode (:func:`encode_custom`); errors name its line."""
    for ex in examples:
        try:
            encode_custom(tokenizer, ex.clean_prefix, ex.clean_answer, ex.corrupted_prefix,
                          ex.corrupted_answer, corrupted)
        except ValueError as err:
            raise CustomDatasetError(str(err), path, ex.line) from None


def load_custom_dataset(path: str | Path, tokenizer=None) -> dict[str, list[CustomExample]]:
    """Parse, optionally check token lengths, and split."""
    examples = parse_custom_jsonl(path)
    if tokenizer is not None:
        check_token_lengths(examples, tokenizer, path)
    return split_examples(examples)
