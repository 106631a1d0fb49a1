"""Architecture registry: which circuit-model class serves which `--arch`."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

ARCHITECTURES: dict[str, tuple[str, str]] = {
    "fpt2": ("modeling.modeling_fpt2", "FPT2LMHeadModel"),
    "fllama": ("modeling.modeling_fllama", "FLlamaForCausalLM"),
    "erazr": ("modeling.modeling_erazr", "ErazrModel"),
}

# model_type in a checkpoint's config -> architecture
MODEL_TYPES = {"gpt2": "fpt2", "fpt2": "fpt2", "llama": "fllama", "fllama": "fllama", "erazr": "erazr"}


def model_class(arch: str):
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    module, name = ARCHITECTURES[arch]
    return getattr(importlib.import_module(module), name)


def read_config_dict(path) -> dict:
    """A checkpoint's config.json as a dict (a local directory or a hub name)."""
    from transformers.utils import cached_file

    local = Path(path) / "config.json"
    file = local if local.is_file() else cached_file(str(path), "config.json")
    with open(file) as f:
        return json.load(f)


def arch_of_checkpoint(path: str) -> str:
    """The architecture of a checkpoint, from its config's model_type."""
    config = read_config_dict(path)
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{path}: model_type {model_type!r} is not supported (known: {', '.join(MODEL_TYPES)})")
    return MODEL_TYPES[model_type]
