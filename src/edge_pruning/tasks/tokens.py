"""Tokenisation rules the tasks share; each error names the example."""

from __future__ import annotations

from ..errors import TaskDataError


def tokens(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def single_token(tokenizer, text: str, what: str, where: str) -> int:
    ids = tokens(tokenizer, text, add_special_tokens=False)
    if len(ids) != 1:
        raise TaskDataError(f"{where}: {what} {text!r} is {len(ids)} tokens for this tokenizer, not 1")
    return ids[0]


def first_token(tokenizer, text: str, what: str, where: str) -> int:
    """The first token of `text` (the original's ``tokenizer.encode(" " + name)[0]``)."""
    ids = tokens(tokenizer, text, add_special_tokens=False)
    if not ids:
        raise TaskDataError(f"{where}: {what} {text!r} is empty for this tokenizer")
    return ids[0]


def next_token(tokenizer, prompt: str, continuation: str, what: str, where: str) -> int:
    """The one token that `continuation` adds to `prompt` when both are tokenised together."""
    a = tokens(tokenizer, prompt, True)
    b = tokens(tokenizer, prompt + continuation, True)
    if b[: len(a)] != a or len(b) != len(a) + 1:
        raise TaskDataError(
            f"{where}: {what} {continuation!r} does not add exactly one token to the prompt for this tokenizer"
        )
    return b[-1]


def token_pair(tokenizer, clean: str, corrupted: str, where: str) -> tuple[list[int], list[int]]:
    """Clean and corrupted prompts, which must tokenise to equal lengths."""
    a = tokens(tokenizer, clean, True)
    b = tokens(tokenizer, corrupted, True)
    if len(a) != len(b):
        raise TaskDataError(
            f"{where}: clean and corrupted prompts tokenize to {len(a)} and {len(b)} tokens; they must be equal"
        )
    return a, b


def pad_token_id(tokenizer) -> int:
    """The padding id: the tokenizer's pad token, else its EOS, else 0."""
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if candidate is not None:
            return candidate
    return 0


def vocab_size(tokenizer) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return tokenizer.vocab_size
