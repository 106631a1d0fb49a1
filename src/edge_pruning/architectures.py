"""The supported architectures: which circuit-model class serves which checkpoint.

Every checkpoint's config.json names its `model_type`, transformers' (`qwen2`) or
ours once pruned (`fqwen2`); both resolve to the same circuit class. Classes are
imported on first use, so that importing `edge_pruning` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """One circuit-model family: its module and LM class, and the model types it loads."""

    name: str  # ours, also the `--arch` name
    module: str
    class_name: str
    model_types: tuple[str, ...]  # transformers' and ours

    def model_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.class_name)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("fpt2", "modeling.modeling_fpt2", "FPT2LMHeadModel", ("gpt2", "fpt2")),
        Architecture("fllama", "modeling.modeling_fllama", "FLlamaForCausalLM", ("llama", "fllama")),
        Architecture("fqwen2", "modeling.modeling_fqwen2", "FQwen2ForCausalLM", ("qwen2", "fqwen2")),
        Architecture("fqwen3", "modeling.modeling_fqwen3", "FQwen3ForCausalLM", ("qwen3", "fqwen3")),
        Architecture("fmistral", "modeling.modeling_fmistral", "FMistralForCausalLM", ("mistral", "fmistral")),
        Architecture("fgpt_neox", "modeling.modeling_fgpt_neox", "FGPTNeoXForCausalLM", ("gpt_neox", "fgpt_neox")),
        Architecture("fgemma", "modeling.modeling_fgemma", "FGemmaForCausalLM", ("gemma", "fgemma")),
        Architecture("fgemma2", "modeling.modeling_fgemma2", "FGemma2ForCausalLM", ("gemma2", "fgemma2")),
        Architecture("erazr", "modeling.modeling_erazr", "ErazrModel", ("erazr",)),
    )
}

MODEL_TYPES: dict[str, Architecture] = {t: a for a in ARCHITECTURES.values() for t in a.model_types}


def architecture_of(model_type: str) -> Architecture:
    """The architecture serving a config's `model_type`, or a clear error."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not supported (supported: {', '.join(MODEL_TYPES)})")
    return MODEL_TYPES[model_type]


def circuit_class(path: str | os.PathLike) -> type:
    """The circuit-model class for a checkpoint (a local directory or a hub name)."""
    from .models import read_config_dict

    model_type = read_config_dict(os.fspath(path)).get("model_type")
    try:
        return architecture_of(model_type).model_class()
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from None


def from_pretrained(path: str | os.PathLike, **kwargs):
    """The circuit model of any supported checkpoint: transformers' own (masks start at
    N(10, 0.01)), ours, or one saved by the original code. `kwargs` go to the class's
    `from_pretrained` (`with_embedding_nodes`, `ungroup_kv`, `dtype`, ...)."""
    return circuit_class(path).from_pretrained(path, **kwargs)
