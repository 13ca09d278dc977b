"""Typed (de)serialisation of config dataclasses: plain dicts in, checked dataclasses out, and back.

Each value is checked against its field's type, and an error names the dotted key (`optim.lr`), so a YAML file or
a manifest with a wrong value fails in one line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from ladc.errors import LadcError, did_you_mean

__all__ = ["shown", "from_dict", "to_dict", "replace", "dotted_keys", "dotted_get"]


def shown(value: Any, limit: int = 60) -> str:
    """repr of a user's value, clipped so an error message stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value against a dataclass field type; raise LadcError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except LadcError as exc:
                errors.append(str(exc))
        raise LadcError(errors[0] if errors else f"{where}: invalid value {shown(value)}")
    if origin is typing.Literal:  # e.g. `float | Literal["auto"]`: a keyword beside a number
        if isinstance(value, str) and value.strip().lower() in typing.get_args(tp):
            return value.strip().lower()
        raise LadcError(f"{where}: expected one of {', '.join(map(str, typing.get_args(tp)))}, got {shown(value)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise LadcError(f"{where}: expected a list, got {shown(value)}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise LadcError(f"{where}: expected a mapping of {tp.__name__} options, got {shown(value)}")
        return from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise LadcError(f"{where}: expected true/false, got {shown(value)}")
    if tp is int:
        if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
            return int(value)  # items of comma-separated CLI lists (`--batch-sizes 1,32`) arrive as strings
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise LadcError(f"{where}: expected an integer, got {shown(value)}")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise LadcError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)  # YAML reads `1e-4` as a string; accept it
        except (TypeError, ValueError, OverflowError):
            raise LadcError(f"{where}: expected a number, got {shown(value)}") from None
        if not math.isfinite(number):  # no option means anything at inf or nan; they only poison training
            raise LadcError(f"{where}: expected a finite number, got {shown(value)}")
        return number
    if tp is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise LadcError(f"{where}: expected a string, got {shown(value)}")
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise LadcError(f"{where}: expected a mapping, got {shown(value)}")
        return dict(value)
    return value


def _field_default(field: dataclasses.Field) -> Any:
    """A field's default value (its default_factory called), or MISSING for a required field."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def from_dict(cls: type, values: dict, where: str = "config", base: Any = None) -> Any:
    """Build dataclass `cls` from a (YAML) dict, rejecting unknown keys with a did-you-mean hint.

    The mapping merges over `base` (default: the class's own defaults) at every depth: a nested section sets only
    the keys it names and keeps the rest of its field's default, which may differ from the nested class's (distill's
    `optim` default trains 4 epochs where `OptimConfig()` trains 3).

    Raises:
        LadcError: unknown key or a value of the wrong type, naming the dotted key path.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise LadcError(f"{where or 'config'}: expected a mapping, got {shown(values)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            key_path = f"{where}.{key}" if where else str(key)
            error = LadcError(
                f"unknown key {shown(key_path)}{did_you_mean(key, names)}; valid keys: {', '.join(sorted(names))}"
            )
            error.key = key_path
            raise error
        key_path = f"{where}.{key}" if where else key
        try:
            under = _field_default(fields[key]) if base is None else getattr(base, key)
            if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict) and isinstance(under, hints[key]):
                kwargs[key] = from_dict(hints[key], value, key_path, base=under)  # a section merges over its default
            else:
                kwargs[key] = _coerce(value, hints[key], key_path)
        except LadcError as exc:
            exc.key = getattr(exc, "key", key_path)  # the innermost key: build_config finds its YAML line
            raise
    return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def to_dict(cfg: Any) -> dict:
    """Dataclass -> plain dict of YAML-safe values (tuples become lists)."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(cfg)


def replace(cfg: Any, overrides: dict) -> Any:
    """Apply non-None overrides, with dotted keys for nested dataclasses (`optim.lr`)."""
    nested: dict[str, dict] = {}
    flat = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:
            head, rest = key.split(".", 1)
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(cfg, head), sub)
    hints = typing.get_type_hints(type(cfg))
    checked = {k: (_coerce(v, hints[k], k) if not dataclasses.is_dataclass(v) else v) for k, v in flat.items()}
    return dataclasses.replace(cfg, **checked)


def dotted_keys(values: dict, prefix: str = "") -> list[str]:
    """The leaf keys of a nested YAML mapping as dotted paths (`optim.lr`)."""
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        keys.extend(dotted_keys(value, f"{path}.") if isinstance(value, dict) else [path])
    return keys


def dotted_get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
