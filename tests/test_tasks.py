"""Task encodings and metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from edge_pruning.tasks import Batch, CustomTask, Encoded, GreaterThanTask, IOITask, TaskDataError, collate


class CharTokenizer:
    """Every character one token (id = code point); `two_digit` makes "00".."99" single tokens."""

    def __init__(self, two_digit: bool = False) -> None:
        self.two_digit = two_digit

    def __call__(self, text, add_special_tokens=True):
        if self.two_digit and len(text) == 2 and text.isdigit():
            return {"input_ids": [1000 + int(text)]}
        return {"input_ids": [ord(c) for c in text]}


GT_ROW = {"prefix": "war from 1732 to ", "century": "17", "start_yy": 32, "corr_prefix": "war from 1701 to ", "corr_start_yy": 1}


def test_gt_two_digit_tokens_probability_difference():
    task = GreaterThanTask()
    tok = CharTokenizer(two_digit=True)
    (enc,) = task.encode_rows([GT_ROW], tok)
    assert enc.positions == [len(enc.input_ids) - 1] and enc.targets == [1032]
    batch = collate([enc], 0)
    logits = torch.full((1, 1, 1200), -1e9)
    # P(33) = 0.5, P(10) = 0.3, rest of the mass outside the year tokens
    logits[0, 0, 1033] = math.log(0.5)
    logits[0, 0, 1010] = math.log(0.3)
    logits[0, 0, 5] = math.log(0.2)
    # renormalised over the 100 year tokens: P(33) = 0.625, P(10) = 0.375
    p = task.year_probabilities(logits, batch)
    assert p["greater"].item() == pytest.approx(0.625, abs=1e-5)
    assert p["less"].item() == pytest.approx(0.375, abs=1e-5)
    assert task.attribution_metric(logits, batch).item() == pytest.approx(0.25, abs=1e-5)


def test_gt_digit_tokenizer_uses_chain_rule():
    """P(YY > 32) = P(d1 > 3) + P(d1 = 3) P(d2 > 2 | d1 = 3)."""
    task = GreaterThanTask()
    (enc,) = task.encode_rows([GT_ROW], CharTokenizer())
    assert enc.input_ids[-1] == ord("3") and enc.corr_input_ids[-1] == ord("0")  # teacher-forced tens digit
    assert enc.targets == [ord("3"), ord("2")]
    batch = collate([enc], 0)
    logits = torch.full((1, 2, 128), -1e9)
    p1 = {"2": 0.2, "3": 0.5, "7": 0.3}
    p2 = {"1": 0.4, "5": 0.6}
    for d, p in p1.items():
        logits[0, 0, ord(d)] = math.log(p)
    for d, p in p2.items():
        logits[0, 1, ord(d)] = math.log(p)
    p = task.year_probabilities(logits, batch)
    assert p["greater"].item() == pytest.approx(0.3 + 0.5 * 0.6, abs=1e-5)
    assert p["less"].item() == pytest.approx(0.2 + 0.5 * 0.4, abs=1e-5)
    assert p["equal"].item() == pytest.approx(0.0, abs=1e-5)
    # identical distributions: zero KL; a different one: positive
    assert task._kl(logits, logits, batch).abs().max() < 1e-6
    other = logits.clone()
    other[0, 1, ord("1")] = math.log(0.9)
    assert task._kl(other, logits, batch).item() > 0


def test_choice_task_logit_difference_and_accuracy():
    task = IOITask()
    tok = CharTokenizer()
    (enc,) = task.encode_rows([{"clean": "ab", "corrupted": "cd", "target": "M", "distractor": "J"}], tok)
    batch = collate([enc], 0)
    logits = torch.zeros(1, 1, 128)
    logits[0, 0, ord("M")] = 2.0
    logits[0, 0, ord("J")] = 0.5
    metrics = task.metrics(logits, logits, batch)
    assert metrics["logit_difference"].item() == pytest.approx(1.5)
    assert metrics["accuracy"].item() == 1.0 and metrics["exact_match"].item() == 1.0
    assert metrics["binary_accuracy"].item() == 1.0
    with pytest.raises(TaskDataError, match="tokenize to 2 and 3 tokens"):
        task.encode_rows([{"clean": "ab", "corrupted": "cde", "target": "M", "distractor": "J"}], tok)
    with pytest.raises(TaskDataError, match="not 1"):
        task.encode_rows([{"clean": "ab", "corrupted": "cd", "target": "MM", "distractor": "J"}], tok)


def test_custom_task_scores_every_answer_token():
    task = CustomTask()
    rows = [{"clean_prefix": "1+2=", "clean_answer": "13", "corrupted_prefix": "1+4=", "corrupted_answer": "15", "line": 1}]
    (enc,) = task.encode_rows(rows, CharTokenizer())
    assert enc.input_ids == [ord(c) for c in "1+2=13"]
    assert enc.positions == [3, 4] and enc.targets == [ord("1"), ord("3")]
    # the original's corrupted input: the span removed, padded (pad id 0 here)
    assert enc.corr_input_ids == [ord(c) for c in "1+4="] + [0, 0]
    keep = CustomTask(corrupted="keep_answer").encode_rows(rows, CharTokenizer())[0]
    assert keep.corr_input_ids == [ord(c) for c in "1+4=15"]
    with pytest.raises(TaskDataError, match="line 1"):
        CustomTask(corrupted="keep_answer").encode_rows([dict(rows[0], corrupted_answer="150")], CharTokenizer())
    with pytest.raises(TaskDataError, match="line 1: clean prefix"):
        task.encode_rows([dict(rows[0], corrupted_prefix="11+4=")], CharTokenizer())


def test_collate_pads_right_and_marks_positions():
    a = Encoded([1, 2, 3], [4, 5, 6], [2], [7], 8)
    b = Encoded([1, 2, 3, 4, 5], [4, 5, 6, 7, 8], [3, 4], [7, 9], 8)
    batch = collate([a, b], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch.positions.tolist() == [[2, -1], [3, 4]]
    assert batch.position_valid.tolist() == [[True, False], [True, True]]


def test_batch_is_a_typed_record_read_as_a_mapping_at_the_boundaries():
    """The HF Trainer moves dicts and `evaluation.to_device` rebuilds them: a Batch reads
    by name, turns into a dict and back, and a task's metrics are the same from either."""
    task = GreaterThanTask()
    (enc,) = task.encode_rows([GT_ROW], CharTokenizer(two_digit=True))
    batch = collate([enc, enc], 0)
    assert list(batch) == ["input_ids", "corr_input_ids", "attention_mask", "positions", "targets", "distractor",
                           "position_valid", "start_yy", "year_tokens"]  # fmt: skip
    assert batch["start_yy"] is batch.start_yy and batch.start_yy.tolist() == [32, 32]
    as_dict = batch.as_dict()
    again = Batch.of(as_dict)
    assert Batch.of(batch) is batch and all(torch.equal(again[k], v) for k, v in as_dict.items())
    logits = torch.randn(2, 1, 1200)
    for key, value in task.metrics(logits, logits.flip(0), batch).items():
        assert torch.equal(value, task.metrics(logits, logits.flip(0), as_dict)[key]), key
    choice = collate([Encoded([1, 2], [3, 4], [1], [5], 6)], 0)
    assert "start_yy" not in choice and len(choice) == 7 and choice.year_tokens is None
    with pytest.raises(KeyError):
        choice["year_tokens"]
