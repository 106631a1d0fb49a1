"""Typed configs of the probing entry points, read from YAML: an unknown key, a
missing required key or a value of the wrong type is an error naming the key and
the file."""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from ..errors import UserError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML ({' '.join(str(e).split())})", path) from None
    if not isinstance(data, dict):
        raise UserError("a config must be a mapping of keys to values", path)
    return data


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except UserError as e:
                errors.append(e)
        raise errors[0]
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"expected a list, got {value!r}", where)
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return origin(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"expected a mapping, got {value!r}", where)
        return dict(value)
    if hint is Any:
        return value
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise UserError(f"{value!r} is not one of {[m.value for m in hint]}", where) from None
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"expected a mapping, got {value!r}", where)
        return from_mapping(hint, value, where)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is bool and isinstance(value, bool):
        return value
    if hint in (int, str) and isinstance(value, hint) and not isinstance(value, bool):
        return value
    raise UserError(f"expected {getattr(hint, '__name__', hint)}, got {value!r}", where)


def from_mapping(cls: type[T], data: dict, where: str) -> T:
    """Build dataclass `cls` from `data`; `where` names the file (and key path)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})", where)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _convert(data[f.name], hints[f.name], f"{where}: {f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"missing required key {f.name!r}", where)
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where)
    return obj


def load_config(cls: type[T], path: str | Path, overrides: dict | None = None) -> T:
    data = read_yaml(path)
    data.update(overrides or {})
    return from_mapping(cls, data, str(path))
