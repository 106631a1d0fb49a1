"""Loading what a run needs: which circuit-model class serves which `--arch` (over
`architectures.ARCHITECTURES`), the checks that turn a missing, damaged or foreign
checkpoint into a clear error before any loader sees it, and the loaders of circuit
models, Tracr models, tokenizers and edges files."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import torch

from . import l0
from .architectures import ARCHITECTURES
from .architectures import MODEL_TYPES as _MODEL_TYPES
from .circuit import load_edges_json
from .errors import CheckpointError, UserError, one_line

logger = logging.getLogger("edge_pruning")

# model_type in a checkpoint's config -> architecture name (`--arch`)
MODEL_TYPES = {t: a.name for t, a in _MODEL_TYPES.items()}


def model_class(arch: str):
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch].model_class()


def looks_local(path: str | os.PathLike) -> bool:
    """A path rather than a hub name: it exists, or it is spelled like a path (a hub
    id is `name` or `namespace/name`, never absolute, never starting with '.' or '~')."""
    s = os.fspath(path)
    if os.path.exists(s):
        return True
    return s.startswith(("/", ".", "~")) or s.count("/") > 1 or "\\" in s or s.endswith((".json", ".pkl", ".safetensors"))


def check_checkpoint(path: str | os.PathLike, weights: bool = True) -> None:
    """Fail early and by name on a local checkpoint that is missing or damaged.

    Hub names are left to the hub client. A local directory must exist, hold a
    readable config.json and weight files whose headers cover the file (a truncated
    model.safetensors is named here instead of deep inside the loader)."""
    if not looks_local(path):
        return
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise CheckpointError("checkpoint directory not found", p)
    if not p.is_dir():
        raise CheckpointError("not a checkpoint directory (a file)", p)
    config = p / "config.json"
    if not config.is_file():
        raise CheckpointError("no config.json: not a checkpoint directory", p)
    try:
        json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"damaged config.json ({e})", config) from e
    if not weights:
        return
    files = sorted(p.glob("*.safetensors"))
    if not files and not any(p.glob("*.bin")) and not any(p.glob("*.pt")):
        raise CheckpointError("no weight files (model.safetensors) in checkpoint directory", p)
    from safetensors import safe_open

    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as e:  # safetensors raises its own (Rust) error type
            raise CheckpointError(f"damaged weight file ({e})", file) from e


def read_config_dict(path) -> dict:
    """A checkpoint's config.json as a dict (a local directory or a hub name)."""
    from transformers.utils import cached_file

    local = Path(path) / "config.json"
    if looks_local(path):
        check_checkpoint(path, weights=False)
        file = local
    else:
        file = cached_file(str(path), "config.json")
    with open(file) as f:
        return json.load(f)


def arch_of_checkpoint(path: str) -> str:
    """The architecture of a checkpoint, from its config's model_type."""
    config = read_config_dict(path)
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"model_type {model_type!r} is not supported (known: {', '.join(MODEL_TYPES)})", path
        )
    return MODEL_TYPES[model_type]


def check_architecture(path: str, arch: str) -> None:
    """`path` must be a checkpoint of `arch` (a GPT-2 script cannot prune a Llama)."""
    found = arch_of_checkpoint(path)
    if found != arch:
        model_type = read_config_dict(path).get("model_type")
        raise CheckpointError(f"a {model_type!r} checkpoint, but this entry point takes {arch} ({'/'.join(k for k, v in MODEL_TYPES.items() if v == arch)}) checkpoints", path)


def load_model(arch: str, path: str, **kwargs):
    """`model_class(arch).from_pretrained(path, **kwargs)` after the checks above."""
    check_checkpoint(path)
    if looks_local(path) or Path(path, "config.json").exists():
        check_architecture(path, arch)
    return model_class(arch).from_pretrained(path, **kwargs)


def load_circuit_model(
    path: str, with_embedding_nodes: bool, arch: str | None = None, device: str = "cpu", dtype=None,
    ungroup_kv: bool = False,
):  # fmt: skip
    """A circuit model from a pruned checkpoint or a plain one of the architecture.

    A pruned checkpoint records its graph options (`with_embedding_nodes`,
    `ungroup_kv`) in its config; `-w` and `--ungroup_kv` matter only for a plain
    checkpoint (which then starts with every mask on).
    """
    check_checkpoint(path)
    arch = arch or arch_of_checkpoint(path)
    config = read_config_dict(path)
    kwargs = {}
    if "with_embedding_nodes" in config:
        if with_embedding_nodes and not config["with_embedding_nodes"]:
            logger.warning(f"{path} was pruned without embedding nodes; ignoring -w")
        if ungroup_kv and not config.get("ungroup_kv", False):
            logger.warning(f"{path} was pruned without --ungroup_kv; ignoring it")
    else:
        kwargs["with_embedding_nodes"] = with_embedding_nodes
        if ungroup_kv:
            kwargs["ungroup_kv"] = True
    model = load_model(arch, path, **kwargs)
    if dtype is not None and dtype != torch.float32:
        model.to(dtype)
        model.circuit_masks.float()  # masks stay fp32, as in pruning
    return model.to(device).eval()


def load_tracr_model(path: str | os.PathLike):
    """A `tracrx` export (*.pkl) or a saved ErazrModel checkpoint."""
    from modeling.modeling_erazr import ErazrModel

    if str(path).endswith(".pkl"):
        if not Path(path).is_file():
            raise CheckpointError("Tracr model file not found", path)
        try:
            return ErazrModel.from_tracr(path)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError) as e:
            raise CheckpointError(f"damaged or foreign Tracr model file ({type(e).__name__}: {e})", path) from e
    check_checkpoint(path)
    check_architecture(str(path), "erazr")
    return ErazrModel.from_pretrained(path, dtype=torch.float32)


def load_edges_file(model, path: str) -> None:
    """`model.load_edges(path)`, with a missing or damaged file or an edge the model
    does not have reported by name."""
    if not Path(path).is_file():
        raise UserError("edges file not found", path)
    try:
        edges = load_edges_json(path)
    except (ValueError, TypeError) as e:
        raise UserError(f"damaged edges file ({one_line(e)})", path) from e
    try:
        model.load_edges([tuple(e) for e in edges])
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"edge not in this model: {one_line(e)}", path) from e


def load_tokenizer(*candidates: str | None):
    """The tokenizer of the first candidate that has one."""
    from transformers import AutoTokenizer

    tried = [c for c in candidates if c]
    for i, name in enumerate(tried):
        local = looks_local(name)
        if local and not any(Path(name).glob("tokenizer*")) and i + 1 < len(tried):
            continue
        if local and not Path(name).exists():
            raise UserError("tokenizer directory not found", name)
        return AutoTokenizer.from_pretrained(name)
    raise UserError("no tokenizer given")


def set_mask_rule(model, rule: str) -> None:
    """The rule of deterministic masks and threshold search: `l0.MaskRule` by name."""
    model.circuit_masks.mask_rule = l0.MaskRule(rule)
