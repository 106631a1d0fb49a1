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
    evaluate,
    few_shot_prompt,
    instruction_prompt,
    n_literals,
    paren_depth,
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


def helper_names(file: str) -> set[str]:
    return {l.strip() for l in (HELPERS / file).read_text().splitlines()
            if l.strip() and not l.startswith("#")}


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


# ----------------------------------------------------------------------------- IOI


def check_ioi_rows(tok, data: list[dict]) -> None:
    """Names are single ' Name' tokens; exactly the 3 name slots differ; XYZ corruption."""
    for r in data:
        io, s = ids(tok, r["target"]), ids(tok, r["distractor"])
        assert len(io) == 1 and len(s) == 1 and r["target"][0] == " " and r["distractor"][0] == " "
        a, b = ids(tok, r["clean"]), ids(tok, r["corrupted"])
        assert len(a) == len(b)
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        assert len(diff) == 3, r
        clean_names = [a[i] for i in diff]
        expected = [io[0], s[0], s[0]] if r["order"] == "ABBA" else [s[0], io[0], s[0]]
        assert clean_names == expected, r
        corr_names = [b[i] for i in diff]
        assert len(set(corr_names)) == 3 and not set(corr_names) & {io[0], s[0]}, r
        for t in corr_names:  # corrupted slots hold single-token names too
            assert tok.decode([t]).strip() in helper_names("names_female.txt") | helper_names("names_male.txt")


def test_prepare_ioi(tmp_path, tok, tok_path):
    from datasets import Dataset, load_from_disk

    ioi = load_script("prepare_ioi")
    out = tmp_path / "ioi"
    assert ioi.main(["--tokenizer", str(tok_path), "--out", str(out), "--seed", "3", "--n_train", "20",
                     "--n_train_400", "40", "--n_train_100k", "120", "--n_validation", "30",
                     "--n_test", "60"]) == 0
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 20, "train_400": 40, "validation": 30, "test": 60}
    assert d["train"].column_names == ["clean", "corrupted", "target", "distractor", "template_id", "order"]
    big = Dataset.from_parquet(str(out / "train_100k.parquet"))
    assert len(big) == 120
    assert list(big["clean"][:40]) == list(d["train_400"]["clean"])
    assert list(d["train_400"]["clean"][:20]) == list(d["train"]["clean"])
    for split in ("train_400", "validation", "test"):
        check_ioi_rows(tok, rows(d[split]))
    seen_train = set(big["clean"])
    assert not seen_train & set(d["validation"]["clean"])
    assert not (seen_train | set(d["validation"]["clean"])) & set(d["test"]["clean"])

    templates = ioi.build_templates(json.loads((HELPERS / "ioi_templates.json").read_text()))
    train_t = [t for t in templates if not t.held_out]
    assert sum(t.order == "ABBA" for t in train_t) == 15 and sum(t.order == "BABA" for t in train_t) == 15
    train_ids = set(big["template_id"]) | set(d["validation"]["template_id"])
    assert train_ids <= {t.template_id for t in train_t}
    assert set(d["test"]["template_id"]) <= {t.template_id for t in templates if t.held_out}
    assert not train_ids & set(d["test"]["template_id"])
    info = json.loads((out / "generation_info.json").read_text())
    assert all(len(ids(tok, " " + n)) == 1 for n in info["names"])


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
        assert set(d[split]["template_id"]) == {0} and set(d[split]["order"]) == {"ABBA"}
    assert not set(d["test"]["clean"]) & (set(d["train_100k"]["clean"]) | set(d["validation"]["clean"]))
    assert not (out / "train_100k.parquet").exists()


# ----------------------------------------------------------------------------- GT


def test_prepare_gt(tmp_path, tok, tok_path):
    from datasets import load_from_disk

    gt = load_script("prepare_gt")
    out = tmp_path / "gt"
    gt.main(["--tokenizer", str(tok_path), "--out", str(out), "--n_train", "15", "--n_validation", "15",
             "--n_test", "40"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 15, "validation": 15, "test": 40}
    assert d["train"].column_names == ["prefix", "century", "start_yy", "corr_prefix", "corr_start_yy"]
    prompts = set()
    for split in d:
        for r in d[split]:
            yy, cc = r["start_yy"], r["century"]
            assert 2 <= yy <= 98 and r["corr_start_yy"] == 1
            assert r["prefix"].endswith(f"from the year {cc}{yy:02d} to the year ")
            assert r["corr_prefix"] == r["prefix"].replace(f"{cc}{yy:02d}", f"{cc}01")
            assert len(ids(tok, r["prefix"] + cc)) == len(ids(tok, r["corr_prefix"] + cc))
            prompts.add(r["prefix"])
    assert len(prompts) == 70  # splits are disjoint


# ----------------------------------------------------------------------------- GP


def test_prepare_gp(tmp_path, tok, tok_path):
    from datasets import load_from_disk

    gp = load_script("prepare_gp")
    out = tmp_path / "gp"
    gp.main(["--tokenizer", str(tok_path), "--out", str(out), "--n_train", "15", "--n_validation", "15",
             "--n_test", "30"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 15, "validation": 15, "test": 30}
    female, male = helper_names("names_female.txt"), helper_names("names_male.txt")
    templates = json.loads((HELPERS / "gp_templates.json").read_text())["templates"]
    cleans = set()
    for split in d:
        for r in d[split]:
            assert {r["target"], r["distractor"]} == {" she", " he"}
            assert len(ids(tok, r["target"])) == 1 and len(ids(tok, r["distractor"])) == 1
            a, b = ids(tok, r["clean"]), ids(tok, r["corrupted"])
            assert len(a) == len(b) and a != b
            # recover the two names from the template
            tpl = next(t for t in templates
                       if r["clean"].startswith(t.split("{name}")[0]) and r["clean"].endswith(t.split("{name}")[1]))
            pre, post = tpl.split("{name}")
            name, other = r["clean"][len(pre): len(r["clean"]) - len(post)], r["corrupted"][len(pre): len(r["corrupted"]) - len(post)]
            assert name != other
            assert (name in female) == (r["target"] == " she") and (name in male) == (r["target"] == " he")
            assert (other in female) == (name in male)  # gender flips
            assert len(ids(tok, " " + name)) == len(ids(tok, " " + other))
            cleans.add(r["clean"])
    assert len(cleans) == 60
    assert sum(r["target"] == " she" for r in d["test"]) == 15  # balanced


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


def test_prepare_boolean_expressions(tmp_path, tok, tok_path):
    from datasets import load_from_disk

    be = load_script("prepare_boolean_expressions")
    out = tmp_path / "be"
    be.main(["--tokenizer", str(tok_path), "--out", str(out), "--max_total", "400", "--seed", "5"])
    d = load_from_disk(str(out))
    assert {k: len(v) for k, v in d.items()} == {"train": 200, "validation": 40, "test": 160}
    assert d["train"].column_names == ["expression", "answer", "corrupted_expression", "corrupted_answer"]
    all_rows = [r for s in d for r in d[s]]
    exprs = [r["expression"] for r in all_rows]
    assert len(set(exprs)) == len(exprs)
    assert not set(exprs) & {e for e, _ in FEW_SHOT_EXAMPLES}
    assert sum(r["answer"] == "True" for r in all_rows) == 200
    for r in all_rows:
        e, c = r["expression"], r["corrupted_expression"]
        assert 1 <= n_literals(e) <= 6 and paren_depth(e) <= 3
        assert r["answer"] == str(evaluate(e)) and r["corrupted_answer"] == str(evaluate(c))
        assert r["answer"] != r["corrupted_answer"]
        diff = [(x, y) for x, y in zip(e.split(), c.split()) if x != y]
        assert len(e.split()) == len(c.split()) and len(diff) == 1
        assert set(diff[0]) in ({"True", "False"}, {"and", "or"})
        for fmt in (instruction_prompt, few_shot_prompt):
            assert len(ids(tok, fmt(e))) == len(ids(tok, fmt(c)))
    assert len(ids(tok, " True")) == 1 and len(ids(tok, " False")) == 1


# ----------------------------------------------------------------------------- shipped


def test_shipped_datasets(tok):
    from datasets import Dataset, load_from_disk

    expect = {
        "ioi": {"train": 200, "train_400": 400, "validation": 200, "test": 10000},
        "ioi-t1": {"train": 200, "train_400": 400, "validation": 200, "test": 10000},
        "gt": {"train": 150, "validation": 150, "test": 1000},
        "gp": {"train": 150, "validation": 150, "test": 1000},
        "boolean_expressions": {"train": 2500, "validation": 500, "test": 2000},
    }
    pairs = {"ioi": ("clean", "corrupted"), "ioi-t1": ("clean", "corrupted"), "gp": ("clean", "corrupted"),
             "boolean_expressions": ("expression", "corrupted_expression")}
    for name, sizes in expect.items():
        d = load_from_disk(str(SHIPPED / name))
        assert {k: len(v) for k, v in d.items()} == sizes, name
        for split in d:
            if name == "gt":
                cc = list(d[split]["century"])
                a = [p + c for p, c in zip(d[split]["prefix"], cc)]
                b = [p + c for p, c in zip(d[split]["corr_prefix"], cc)]
            else:
                a, b = list(d[split][pairs[name][0]]), list(d[split][pairs[name][1]])
            la = [len(x) for x in tok(a, add_special_tokens=False)["input_ids"]]
            lb = [len(x) for x in tok(b, add_special_tokens=False)["input_ids"]]
            assert la == lb, (name, split)
    for name in ("ioi", "ioi-t1"):
        d = load_from_disk(str(SHIPPED / name))
        big = Dataset.from_parquet(str(SHIPPED / name / "train_100k.parquet"))
        assert len(big) == 100_000
        assert list(big.select(range(400))["clean"]) == list(d["train_400"]["clean"])
        check_ioi_rows(tok, rows(d["validation"]))
        names = set(d["test"]["target"]) | set(d["test"]["distractor"]) | set(d["train_400"]["target"])
        assert all(len(ids(tok, n)) == 1 for n in names)


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
