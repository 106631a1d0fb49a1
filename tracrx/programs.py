"""RASP programs for the two Tracr tasks and their compile settings.

Why this module exists: the paper's Tracr experiments use two compiled programs
(reverse and xproportion). Their settings live here, in one typed record per
task, so the compile scripts, the dataset scripts and the tests agree.

Determinism: in tracr-pypi 1.0.0 every RASP label is ``f"{name}_{unique_id}"``,
where ``unique_id`` is drawn lazily from a process-wide counter. Residual
directions and MLP hidden units are named after labels, and Tracr sorts the
residual basis by name, so the same program compiled after other programs
could get different labels (and, in principle, a different basis order). We
therefore (1) name every operation explicitly and (2) give every expression of
the program an id from a deterministic walk of its DAG before compiling
(:func:`assign_deterministic_ids`). This touches only the program's own
expression objects, never Tracr's global state.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Hashable, List, Tuple

from tracr.compiler import lib
from tracr.rasp import rasp

BOS = "BOS"
PAD = "compiler_pad"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything needed to compile a task and to enumerate its inputs.

    Attributes:
      name: task name, also the file stem of its artefacts.
      vocab: input tokens (without BOS/PAD), in the order used to enumerate
        inputs; Tracr's own token ids are independent of this order.
      n_tokens: number of tokens per input, not counting BOS.
      max_seq_len: Tracr's ``max_seq_len`` (positions not counting BOS).
      causal: compile with a causal attention mask.
      categorical_output: True if the output is a class (argmax over logits),
        False if it is a single number read from one residual direction.
      build_program: returns a fresh RASP program (new expression objects).
      reference: the task's ground-truth function on a token list (no BOS).
    """

    name: str
    vocab: Tuple[Hashable, ...]
    n_tokens: int
    max_seq_len: int
    causal: bool
    categorical_output: bool
    build_program: Callable[[], rasp.SOp]
    reference: Callable[[List[Hashable]], List[Hashable]]


def _walk(program: rasp.RASPExpr) -> List[rasp.RASPExpr]:
    """Return the program's expressions in a deterministic depth-first order."""
    order: List[rasp.RASPExpr] = []
    seen = set()

    def visit(expr: rasp.RASPExpr) -> None:
        if id(expr) in seen:
            return
        seen.add(id(expr))
        order.append(expr)
        for child in expr.children:
            visit(child)

    visit(program)
    return order


_PRIMITIVES = (rasp.TokensType, rasp.IndicesType, rasp.LengthType)


def assign_deterministic_ids(program: rasp.RASPExpr) -> None:
    """Fix every expression's ``unique_id`` (hence its label) by DAG position.

    ``unique_id`` is a ``functools.cached_property``; writing the instance
    attribute is exactly what the property would cache. Primitives (tokens,
    indices) have fixed labels and are shared singletons, so they are skipped.
    """
    for i, expr in enumerate(_walk(program), start=1):
        if isinstance(expr, _PRIMITIVES):
            continue
        vars(expr)["unique_id"] = i


def program_names(program: rasp.RASPExpr) -> dict:
    """Map each label of the program to its plain name (label minus id)."""
    return {expr.label: expr.name for expr in _walk(program)}


# ---------------------------------------------------------------- reverse


def make_reverse_program() -> rasp.SOp:
    """reverse(tokens): the standard Tracr construction, every op named.

    Same computation as ``tracr.compiler.lib.make_reverse`` but building a
    fresh ``length`` (lib's module-level ``length`` object would carry a
    process-dependent id):
      length = SelectorWidth(Select(tokens, tokens, TRUE))      # attn + MLP
      opp_idx = length - indices                                # MLP
      opp_idx_minus_1 = opp_idx - 1                             # MLP
      reverse = Aggregate(Select(indices, opp_idx_minus_1, EQ), tokens)  # attn
    """
    all_true = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true")
    length = rasp.SelectorWidth(all_true).named("length")
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx_minus_1 = (opp_idx - 1).named("opp_idx_minus_1")
    flip = rasp.Select(rasp.indices, opp_idx_minus_1, rasp.Comparison.EQ).named("flip")
    return rasp.Aggregate(flip, rasp.tokens).named("reverse")


def _reverse_reference(tokens: List[Hashable]) -> List[Hashable]:
    return list(reversed(tokens))


REVERSE = TaskSpec(
    name="reverse",
    vocab=(1, 2, 3),
    n_tokens=3,
    max_seq_len=5,
    causal=False,
    categorical_output=True,
    build_program=make_reverse_program,
    reference=_reverse_reference,
)


# ------------------------------------------------------------ xproportion


def make_xproportion_program() -> rasp.SOp:
    """Fraction of 'x' tokens among positions <= the current one.

      is_x = numerical(tokens == "x")                              # MLP
      xproportion = lib.make_frac_prevs(is_x)                      # attn
    ``make_frac_prevs`` builds a numerical mean-Aggregate over
    Select(indices, indices, LEQ); its selector is left with Tracr's default
    name "select" (selectors do not name residual directions).
    """
    # Same op as the paper's ``rasp.tokens == "x"`` (a Map to bool), but named.
    is_x = rasp.numerical(rasp.Map(lambda t: t == "x", rasp.tokens)).named("is_x")
    return lib.make_frac_prevs(is_x).named("xproportion")


def _xproportion_reference(tokens: List[Hashable]) -> List[Hashable]:
    out, count = [], 0
    for i, tok in enumerate(tokens):
        count += tok == "x"
        out.append(count / (i + 1))
    return out


XPROPORTION = TaskSpec(
    name="xproportion",
    vocab=("a", "b", "c", "x"),
    n_tokens=4,
    max_seq_len=5,
    causal=True,
    categorical_output=False,
    build_program=make_xproportion_program,
    reference=_xproportion_reference,
)

TASKS = {spec.name: spec for spec in (REVERSE, XPROPORTION)}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, with a clear error for typos."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown Tracr task {name!r}; known: {sorted(TASKS)}") from None
