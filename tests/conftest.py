import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Test models are tiny: on a 2-core machine intra-op threads only add synchronisation.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = REPO / "data" / "models" / "smollm2-135m"


def ensure_tokenizer() -> None:
    """The SmolLM2 tokenizer the tiny models share (setup.sh writes it; build it if absent)."""
    if not (TOKENIZER_DIR / "tokenizer.json").exists():
        subprocess.run([sys.executable, "-m", "edge_pruning.smollm2"], check=True)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer random GPT-2 checkpoint with the SmolLM2 tokenizer, for end-to-end runs
    of the scripts. Read-only: a test that damages a checkpoint copies it first."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    ensure_tokenizer()
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(tok), n_positions=256, initializer_range=0.2)
    path = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
