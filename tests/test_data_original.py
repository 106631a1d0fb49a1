"""Data as the original Edge Pruning: its column layouts load to the same encoded
examples as ours, its IOI template fitting, split names, and generators that make
their random draws in the original's order.

The pinned generator outputs below were checked once against the original's own
generators (princeton-nlp/Edge-Pruning's data scripts, run outside this repository
with the SmolLM2 tokenizer; for greater-than with its two-token year test swapped for
"four digit tokens", as ours generalises it): the expressions, splits and corruptions
were identical.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest

from edge_pruning.tasks import TaskDataError, find_ioi_template, get_task, load_rows
from edge_pruning.smollm2 import DEFAULT_OUTPUT, ensure_smollm2

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data" / "datasets"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO / "data" / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tok_path():
    return ensure_smollm2(DEFAULT_OUTPUT)


@pytest.fixture(scope="module")
def tok(tok_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok_path)


def save(tmp_path: Path, name: str, rows: list[dict], split: str = "train") -> Path:
    from datasets import Dataset, DatasetDict

    out = tmp_path / name
    DatasetDict({split: Dataset.from_list(rows)}).save_to_disk(str(out))
    return out


def shipped(name: str, split: str, n: int = 40) -> list[dict]:
    from datasets import load_from_disk

    return list(load_from_disk(str(SHIPPED / name))[split].select(range(n)))


def encoded(task_name: str, path: Path, tok, split: str = "train", **options):
    task = get_task(task_name, **options)
    return task.encode_rows(load_rows(task, path, split), tok), task


# ----------------------------------------------------------------------------- layouts


def test_ioi_layouts_encode_alike(tmp_path, tok):
    rows = shipped("ioi", "validation")
    original = [{"ioi_sentences": r["ioi_sentences"], "corr_ioi_sentences": r["corr_ioi_sentences"]} for r in rows]
    text = [{"text": r["ioi_sentences"], "corr_text": r["corr_ioi_sentences"]} for r in rows]
    ours = [{k: r[k] for k in ("clean", "corrupted", "target", "distractor")} for r in rows]
    a, task = encoded("ioi", save(tmp_path, "orig", original), tok)
    assert task.definitions["data_layout"] == "original"
    b, _ = encoded("ioi", save(tmp_path, "text", text), tok)
    c, task = encoded("ioi", save(tmp_path, "ours", ours), tok)
    assert task.definitions["data_layout"] == "ours"
    assert a == b == c and len(a) == len(rows)
    # the wrong answer is the other name of the fitted template
    for r, e in zip(rows, a):
        assert tok.decode([e.distractor]) == " " + r["b"] and tok.decode(e.targets) == " " + r["a"]


def test_gp_layouts_encode_alike(tmp_path, tok):
    rows = shipped("gp", "validation")
    ours = [{"clean": r["prefix"], "corrupted": r["corr_prefix"], "target": " " + r["pronoun"],
             "distractor": " " + r["corr_pronoun"]} for r in rows]
    a, _ = encoded("gp", save(tmp_path, "orig", rows), tok)
    b, _ = encoded("gp", save(tmp_path, "ours", ours), tok)
    assert a == b and len(a) == len(rows)


def test_gt_layouts_encode_alike(tmp_path, tok):
    # Ours appends the clean century to both prompts, the original's corrupted prompt ends
    # in its own: compare on rows whose corrupted prompt ends in the clean century.
    same = [dict(r, corr_prefix=r["corr_prefix"][:-2] + r["century"]) for r in shipped("gt", "validation")]
    ours = [{"prefix": r["prefix"][:-2], "century": r["century"], "start_yy": int(r["digits"]),
             "corr_prefix": r["corr_prefix"][:-2], "corr_start_yy": int(r["corr_digits"])} for r in same]
    a, task = encoded("gt", save(tmp_path, "orig", same), tok)
    assert task.definitions["gt_definition"] == "digit_chain_rule"
    b, _ = encoded("gt", save(tmp_path, "ours", ours), tok)
    assert a == b and len(a) == len(same)
    # without corr_digits the corrupted start year is read off the corrupted prompt
    bare = [{k: r[k] for k in ("prefix", "corr_prefix", "digits")} for r in same]
    c, _ = encoded("gt", save(tmp_path, "bare", bare), tok)
    assert c == a


@pytest.mark.parametrize("task_name", ["boolean_expressions_fs", "boolean_expressions_ip"])
def test_boolean_layouts_encode_alike(tmp_path, tok, task_name):
    rows = shipped("boolean_expressions", "val")
    ours = [{"expression": r["input"][:-3], "answer": r["target"], "corrupted_expression": r["corr_input"][:-3]}
            for r in rows]
    # the original's data calls validation "val"; asking for "validation" finds it
    a, task = encoded(task_name, save(tmp_path, "orig", rows, split="val"), tok, split="validation")
    b, _ = encoded(task_name, save(tmp_path, "ours", ours, split="validation"), tok, split="val")
    assert a == b and len(a) == len(rows)
    assert task.definitions["prompt_style"] == "original"
    qa, _ = encoded(task_name, save(tmp_path, "qa", ours), tok, prompt_style="qa")
    assert qa != a and len(qa) == len(a)


def test_unknown_layout_names_file_and_columns(tmp_path):
    path = save(tmp_path, "odd", [{"sentence": "x", "other": "y"}])
    with pytest.raises(TaskDataError) as info:
        load_rows(get_task("ioi"), path, "train")
    message = str(info.value)
    assert str(path) in message and "['other', 'sentence']" in message and "ioi_sentences" in message


def test_missing_large_split_says_how_to_make_it(tmp_path):
    path = save(tmp_path, "ioi", [{"clean": "a", "corrupted": "b", "target": " c", "distractor": " d"}])
    with pytest.raises(TaskDataError, match="prepare_ioi.py --n_train_100k 100000"):
        load_rows(get_task("ioi"), path, "train_100k")


# ----------------------------------------------------------------------------- IOI fitting


def test_ioi_template_fitting_as_the_original():
    # BABA 0 would read B = Mary, then "John gave" contradicts it: ABBA 0 fits
    fit = find_ioi_template("Then, Mary and John went to the store. John gave a drink to Mary")
    assert fit == {"a": "Mary", "b": "John", "place": "store", "object": "drink", "order": "abba", "template_index": 0}
    assert find_ioi_template("Friends Ann and Bob found a cup at the park. Bob gave it to Ann")["a"] == "Ann"
    assert find_ioi_template("Mary likes John") is None


def test_ioi_rows_that_fit_no_template_are_skipped_with_a_warning(tok):
    rows = [{"ioi_sentences": "Then, Mary and John went to the store. John gave a drink to Mary",
             "corr_ioi_sentences": "Then, Anna and Paul went to the store. Mark gave a drink to Lisa"},
            {"ioi_sentences": "Mary sang and John danced with Mary",
             "corr_ioi_sentences": "Anna sang and Paul danced with Lisa"}]
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        out = get_task("ioi").encode_rows(rows, tok)
    assert len(out) == 1


# ----------------------------------------------------------------------------- generators


def test_ioi_held_out_templates_are_the_originals():
    ioi = load_script("prepare_ioi")
    templates = ioi.load_templates(REPO / "data" / "helper_files" / "ioi_templates.json")
    assert len(templates) == 30
    assert ioi.held_out(templates) == {("baba", 10), ("baba", 1), ("abba", 0), ("abba", 11)}


def test_ioi_large_train_split_on_demand_changes_no_other(tmp_path, tok_path):
    from datasets import Dataset, load_from_disk

    ioi = load_script("prepare_ioi")
    small, big = tmp_path / "small", tmp_path / "big"
    base = ["--tokenizer", str(tok_path), "--n_train", "10", "--n_train_400", "20", "--n_validation", "10",
            "--n_test", "10"]
    ioi.main([*base, "--out", str(small)])
    ioi.main([*base, "--out", str(big), "--n_train_100k", "60"])
    a, b = load_from_disk(str(small)), load_from_disk(str(big))
    for split in a:
        assert a[split]["ioi_sentences"] == b[split]["ioi_sentences"], split
    large = Dataset.from_parquet(str(big / "train_100k.parquet"))
    assert len(large) == 60 and large["ioi_sentences"][:20] == b["train_400"]["ioi_sentences"]
    assert len(load_rows(get_task("ioi"), big, "train_100k")) == 60


def test_boolean_generator_draws_the_originals_expressions(tmp_path, tok_path):
    from datasets import load_from_disk

    be = load_script("prepare_boolean_expressions")
    out = tmp_path / "be"
    be.main(["--tokenizer", str(tok_path), "--out", str(out), "--num_examples", "2000"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 1000, "val": 200, "test": 800}
    assert d["train"]["input"][:2] == ["( False or ( True and False ) ) or ( True and False ) is",
                                       "( False or ( not False ) ) and False is"]
    assert d["test"][0]["input"] == "( False or True ) or ( not False ) is"


def test_gt_generator_follows_the_originals_draws(tmp_path, tok_path):
    from datasets import load_from_disk

    gt = load_script("prepare_gt")
    out = tmp_path / "gt"
    gt.main(["--tokenizer", str(tok_path), "--out", str(out)])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 150, "validation": 150, "test": 5000}
    assert (d["validation"][0]["prefix"], d["validation"][0]["corr_prefix"]) == (
        "The outcome lasted from 1041 to 10", "The outcome lasted from 1142 to 11")
    assert d["test"][0]["prefix"] == "The abduction lasted from 1940 to 19"
    # year-disjoint: one digits value per split here, none shared
    assert [sorted(set(d[s]["digits"])) for s in ("train", "validation", "test")] == [["91"], ["42"], ["41"]]


def test_gp_generator_follows_the_originals_draws(tmp_path, tok_path):
    from datasets import load_from_disk

    gp = load_script("prepare_gp")
    out = tmp_path / "gp"
    gp.main(["--tokenizer", str(tok_path), "--out", str(out), "--enforce_single_token", "--n_test", "1000"])
    d = load_from_disk(str(out))
    v = d["validation"][0]
    assert (v["prefix"], v["corr_prefix"]) == ("So Charles shows up to all your events, doesn't",
                                               "So Bella shows up to all your events, doesn't")
    assert d["test"][0]["prefix"] == "So Alex is always learning something new, isn't"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(get_task("gp").encode_rows(list(d["test"]), gp.load_tokenizer(str(tok_path)))) == 1000


def test_helper_files_hold_the_originals_lists():
    helpers = REPO / "data" / "helper_files"
    assert len(json.loads((helpers / "gt_templates.json").read_text())["templates"]) == 6
    assert len(json.loads((helpers / "gp_templates.json").read_text())["templates"]) == 30
    names = json.loads((helpers / "names.json").read_text())
    assert len(names["girls"]) == len(names["boys"]) == 1000
    nouns = [l for l in (helpers / "gt_nouns.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert len(nouns) == 120 and nouns[0] == "abduction" and nouns[-1] == "work"
    ioi_names = [l for l in (helpers / "ioi_names.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert len(ioi_names) == 109
