"""Each metric against a hand computation on a few hand-made logits: the original's
definitions (its src/eval/{ioi,gp,gt,boolean_expressions}.py, src/prune/fpt2_custom.py)
and ours next to them."""

from __future__ import annotations

import math
import re

import pytest
import torch

from edge_pruning.tasks import (
    BooleanExpressionsTask,
    CustomTask,
    Encoded,
    GreaterThanTask,
    IOITask,
    collate,
)

NEG = -1e9


def logits_from(probs: dict[int, float], vocab: int) -> torch.Tensor:
    """Logits whose softmax is `probs` (every other token ~0)."""
    out = torch.full((vocab,), NEG)
    for i, p in probs.items():
        out[i] = math.log(p)
    return out


def kl(p: dict[int, float], q: dict[int, float]) -> float:
    """KL(p || q) by hand, over the support of p."""
    return sum(pi * math.log(pi / q[i]) for i, pi in p.items())


def renormalised(p: dict[int, float], keep) -> dict[int, float]:
    z = sum(v for i, v in p.items() if i in keep)
    return {i: v / z for i, v in p.items() if i in keep}


# ----------------------------------------------------------------------------- IOI / GP


def choice_batch():
    # example 0: target 3, distractor 4; example 1: target 5, distractor 6
    a = Encoded([1, 2], [1, 2], [1], [3], 4)
    b = Encoded([1, 2], [1, 2], [1], [5], 6)
    return collate([a, b], 0)


def test_choice_accuracy_is_the_argmax_over_the_full_vocabulary():
    task, batch, V = IOITask(), choice_batch(), 10
    circuit = torch.stack([
        logits_from({7: 0.5, 3: 0.3, 4: 0.2}, V),  # target beats distractor, but token 7 wins
        logits_from({5: 0.6, 6: 0.4}, V),
    ])[:, None]
    full = torch.stack([
        logits_from({3: 0.7, 4: 0.3}, V),
        logits_from({6: 0.9, 5: 0.1}, V),  # the full model is wrong here
    ])[:, None]
    m = task.metrics(circuit, full, batch)
    assert m["accuracy"].tolist() == [0.0, 1.0]  # original: argmax == target
    assert m["binary_accuracy"].tolist() == [1.0, 1.0]  # ours: logit(target) > logit(distractor)
    assert m["full_accuracy"].tolist() == [1.0, 0.0] and m["full_binary_accuracy"].tolist() == [1.0, 0.0]
    assert m["exact_match"].tolist() == [0.0, 0.0]  # argmaxes 7 vs 3, 5 vs 6
    assert m["logit_difference"].tolist() == pytest.approx([math.log(0.3 / 0.2), math.log(0.6 / 0.4)], abs=1e-5)
    assert m["full_logit_difference"].tolist() == pytest.approx([math.log(0.7 / 0.3), math.log(0.1 / 0.9)], abs=1e-5)
    # KL(full || circuit) per example, over the whole vocabulary
    expected = [kl({3: 0.7, 4: 0.3}, {7: 0.5, 3: 0.3, 4: 0.2}), kl({6: 0.9, 5: 0.1}, {5: 0.6, 6: 0.4})]
    assert m["kl"].tolist() == pytest.approx(expected, abs=1e-5)
    assert task.loss(circuit, full, batch).item() == pytest.approx(sum(expected) / 2, abs=1e-5)


# ----------------------------------------------------------------------------- greater-than


class YearTokenizer:
    """Characters are tokens (id = code point); "00".."99" are ids 1000..1099 (GPT-2 style)."""

    def __init__(self, two_digit: bool) -> None:
        self.two_digit = two_digit

    def __call__(self, text, add_special_tokens=True):
        if self.two_digit and len(text) == 2 and text.isdigit():
            return {"input_ids": [1000 + int(text)]}
        return {"input_ids": [ord(c) for c in text]}


def gt_batch(two_digit: bool, digits: int = 32):
    row = {"prefix": f"war from 17{digits - 1:02d} to 17", "corr_prefix": "war from 1455 to 14", "digits": f"{digits:02d}"}
    task = GreaterThanTask()
    examples = task.encode_rows([row], YearTokenizer(two_digit))
    return task, collate(examples, 0)


def test_gt_probability_differences_renormalised_over_the_100_year_tokens():
    task, batch = gt_batch(two_digit=True)
    assert task.definitions["gt_definition"] == "two_digit_tokens"
    years = {33: 0.25, 40: 0.2, 45: 0.15, 32: 0.1, 30: 0.2, 10: 0.1}  # over the year tokens
    # a quarter of the mass on a token that is no year: renormalising removes it
    circuit = logits_from({1000 + y: 0.75 * p for y, p in years.items()} | {5: 0.25}, 1100)[None, None]
    p = task.year_probabilities(circuit, batch)
    assert p["greater"].item() == pytest.approx(0.25 + 0.2 + 0.15, abs=1e-5)  # 33, 40, 45 > 32
    assert p["less"].item() == pytest.approx(0.2 + 0.1, abs=1e-5)  # 30, 10 < 32
    full = logits_from({1000 + y: p for y, p in years.items()}, 1100)[None, None]
    m = task.metrics(circuit, full, batch)
    assert m["prob_difference"].item() == pytest.approx(0.6 - 0.3, abs=1e-5)
    # within ten years: 33, 40 (45 > 42) against 30 (10 < 22)
    assert m["prob_difference_10"].item() == pytest.approx(0.45 - 0.2, abs=1e-5)
    assert m["prob_difference_leq"].item() == pytest.approx(0.6 - 0.4, abs=1e-5)  # ours: 32 counts as "not greater"
    assert m["kl"].item() == pytest.approx(0.0, abs=1e-5)  # same distribution once renormalised
    assert m["kendall_tau"].item() == pytest.approx(1.0)
    assert m["gt_definition_two_digit_tokens"].item() == 1.0 and "gt_definition_digit_chain_rule" not in m
    assert task.attribution_metric(circuit, batch).item() == pytest.approx(0.3, abs=1e-5)


def test_gt_ten_year_window_is_clipped_at_00_and_99():
    task, batch = gt_batch(two_digit=True, digits=4)
    years = {0: 0.1, 3: 0.2, 4: 0.3, 14: 0.15, 15: 0.25}
    logits = logits_from({1000 + y: p for y, p in years.items()}, 1100)[None, None]
    m = task.metrics(logits, logits, batch)
    assert m["prob_difference_10"].item() == pytest.approx(0.15 - 0.3, abs=1e-5)  # 14 in (4, 14]; 0, 3 in [0, 4)
    assert m["prob_difference"].item() == pytest.approx(0.4 - 0.3, abs=1e-5)


def test_gt_kl_and_kendall_tau_by_hand():
    task, batch = gt_batch(two_digit=True)
    weights = [math.exp(0.05 * i) for i in range(100)]
    z = sum(weights)
    p = {i: w / z for i, w in enumerate(weights)}
    q = dict(p)
    q[10], q[11] = p[11], p[10]  # one discordant pair of 4,950
    circuit = logits_from({1000 + i: v for i, v in q.items()}, 1100)[None, None]
    full = logits_from({1000 + i: v for i, v in p.items()} | {7: 1.0}, 1100)[None, None]  # mass off the years
    m = task.metrics(circuit, full, batch)
    assert m["kendall_tau"].item() == pytest.approx((4949 - 1) / 4950, abs=1e-6)
    assert m["kl"].item() == pytest.approx(kl(p, q), abs=1e-6)


def test_gt_digit_chain_rule():
    task, batch = gt_batch(two_digit=False)  # d = 32: the prompt is extended with "3"
    assert task.definitions["gt_definition"] == "digit_chain_rule"
    d = lambda c: ord(c)  # noqa: E731
    p1 = {d("2"): 0.2, d("3"): 0.5, d("7"): 0.3}
    p2 = {d("1"): 0.4, d("2"): 0.1, d("5"): 0.5}  # P(d2 | d1 = 3)
    circuit = torch.stack([logits_from({k: 0.5 * v for k, v in p1.items()} | {d("x"): 0.5}, 128),
                           logits_from(p2, 128)])[None]
    m = task.metrics(circuit, circuit, batch)
    greater = 0.3 + 0.5 * 0.5  # d1 > 3, or d1 = 3 and d2 > 2
    less = 0.2 + 0.5 * 0.4
    equal = 0.5 * 0.1
    assert m["prob_difference"].item() == pytest.approx(greater - less, abs=1e-5)
    assert m["prob_difference_leq"].item() == pytest.approx(greater - less - equal, abs=1e-5)
    assert "prob_difference_10" not in m and m["gt_definition_digit_chain_rule"].item() == 1.0
    # chain-rule KL: KL(d1) + p_full(d1 = 3) KL(d2 | 3)
    f1 = {d("2"): 0.1, d("3"): 0.6, d("7"): 0.3}
    f2 = {d("1"): 0.2, d("2"): 0.3, d("5"): 0.5}
    full = torch.stack([logits_from(f1, 128), logits_from(f2, 128)])[None]
    expected = kl(f1, p1) + 0.6 * kl(f2, p2)
    assert task.metrics(circuit, full, batch)["kl"].item() == pytest.approx(expected, abs=1e-5)
    assert task.loss(circuit, full, batch).item() == pytest.approx(expected, abs=1e-5)


# ----------------------------------------------------------------------------- Boolean


class WordTokenizer:
    """Pieces are a newline or an optional space and a run of non-spaces; a fixed vocabulary."""

    PIECES = ["True", " True", " False", "False", " Tr", " is", "\n", " (", " )", " not", " and", " or", "(", ")",
              "not", "and", "or"]

    def __init__(self) -> None:
        self.vocab = {p: i for i, p in enumerate(self.PIECES)}

    def _piece(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab[piece] = len(self.vocab)
        return self.vocab[piece]

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [self._piece(p) for p in re.findall(r"\n| ?[^\s]+", text)]}

    def __len__(self) -> int:
        return len(self.vocab)

    def batch_decode(self, ids):
        inverse = {i: p for p, i in self.vocab.items()}
        return [inverse[i[0]] for i in ids]


def test_boolean_accuracy_compares_decoded_stripped_strings():
    tok = WordTokenizer()
    task = BooleanExpressionsTask(fewshot=True)
    rows = [{"input": "True and False is", "corr_input": "True and True is", "target": "False"},
            {"input": "True or False is", "corr_input": "False or False is", "target": "True"},
            {"input": "not False is", "corr_input": "not True is", "target": "True"}]
    examples = task.encode_rows(rows, tok)
    true, space_true, space_false, tr = tok.vocab["True"], tok.vocab[" True"], tok.vocab[" False"], tok.vocab[" Tr"]
    assert [e.targets[0] for e in examples] == [space_false, space_true, space_true]
    V = len(tok)
    batch = collate(examples, 0)
    circuit = torch.stack([
        logits_from({tok.vocab["False"]: 0.6, space_false: 0.4}, V),  # "False" decodes, stripped, to the answer
        logits_from({true: 0.7, space_true: 0.3}, V),  # "True" is the answer too, though not " True"
        logits_from({tr: 0.8, space_true: 0.2}, V),  # " Tr" is not
    ])[:, None]
    full = torch.stack([
        logits_from({space_false: 0.9, true: 0.1}, V),
        logits_from({space_true: 0.9, true: 0.1}, V),
        logits_from({space_true: 0.9, tr: 0.1}, V),
    ])[:, None]
    m = task.metrics(circuit, full, batch)
    assert m["accuracy"].tolist() == [1.0, 1.0, 0.0]
    assert m["full_accuracy"].tolist() == [1.0, 1.0, 1.0]
    assert m["exact_match"].tolist() == [1.0, 1.0, 0.0]  # "False" == " False" once stripped; " Tr" != " True"
    # ours: the right answer's token against the wrong one's (" True" vs " False"), whatever the argmax
    assert m["binary_accuracy"].tolist() == [1.0, 1.0, 1.0]
    assert task.definitions["accuracy"].startswith("decode(argmax")


def test_boolean_kl_is_the_per_example_mean():
    """The original sums per-batch means and divides by the number of examples, which
    under-reports by the batch size; ours is each example's KL, averaged."""
    tok = WordTokenizer()
    task = BooleanExpressionsTask(fewshot=True)
    rows = [{"input": "True is", "corr_input": "False is", "target": "True"},
            {"input": "False is", "corr_input": "True is", "target": "False"}]
    batch = collate(task.encode_rows(rows, tok), 0)
    V = len(tok)
    a, b = {1: 0.5, 2: 0.5}, {1: 0.9, 2: 0.1}
    circuit = torch.stack([logits_from(a, V), logits_from(a, V)])[:, None]
    full = torch.stack([logits_from(b, V), logits_from(a, V)])[:, None]
    m = task.metrics(circuit, full, batch)
    assert m["kl"].tolist() == pytest.approx([kl(b, a), 0.0], abs=1e-5)


# ----------------------------------------------------------------------------- custom


def test_custom_loss_is_the_per_example_mean_over_answer_positions():
    """The original: KL with reduction 'batchmean' over each example's answer positions,
    summed over the batch and divided by its size."""
    task = CustomTask()
    a = Encoded([1, 2, 3], [1, 2, 3], [1], [3])
    b = Encoded([1, 2, 3, 4], [1, 2, 3, 4], [1, 2], [3, 4])
    batch = collate([a, b], 0)
    V = 5
    p, q, r = {1: 0.5, 2: 0.5}, {1: 0.8, 2: 0.2}, {1: 0.1, 2: 0.9}
    circuit = torch.stack([torch.stack([logits_from(p, V), logits_from(p, V)]),
                           torch.stack([logits_from(p, V), logits_from(p, V)])])
    full = torch.stack([torch.stack([logits_from(q, V), logits_from(p, V)]),  # second row is padding
                        torch.stack([logits_from(q, V), logits_from(r, V)])])
    ka, kb1, kb2 = kl(q, p), kl(q, p), kl(r, p)
    assert task.loss(circuit, full, batch).item() == pytest.approx((ka + (kb1 + kb2) / 2) / 2, abs=1e-5)
    m = task.metrics(circuit, full, batch)
    assert m["kl"].tolist() == pytest.approx([ka, (kb1 + kb2) / 2], abs=1e-5)
    # accuracy: every answer token is the argmax (teacher-forced), as the original's eval_fn
    assert m["accuracy"].tolist() == [0.0, 0.0] and m["full_accuracy"].tolist() == [0.0, 0.0]
