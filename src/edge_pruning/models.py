"""Which circuit-model class serves which `--arch` (over `architectures.ARCHITECTURES`), and the
checks that turn a missing, damaged or foreign checkpoint into a clear error before
any loader sees it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .architectures import ARCHITECTURES
from .architectures import MODEL_TYPES as _MODEL_TYPES

# model_type in a checkpoint's config -> architecture name (`--arch`)
MODEL_TYPES = {t: a.name for t, a in _MODEL_TYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: `what` went wrong, `where` (a path)."""

    def __init__(self, what: str, where: str | os.PathLike) -> None:
        self.what, self.where = what, os.fspath(where)
        super().__init__(f"{what}, {self.where}")


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
