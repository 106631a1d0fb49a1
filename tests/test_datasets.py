"""Task dataset generators, shipped datasets, boolean prompts and custom JSONL parsing.

Generators are run in-process (their ``main(argv)``) on small counts into a
temporary directory, with the SmolLM2 tokenizer (built by
``edge_pruning.smollm2`` if missing).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edge_pruning.boolean_prompts import (
    FEW_SHOT_EXAMPLES,
    continuation,
    evaluate,
    few_shot_prompt,
    instruction_prompt,
    n_literals,
    original_few_shot_prompt,
    original_instruction_prompt,
    paren_depth,
    prompt_for,
    strip_is,
    target,
)
from edge_pruning.custom_data import (
    CustomDatasetError,
    CustomExample,
    check_token_lengths,
    load_custom_dataset,
    parse_custom_jsonl,
    split_examples,
)
from edge_pruning.smollm2 import DEFAULT_OUTPUT, ensure_smollm2

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "data" / "scripts"
HELPERS = REPO_ROOT / "data" / "helper_files"
SHIPPED = REPO_ROOT / "data" / "datasets"


def load_script(name: str) -> ModuleType:
    """Import data/scripts/<name>.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def helper_list(file: str) -> list[str]:
    return [l.strip() for l in (HELPERS / file).read_text().splitlines() if l.strip() and not l.startswith("#")]


NAMES = json.loads((HELPERS / "names.json").read_text())


@pytest.fixture(scope="session")
def tok_path() -> Path:
    return ensure_smollm2(DEFAULT_OUTPUT)


@pytest.fixture(scope="session")
def tok(tok_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok_path)


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def rows(ds) -> list[dict]:
    return [dict(r) for r in ds]


def lengths(tok, texts) -> list[int]:
    return [len(x) for x in tok(list(texts), add_special_tokens=False)["input_ids"]]


# ----------------------------------------------------------------------------- IOI


def check_ioi_rows(tok, data: list[dict]) -> None:
    """Single-token names; the original's corruption (4 fresh distinct names in the four
    name slots); our columns agree with the original's."""
    bench = set(helper_list("ioi_names.txt"))
    pool = set(NAMES["boys"]) | set(NAMES["girls"])
    for r in data:
        a, b = r["a"], r["b"]
        assert a in bench and b in bench and a != b
        assert r["ioi_sentences"].split()[-1] == a and r["corr_ioi_sentences"].split()[-1] == r["corr_c"]
        corr = [r["corr_a"], r["corr_b"], r["corr_c"], r["corr_d"]]
        assert len(set(corr)) == 4 and not set(corr) & {a, b} and set(corr) <= pool
        assert all(len(ids(tok, " " + n)) == 1 for n in [a, b, *corr])
        assert (r["clean"], r["target"], r["distractor"]) == (r["ioi_sentences"].rsplit(" ", 1)[0], " " + a, " " + b)
        assert r["corrupted"] == r["corr_ioi_sentences"].rsplit(" ", 1)[0]
        x, y = ids(tok, r["clean"]), ids(tok, r["corrupted"])
        assert len(x) == len(y)
        diff = [i for i, (p, q) in enumerate(zip(x, y)) if p != q]
        assert len(diff) == 3, r  # X, Y, Z in the prompt (the answer slot is cut off)
        expected = [a, b, b] if r["order"] == "abba" else [b, a, b]
        assert [tok.decode([x[i]]).strip() for i in diff] == expected, r


def test_prepare_ioi(tmp_path, tok, tok_path):
    from datasets import load_from_disk

    ioi = load_script("prepare_ioi")
    out = tmp_path / "ioi"
    assert ioi.main(["--tokenizer", str(tok_path), "--out", str(out), "--seed", "3", "--n_train", "20",
                     "--n_train_400", "40", "--n_validation", "30", "--n_test", "60"]) == 0
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 20, "train_400": 40, "validation": 30, "test": 60}
    assert d["train"].column_names == [
        "ioi_sentences", "corr_ioi_sentences", "a", "b", "corr_a", "corr_b", "corr_c", "corr_d", "place", "object",
        "order", "template_index", "clean", "corrupted", "target", "distractor"]
    assert not (out / "train_100k.parquet").exists()  # only on demand
    assert list(d["train_400"]["clean"][:20]) == list(d["train"]["clean"])
    for split in ("train_400", "validation", "test"):
        check_ioi_rows(tok, rows(d[split]))
    train = set(d["train_400"]["clean"])
    assert not train & set(d["validation"]["clean"])
    assert not (train | set(d["validation"]["clean"])) & set(d["test"]["clean"])
    held = ioi.held_out(ioi.load_templates(HELPERS / "ioi_templates.json"))
    used = {(r["order"], r["template_index"]) for s in ("train_400", "validation") for r in d[s]}
    assert not used & held and {(r["order"], r["template_index"]) for r in d["test"]} <= held
    info = json.loads((out / "generation_info.json").read_text())
    assert info["names_dropped_not_single_token"] == ["Brandon", "Connor", "Kyle"] and len(info["names"]) == 106


def test_prepare_ioi_single_template_and_split_option(tmp_path, tok_path):
    from datasets import load_from_disk

    ioi = load_script("prepare_ioi")
    out = tmp_path / "ioi-t1"
    ioi.main(["--tokenizer", str(tok_path), "--out", str(out), "--single_template", "--n_train", "10",
              "--n_train_400", "20", "--n_train_100k", "30", "--n_validation", "10", "--n_test", "10",
              "--train_100k_as", "split"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 10, "train_400": 20, "train_100k": 30,
                                                 "validation": 10, "test": 10}
    for split in d:
        assert {(r["order"], r["template_index"]) for r in d[split]} == {("abba", 5)}
    assert not set(d["test"]["clean"]) & (set(d["train_100k"]["clean"]) | set(d["validation"]["clean"]))
    assert not (out / "train_100k.parquet").exists()


# ----------------------------------------------------------------------------- GT


def check_gt_rows(tok, data: list[dict]) -> None:
    templates = json.loads((HELPERS / "gt_templates.json").read_text())["templates"]
    nouns = set(helper_list("gt_nouns.txt"))
    for r in data:
        assert r["template"] in templates and r["noun"] in nouns and r["corr_noun"] == r["noun"]
        c, d = int(r["century"]), int(r["digits"])
        assert 10 <= c <= 21 and 1 <= d <= 98
        # the prompt names the previous valid year (with SmolLM2 every year is valid)
        assert r["prefix"] == r["template"].format(noun=r["noun"], start=f"{c}{d - 1:02d}", end_century=str(c))
        assert r["corr_prefix"] == r["template"].format(noun=r["noun"], start=r["corr_century"] + r["corr_digits"],
                                                        end_century=r["corr_century"])
        assert 10 <= int(r["corr_century"]) <= 21 and 1 <= int(r["corr_digits"]) <= 98
    assert lengths(tok, [r["prefix"] for r in data]) == lengths(tok, [r["corr_prefix"] for r in data])


def test_prepare_gt(tmp_path, tok, tok_path):
    from datasets import Dataset, load_from_disk

    gt = load_script("prepare_gt")
    out = tmp_path / "gt"
    gt.main(["--tokenizer", str(tok_path), "--out", str(out), "--n_train", "15", "--n_validation", "15",
             "--n_test", "40", "--n_train_80k", "300", "--seed", "1"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 15, "validation": 15, "test": 40}
    assert d["train"].column_names == ["template", "century", "noun", "digits", "prefix", "corr_noun",
                                       "corr_century", "corr_digits", "corr_prefix"]
    big = Dataset.from_parquet(str(out / "train_80k.parquet"))
    assert len(big) == 300
    digits = {s: set(d[s]["digits"]) for s in d}
    assert not digits["train"] & digits["validation"] and not (digits["train"] | digits["validation"]) & digits["test"]
    assert not set(big["digits"]) & (digits["validation"] | digits["test"])
    for split in d:
        check_gt_rows(tok, rows(d[split]))
    check_gt_rows(tok, rows(big))


# ----------------------------------------------------------------------------- GP


def check_gp_rows(tok, data: list[dict]) -> None:
    templates = json.loads((HELPERS / "gp_templates.json").read_text())["templates"]
    for r in data:
        assert r["template"] in templates and r["prefix"] == r["template"].format(name=r["name"])
        assert r["corr_prefix"] == r["template"].format(name=r["corr_name"])
        assert {r["pronoun"], r["corr_pronoun"]} == {"he", "she"}
        assert r["name"] in NAMES["girls" if r["pronoun"] == "she" else "boys"]
        assert r["corr_name"] in NAMES["girls" if r["corr_pronoun"] == "she" else "boys"]
    assert lengths(tok, [r["prefix"] for r in data]) == lengths(tok, [r["corr_prefix"] for r in data])
    assert len(ids(tok, " he")) == len(ids(tok, " she")) == 1


def test_prepare_gp(tmp_path, tok, tok_path):
    from datasets import load_from_disk

    gp = load_script("prepare_gp")
    out = tmp_path / "gp"
    gp.main(["--tokenizer", str(tok_path), "--out", str(out), "--n_train", "15", "--n_validation", "15",
             "--n_test", "30", "--seed", "3"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 15, "validation": 15, "test": 30}
    assert d["train"].column_names == ["prefix", "pronoun", "template", "name", "corr_prefix", "corr_name",
                                       "corr_pronoun"]
    for split in d:
        check_gp_rows(tok, rows(d[split]))
    assert len({r["prefix"] for s in d for r in d[s]}) == 60
    out2 = tmp_path / "gp2"
    gp.main(["--tokenizer", str(tok_path), "--out", str(out2), "--n_train", "5", "--n_validation", "5",
             "--n_test", "5", "--drop_ambiguous"])
    info = json.loads((out2 / "generation_info.json").read_text())
    assert info["ambiguous_names_kept"] == [] and info["names_each"] < 1000


# ----------------------------------------------------------------------------- Boolean


def test_boolean_prompts_and_evaluator():
    assert evaluate("True or False and False") is True  # and binds tighter
    assert evaluate("not True or True") is True  # not binds tightest
    assert evaluate("not ( True or True )") is False
    assert evaluate("not not ( not ( False ) )") is True
    for bad in ("True and", "( True", "True False", "maybe", "True )"):
        with pytest.raises(ValueError):
            evaluate(bad)
    for expr, answer in FEW_SHOT_EXAMPLES:
        assert str(evaluate(expr)) == answer
    assert instruction_prompt("True and False") == (
        "Evaluate the result of a random Boolean expression.\n\nQ: True and False\nA:")
    fs = few_shot_prompt("True and False")
    assert fs.startswith("Evaluate the result of a random Boolean expression.\n\nQ: ")
    assert fs.endswith("\n\nQ: True and False\nA:") and fs.count("Q: ") == 4
    assert target("True") == " True" and target(False) == " False"
    # the original's formats
    assert original_few_shot_prompt("True and False") == (
        "(True and False) or (False and True) is False\n(True or (not True)) and False is False\n"
        "(not (True and False)) or (False and True) is True\nTrue and False is")
    assert original_instruction_prompt("True and False") == (
        "[INST] <<SYS>>\nEvaluate the following boolean expression as either 'True' or 'False'.\n<</SYS>>\n\n"
        "True and False [/INST] '")
    assert continuation("original", False, "True") == "True" and continuation("original", True, "False") == " False"
    assert strip_is("not True is") == "not True"


def check_boolean_rows(tok, data: list[dict]) -> None:
    formats = [prompt_for(style, fs) for style in ("original", "qa") for fs in (True, False)]
    for r in data:
        e, c = r["input"], r["corr_input"]
        assert e.endswith(" is") and c.endswith(" is")
        e, c = e[:-3], c[:-3]
        assert 1 <= n_literals(e) == r["length"] <= 6 and 0 <= r["depth"] <= 3 and paren_depth(e) <= 3
        assert "not ( not ( not" not in e
        assert r["target"] == str(evaluate(e)) and r["corr_target"] == str(evaluate(c)) != r["target"]
        diff = [(x, y) for x, y in zip(e.split(), c.split()) if x != y]
        assert len(e.split()) == len(c.split()) and len(diff) == r["corr_flips"] >= 1
        assert all({x, y} in ({"True", "False"}, {"and", "or"}) for x, y in diff)
        for fmt in formats:
            assert len(ids(tok, fmt(e))) == len(ids(tok, fmt(c)))


def test_prepare_boolean_expressions(tmp_path, tok, tok_path):
    from datasets import load_from_disk

    be = load_script("prepare_boolean_expressions")
    out = tmp_path / "be"
    be.main(["--tokenizer", str(tok_path), "--out", str(out), "--num_examples", "400", "--seed", "5"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 200, "val": 40, "test": 160}
    assert d["train"].column_names == ["input", "target", "length", "depth", "corr_input", "corr_target", "corr_flips"]
    all_rows = [r for s in d for r in d[s]]
    assert len({r["input"] for r in all_rows}) == len(all_rows)
    check_boolean_rows(tok, all_rows)
    assert len(ids(tok, " True")) == 1 and len(ids(tok, " False")) == 1


# ----------------------------------------------------------------------------- shipped


def test_shipped_datasets(tok):
    from datasets import load_from_disk

    from edge_pruning.tasks import get_task, load_rows

    expect = {
        "ioi": {"train": 200, "train_400": 400, "validation": 200, "test": 10000},
        "ioi-t1": {"train": 200, "train_400": 400, "validation": 200, "test": 10000},
        "gt": {"train": 150, "validation": 150, "test": 5000},
        "gp": {"train": 150, "validation": 150, "test": 3000},
        "boolean_expressions": {"train": 3840, "val": 767, "test": 3070},
    }
    checks = {"ioi": check_ioi_rows, "ioi-t1": check_ioi_rows, "gt": check_gt_rows, "gp": check_gp_rows,
              "boolean_expressions": check_boolean_rows}
    tasks = {"ioi": "ioi", "ioi-t1": "ioi-t1", "gt": "gt", "gp": "gp", "boolean_expressions": "boolean_expressions_fs"}
    for name, sizes in expect.items():
        d = load_from_disk(str(SHIPPED / name))
        assert {k: len(v) for k, v in d.items()} == sizes, name
        assert not list((SHIPPED / name).glob("*.parquet")), name  # large splits: generated on demand
        checks[name](tok, rows(d["train"]) + rows(d[next(s for s in d if s in ("val", "validation"))]))
        task = get_task(tasks[name])
        assert len(task.encode_rows(load_rows(task, SHIPPED / name, "validation"), tok)) == len(
            d["val" if name == "boolean_expressions" else "validation"])
    t1 = load_from_disk(str(SHIPPED / "ioi-t1"))
    assert {(r["order"], r["template_index"]) for r in t1["test"]} == {("abba", 5)}


# ----------------------------------------------------------------------------- custom JSONL


def write(tmp_path: Path, text: str, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = '{"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 4 = <predict>5</predict>"}'


def test_custom_parse_and_split(tmp_path):
    path = write(tmp_path, "\n".join([
        GOOD,
        '{"clean": "5 + 1 = <predict>6</predict>", "corrupted": "1 + 1 = <predict>2</predict>", "split": "train"}',
        "",
        '{"clean": "2 + 2 = <predict>4</predict>", "corrupted": "2 + 4 = <predict>6</predict>", "split": "validation"}',
        '{"clean": "3 + 3 = <predict>6</predict>", "corrupted": "3 + 1 = <predict>4</predict>", "split": null}',
    ]) + "\n")
    ex = parse_custom_jsonl(path)
    assert ex[0] == CustomExample("1 + 2 = ", "3", "1 + 4 = ", "5", None, 1)
    assert [e.line for e in ex] == [1, 2, 4, 5] and ex[0].clean == "1 + 2 = 3"
    split = split_examples(ex)
    assert [e.line for e in split["train"]] == [1, 2, 5]
    assert [e.line for e in split["validation"]] == [1, 4, 5]
    # no split keys at all: everything serves both
    both = split_examples(parse_custom_jsonl(write(tmp_path, GOOD + "\n" + GOOD, "b.jsonl")))
    assert len(both["train"]) == len(both["validation"]) == 2
    # only train examples: validation would be empty
    only = parse_custom_jsonl(write(tmp_path, GOOD[:-1] + ', "split": "train"}\n', "c.jsonl"))
    with pytest.raises(CustomDatasetError, match="validation"):
        split_examples(only)
    assert split_examples(only, require_nonempty=False)["validation"] == []


def test_custom_malformed_multiline_object_reported_at_its_first_line(tmp_path):
    text = (GOOD + "\n\n"  # lines 1-2
            '{\n  "clean": "1 + 2 = <predict>3</predict>",\n  "corrupted": \n}\n')  # starts on line 3, breaks on 6
    with pytest.raises(CustomDatasetError, match="invalid JSON.*on line 6") as info:
        parse_custom_jsonl(write(tmp_path, text))
    assert info.value.line == 3 and str(info.value).startswith(f"{tmp_path / 'data.jsonl'}:3:")


def test_custom_pretty_printed_stream(tmp_path):
    text = ('{\n  "clean": "1 + 2 = <predict>3</predict>",\n  "corrupted": "1 + 4 = <predict>5</predict>"\n}\n'
            '{\n  "clean": "5 + 1 = <predict>6</predict>",\n  "corrupted": "1 + 1 = <predict>2</predict>"\n}\n')
    ex = parse_custom_jsonl(write(tmp_path, text))
    assert [e.line for e in ex] == [1, 5] and ex[1].clean_answer == "6"


@pytest.mark.parametrize("text, line, match", [
    ("", 1, "empty file"),
    ("\n  \n", 1, "empty file"),
    (GOOD + '\n{"clean": "1 + 1 = <predict>2</predict>", "corrupted": }\n', 2, "invalid JSON"),
    (GOOD + "\n" + GOOD + ",\n", 2, "invalid JSON"),
    ('[' + GOOD + ']\n', 1, "expected a JSON object"),
    (GOOD + '\n{"clean": "1 + 1 = <predict>2</predict>"}\n', 2, "missing key 'corrupted'"),
    ('{"corrupted": "1 + 1 = <predict>2</predict>"}\n', 1, "missing key 'clean'"),
    ('{"clean": 3, "corrupted": "1 + 1 = <predict>2</predict>"}\n', 1, "must be a string"),
    ('{"clean": "1 + 1 = 2", "corrupted": "1 + 1 = <predict>2</predict>"}\n', 1, "exactly one"),
    ('{"clean": "1 <predict>+</predict> 1 = <predict>2</predict>", "corrupted": "1 + 1 = <predict>2</predict>"}\n',
     1, "exactly one"),
    ('{"clean": "1 + 1 = <predict>2", "corrupted": "1 + 1 = <predict>2</predict>"}\n', 1, "exactly one"),
    ('{"clean": "1 + 1 = </predict>2<predict>", "corrupted": "1 + 1 = <predict>2</predict>"}\n', 1, "before"),
    ('{"clean": "1 + 1 = <predict>2</predict>", "corrupted": "1 + 1 = <predict>2</predict> ok"}\n', 1,
     "text after"),
    ('{"clean": "1 + 1 = <predict></predict>", "corrupted": "1 + 1 = <predict>2</predict>"}\n', 1, "empty"),
    ('{"clean": "<predict>2</predict>", "corrupted": "1 + 1 = <predict>2</predict>"}\n', 1, "nothing before"),
    (GOOD + "\n" + GOOD[:-1] + ', "split": "test"}\n', 2, "unknown split"),
    (GOOD[:-1] + ', "spilt": "train"}\n', 1, "unknown key"),
])
def test_custom_errors(tmp_path, text, line, match):
    path = write(tmp_path, text)
    with pytest.raises(CustomDatasetError, match=match) as info:
        parse_custom_jsonl(path)
    assert info.value.line == line and info.value.path == str(path)
    assert str(info.value).startswith(f"{path}:{line}:")


def test_custom_token_lengths(tmp_path, tok):
    path = write(tmp_path, GOOD + '\n{"clean": "1 + 2 = <predict>3</predict>", '
                                  '"corrupted": "1 + 23 = <predict>5</predict>"}\n'
                                  '{"clean": "1 + 2 = <predict>3</predict>", '
                                  '"corrupted": "1 + 4 = <predict>15</predict>"}\n')
    ex = parse_custom_jsonl(path)
    check_token_lengths(ex[:1], tok)
    with pytest.raises(CustomDatasetError, match="prefix") as info:
        check_token_lengths(ex, tok, path)
    assert info.value.line == 2
    # the original drops the corrupted answer, so its length does not matter ...
    check_token_lengths(ex[2:], tok)
    # ... unless the corrupted text keeps it (ours)
    with pytest.raises(CustomDatasetError, match="corrupted text") as info:
        check_token_lengths(ex[2:], tok, corrupted="keep_answer")
    assert info.value.line == 3


def test_shipped_custom_example(tok):
    splits = load_custom_dataset(SHIPPED / "example_custom.jsonl", tok)
    examples = parse_custom_jsonl(SHIPPED / "example_custom.jsonl")
    assert len(examples) == 12
    assert {e.split for e in examples} == {None, "train", "validation"}
    n_both = sum(e.split is None for e in examples)
    assert len(splits["train"]) + len(splits["validation"]) == 12 + n_both
