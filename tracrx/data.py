"""Enumerate every input of a Tracr task and its expected outputs.

Why: the input spaces are tiny (3^3 = 27 for reverse, 4^4 = 256 for
xproportion), so datasets, ground-truth derivation and tests all use the
complete input space rather than samples.

Token ids follow Tracr's own rule: the input encoder numbers the basis of the
"tokens" space, which Tracr sorts; we build that space with Tracr's
``bases.VectorSpaceWithBasis.from_values`` (the same call Tracr makes), so no
compile is needed. The tests check these ids against the compiled model.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, Hashable, List, Optional

import numpy as np
from tracr.craft import bases

from tracrx.programs import BOS, PAD, TaskSpec


def input_vocab(spec: TaskSpec) -> Dict[Hashable, int]:
    """Token -> id, exactly as Tracr's input encoder assigns them."""
    space = bases.VectorSpaceWithBasis.from_values("tokens", set(spec.vocab) | {BOS, PAD})
    return {d.value: i for i, d in enumerate(space.basis)}


def output_vocab(spec: TaskSpec) -> Optional[Dict[Hashable, int]]:
    """Output value -> logit column for categorical tasks, else None.

    For reverse the output values are the input vocab; the column order is the
    sorted basis of the output space, as in Tracr.
    """
    if not spec.categorical_output:
        return None
    space = bases.VectorSpaceWithBasis.from_values(spec.name, set(spec.vocab))
    return {d.value: i for i, d in enumerate(space.basis)}


@dataclasses.dataclass(frozen=True)
class Example:
    """One task input with its expected output at every position.

    ``tokens`` and ``target`` include the BOS position (target None there);
    ``target_ids`` (categorical tasks only) are logit columns.
    """

    tokens: List[Hashable]
    input_ids: List[int]
    target: List[Optional[Hashable]]
    target_ids: Optional[List[Optional[int]]]

    def to_json(self) -> dict:
        d = {"tokens": self.tokens, "input_ids": self.input_ids, "target": self.target}
        if self.target_ids is not None:
            d["target_ids"] = self.target_ids
        return d


def all_token_sequences(spec: TaskSpec) -> List[List[Hashable]]:
    """Every input (without BOS), in lexicographic order of ``spec.vocab``."""
    return [list(t) for t in itertools.product(spec.vocab, repeat=spec.n_tokens)]


def make_example(spec: TaskSpec, tokens: List[Hashable]) -> Example:
    in_vocab = input_vocab(spec)
    out_vocab = output_vocab(spec)
    target = [None, *spec.reference(list(tokens))]
    target_ids = None
    if out_vocab is not None:
        target_ids = [None if t is None else out_vocab[t] for t in target]
    return Example(
        tokens=[BOS, *tokens],
        input_ids=[in_vocab[t] for t in [BOS, *tokens]],
        target=target,
        target_ids=target_ids,
    )


def all_examples(spec: TaskSpec) -> List[Example]:
    return [make_example(spec, t) for t in all_token_sequences(spec)]


def all_input_ids(spec: TaskSpec) -> np.ndarray:
    """``[N, 1 + n_tokens]`` ids of every input, BOS first."""
    return np.array([e.input_ids for e in all_examples(spec)], dtype=np.int64)
