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


# The attribution-style tests' models and examples: token ids below this, 0 kept for padding.
ATTRIBUTION_VOCAB = 61


@pytest.fixture(scope="module")
def attribution_gpt2(tmp_path_factory):
    """A 2-layer random GPT-2 as a circuit model with embedding nodes, weights frozen
    (one per test module, so a module's mask edits stay inside it)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from modeling.modeling_fpt2 import FPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=ATTRIBUTION_VOCAB, n_positions=32, initializer_range=0.3)
    path = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(cfg).save_pretrained(path)
    m = FPT2LMHeadModel.from_pretrained(path, with_embedding_nodes=True).eval()
    m.freeze_model_weights()
    return m


def random_encoded_examples(lengths: tuple[int, ...], seed: int = 5) -> list:
    """IOI-shaped examples of random ids: clean and corrupted ids, the last position
    scored, a random target and distractor."""
    from edge_pruning.tasks import Encoded

    g = torch.Generator().manual_seed(seed)
    out = []
    for length in lengths:
        ids = torch.randint(1, ATTRIBUTION_VOCAB, (length,), generator=g).tolist()
        corr = torch.randint(1, ATTRIBUTION_VOCAB, (length,), generator=g).tolist()
        target, wrong = torch.randint(1, ATTRIBUTION_VOCAB, (2,), generator=g).tolist()
        out.append(Encoded(ids, corr, [length - 1], [target], wrong))
    return out
