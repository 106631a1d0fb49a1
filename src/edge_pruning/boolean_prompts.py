"""Prompt formats and an evaluator for the Boolean-expressions task.

Expressions are written BIG-Bench-Hard style, tokens separated by single
spaces: ``not ( True and False ) or True``. Precedence is Python's
(not > and > or). Two prompt styles, each with an instruction and a few-shot
format:

* ``original`` (the default), the formats of the original Edge Pruning scripts
  (src/prune/fllama_boolean_expressions_{ip,fs}.py): the dataset stores
  ``"EXPR is"``; few-shot puts its three fixed solved expressions, one per
  line, before it (the answer follows as " True"/" False"); instruction wraps
  the bare expression in a Llama-2 chat prompt that ends in ``[/INST] '`` (the
  answer follows as "True"/"False").
* ``qa`` (ours): ``"Evaluate the result of a random Boolean expression.\n\nQ: <expr>\nA:"``,
  few-shot with three solved examples of our own before the question; the
  answer follows as " True"/" False" (:func:`target`).
"""

from __future__ import annotations

from typing import Sequence

INSTRUCTION = "Evaluate the result of a random Boolean expression."

# Written for this project; the dataset generator excludes them from every split.
FEW_SHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("not ( True and False )", "True"),
    ("False or not ( True or False )", "False"),
    ("True and not False or False", "True"),
)

TOKENS = ("True", "False", "not", "and", "or", "(", ")")


# The original's three shots, verbatim (its data generator never produces these
# spellings, which lack the spaces inside parentheses).
ORIGINAL_SHOTS: tuple[str, ...] = (
    "(True and False) or (False and True) is False",
    "(True or (not True)) and False is False",
    "(not (True and False)) or (False and True) is True",
)
ORIGINAL_SYSTEM = "Evaluate the following boolean expression as either 'True' or 'False'."


def strip_is(text: str) -> str:
    """``"EXPR is"`` -> ``"EXPR"`` (the original cuts at the last " is")."""
    cut = text.rfind(" is")
    return text[:cut] if cut >= 0 else text


def original_few_shot_prompt(expression: str) -> str:
    """The original's few-shot input: the three shots, then ``EXPR is``."""
    return "\n".join((*ORIGINAL_SHOTS, f"{expression} is"))


def original_instruction_prompt(expression: str) -> str:
    """The original's instruction prompt (Llama-2 chat format)."""
    return f"[INST] <<SYS>>\n{ORIGINAL_SYSTEM}\n<</SYS>>\n\n{expression} [/INST] '"


def prompt_for(style: str, fewshot: bool):
    """The prompt function of a style ("original" or "qa") and format."""
    if style == "original":
        return original_few_shot_prompt if fewshot else original_instruction_prompt
    if style == "qa":
        return few_shot_prompt if fewshot else instruction_prompt
    raise ValueError(f"unknown prompt style {style!r}")


def continuation(style: str, fewshot: bool, answer: str | bool) -> str:
    """The text the model should continue with: " True" after "is" or "A:", and
    "True" after the original instruction prompt's opening quote."""
    text = target(answer)
    return text[1:] if style == "original" and not fewshot else text


def instruction_prompt(expression: str) -> str:
    """Zero-shot prompt: instruction, then the question."""
    return f"{INSTRUCTION}\n\nQ: {expression}\nA:"


def few_shot_prompt(expression: str, examples: Sequence[tuple[str, str]] = FEW_SHOT_EXAMPLES) -> str:
    """Instruction, the fixed solved examples, then the question."""
    shots = "".join(f"Q: {e}\nA: {a}\n\n" for e, a in examples)
    return f"{INSTRUCTION}\n\n{shots}Q: {expression}\nA:"


def target(answer: str | bool) -> str:
    """The continuation the model should produce: ``" True"`` or ``" False"``."""
    if isinstance(answer, bool):
        answer = str(answer)
    if answer not in ("True", "False"):
        raise ValueError(f"answer must be 'True' or 'False', got {answer!r}")
    return " " + answer


def evaluate(expression: str) -> bool:
    """Evaluate a space-separated expression with not > and > or (no ``eval``)."""
    tokens = expression.split()
    for tok in tokens:
        if tok not in TOKENS:
            raise ValueError(f"unexpected token {tok!r} in {expression!r}")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"malformed expression {expression!r} at token {pos}")
        pos += 1
        return tok

    def parse_or() -> bool:
        value = parse_and()
        while peek() == "or":
            take()
            rhs = parse_and()
            value = value or rhs
        return value

    def parse_and() -> bool:
        value = parse_not()
        while peek() == "and":
            take()
            rhs = parse_not()
            value = value and rhs
        return value

    def parse_not() -> bool:
        if peek() == "not":
            take()
            return not parse_not()
        tok = take()
        if tok == "(":
            value = parse_or()
            take(")")
            return value
        if tok in ("True", "False"):
            return tok == "True"
        raise ValueError(f"malformed expression {expression!r} at token {pos - 1}")

    result = parse_or()
    if pos != len(tokens):
        raise ValueError(f"trailing tokens in {expression!r}")
    return result


def paren_depth(expression: str) -> int:
    """Maximum parenthesis nesting depth."""
    depth = best = 0
    for tok in expression.split():
        if tok == "(":
            depth += 1
            best = max(best, depth)
        elif tok == ")":
            depth -= 1
    return best


def n_literals(expression: str) -> int:
    return sum(tok in ("True", "False") for tok in expression.split())
