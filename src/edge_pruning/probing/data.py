"""The arithmetic tasks of the circuit-probing experiments: inputs "a b =" (or, for
the multitask model, "task a r b =" / "task a b r ="), a label that is the sum of
intermediate variables mod p, and every variable a probe may target.

Data are generated as the original did (all p² pairs, one random permutation split
by `train_frac`, seeded by `data_seed`), so a config's seed fixes the splits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..errors import UserError

# The variables by name: f(a, b, p). `a_mod_N` / `b_mod_N` take their own modulus.
_FUNCTIONS = {
    "a": lambda a, b, p: a % p,
    "b": lambda a, b, p: b % p,
    "a2": lambda a, b, p: a**2 % p,
    "b2": lambda a, b, p: b**2 % p,
    "minus_b2": lambda a, b, p: (-(b**2)) % p,
    "a_plus_b": lambda a, b, p: (a + b) % p,
    "a_minus_b": lambda a, b, p: (a - b) % p,
    "ab": lambda a, b, p: (a * b) % p,
}
_MOD_VARIABLE = re.compile(r"^(a|b)_mod_(\d+)$")


def variable_values(name: str, a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    """The values of variable `name` on operands a, b (modulus p)."""
    m = _MOD_VARIABLE.match(name)
    if m:
        operand = a if m.group(1) == "a" else b
        return operand % int(m.group(2))
    if name not in _FUNCTIONS:
        known = ", ".join([*_FUNCTIONS, "a_mod_N", "b_mod_N"])
        raise UserError(f"unknown variable {name!r} (known: {known})", "variables")
    return _FUNCTIONS[name](a, b, p)


@dataclass(frozen=True)
class TaskSpec:
    """One arithmetic task: label = Σ variables mod p. `task_token` (multitask) comes
    first; `random_position` inserts a distractor token at that index."""

    variables: tuple[str, ...]
    extra_variables: tuple[str, ...] = ()  # probe targets the label does not use
    task_token: int | None = None
    random_position: int | None = None

    def all_variables(self) -> tuple[str, ...]:
        return self.variables + self.extra_variables


@dataclass
class Split:
    """Token ids (n, seq), labels (n,) and every variable's values (n,)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    variables: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "Split":
        return Split(self.inputs[index], self.labels[index], {k: v[index] for k, v in self.variables.items()})

    @staticmethod
    def concat(splits: list["Split"]) -> "Split":
        keys = set.intersection(*(set(s.variables) for s in splits))
        return Split(
            torch.cat([s.inputs for s in splits]),
            torch.cat([s.labels for s in splits]),
            {k: torch.cat([s.variables[k] for s in splits]) for k in sorted(keys)},
        )


def generate_task(spec: TaskSpec, mod: int, train_frac: float, generator: torch.Generator) -> tuple[Split, Split]:
    """All mod² operand pairs, "a b =" (the '=' token is `mod`), split at random."""
    if not 0.0 < train_frac < 1.0:
        raise UserError(f"train_frac must be in (0, 1), got {train_frac}", "train_frac")
    a = torch.arange(mod).repeat_interleave(mod)
    b = torch.arange(mod).repeat(mod)
    columns = [a, b, torch.full_like(a, mod)]
    if spec.task_token is not None:
        columns.insert(0, torch.full_like(a, spec.task_token))
    if spec.random_position is not None:
        # As the original: one permutation of the operand range, indexed by b's position.
        columns.insert(spec.random_position, torch.randperm(mod, generator=generator)[b])
    inputs = torch.stack(columns, dim=1)
    variables = {name: variable_values(name, a, b, mod) for name in spec.all_variables()}
    labels = torch.stack([variables[v] for v in spec.variables]).sum(0) % mod
    order = torch.randperm(mod * mod, generator=generator)
    cut = int(mod * mod * train_frac)
    data = Split(inputs, labels, variables)
    return data.subset(order[:cut]), data.subset(order[cut:])


@dataclass(frozen=True)
class DatasetSpec:
    """One model's training data: one task, or several (the multitask model) whose
    splits are concatenated for training and kept apart for probing."""

    tasks: tuple[TaskSpec, ...]
    mod: int = 113
    train_frac: float = 0.6
    data_seed: int = 0

    @property
    def vocab_size(self) -> int:
        tokens = [t.task_token for t in self.tasks if t.task_token is not None]
        return max([self.mod, *tokens]) + 1

    @property
    def seq_len(self) -> int:
        lengths = {3 + (t.task_token is not None) + (t.random_position is not None) for t in self.tasks}
        if len(lengths) != 1:
            raise UserError("every task of a dataset must have the same length", "tasks")
        return lengths.pop()

    def generate(self) -> list[tuple[Split, Split]]:
        """(train, test) per task, in order; one generator for all, as the original."""
        g = torch.Generator().manual_seed(self.data_seed)
        return [generate_task(t, self.mod, self.train_frac, g) for t in self.tasks]


# The three experiments' models (the original's Train_Algorithmic_Models configs).
DATASETS = {
    # Experiment 1: (a² − b²) mod 113; a + b and a − b are probed as alternatives.
    "disambiguation": DatasetSpec(
        (TaskSpec(("a2", "minus_b2"), ("b2", "a_plus_b", "a_minus_b")),), train_frac=0.6
    ),
    # Experiment 2: two tasks sharing a mod 29; task 1 adds b mod 31, task 2 b mod 23.
    "multitask": DatasetSpec(
        (
            TaskSpec(("a_mod_29", "b_mod_31"), ("b_mod_23",), task_token=114, random_position=2),
            TaskSpec(("a_mod_29", "b_mod_23"), ("b_mod_31",), task_token=115, random_position=3),
        ),
        train_frac=0.6,
    ),
    # Experiment 3: grokking (a² + b) mod 113 on a third of the pairs; b² is a control.
    "grokking": DatasetSpec((TaskSpec(("a2", "b"), ("b2",)),), train_frac=0.333),
}


def dataset_spec(name: str, where: str = "dataset") -> DatasetSpec:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})", where)
    return DATASETS[name]
