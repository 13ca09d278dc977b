"""Reading, merging and saving configs: YAML files (errors name the file and line), presets, and the one place a
config is decided (`resolve_config`: defaults < preset < YAML < CLI flags, then every knob's check).

The CLI, a YAML file given with --config and the pipeline's sections all come through here, so a default, a preset or
a check applies the same way whatever the entry point.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ladc.errors import LadcError
from ladc.runs.knobs import check_config
from ladc.runs.schema import dotted_keys, from_dict, replace, to_dict

__all__ = ["from_yaml_dict", "load_yaml", "save_yaml", "with_preset", "resolve_config", "build_config", "yaml_line"]


# ----------------------------------------------------------------------------- YAML


def from_yaml_dict(cls: type, values: dict, yaml_path: str | Path | None) -> Any:
    """`from_dict(cls, values)` for a mapping read from `yaml_path`: an error names the file and the key's line."""
    try:
        return from_dict(cls, values, "")
    except LadcError as exc:
        if yaml_path is None:
            raise
        line = yaml_line(Path(yaml_path), getattr(exc, "key", None))
        raise LadcError(f"config file {yaml_path}{line}: {exc}") from None


def yaml_line(path: Path, key: str | None) -> str:
    """' line N' of dotted `key` in the YAML file (its deepest part that exists), or '' when it cannot be found."""
    import yaml

    if not key:
        return ""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8-sig"), Loader=yaml.SafeLoader)
    except (OSError, ValueError, yaml.YAMLError):
        return ""
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return f" line {line}" if line else ""


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    import yaml

    from ladc.runs.io import read_text

    path = Path(path)
    if not path.is_file():
        raise LadcError(f"config file {path} does not exist")
    text = read_text(path, "config file")  # UTF-8 only: a LadcError names the first other byte
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise LadcError(f"config file {path}{line}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LadcError(f"config file {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def save_yaml(cfg: Any, path: str | Path, header: str | None = None) -> None:
    """Write a dataclass (or dict) as YAML atomically."""
    import yaml

    from ladc.runs.io import atomic_write_text

    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    text = yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(Path(path), (f"# {header}\n" if header else "") + text)


# ----------------------------------------------------------------------------- building a config


def with_preset(values: dict, task: str) -> dict:
    """`values` (a distill config mapping) with its `preset` filled in underneath: the preset sets only what the
    mapping leaves unset. Unchanged when no preset is named.

    Raises:
        LadcError: an unknown preset.
    """
    from ladc.data.tasks import preset_values

    if not values.get("preset"):
        return values
    return _merge(preset_values(values["preset"], task), values)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_config(cls: type, raw: dict, overrides: dict, yaml_path: str | Path | None = None) -> Any:
    """defaults < preset < YAML (`raw`) < CLI flags (`overrides`, dotted keys, None = not given), then every knob's
    check (ladc.runs.knobs.check_config).

    Raises:
        LadcError: a bad key or value, naming the YAML file and line when the value came from the file.
    """
    # fields without a default (evaluate's model dir) come from the command line: seed them so the class builds
    required = [f.name for f in dataclasses.fields(cls) if f.default is f.default_factory is dataclasses.MISSING]
    raw = {**{name: overrides[name] for name in required if overrides.get(name) is not None}, **raw}
    cfg = from_yaml_dict(cls, raw, yaml_path)  # keys and types checked before a preset is looked up
    preset = overrides.get("preset") or getattr(cfg, "preset", None)
    if preset:
        task = overrides.get("data.task") or cfg.data.task
        try:
            values = with_preset({**raw, "preset": preset}, task)
        except LadcError as exc:
            if yaml_path is None or overrides.get("preset"):
                raise
            raise LadcError(f"config file {yaml_path}{yaml_line(Path(yaml_path), 'preset')}: {exc}") from None
        cfg = from_yaml_dict(cls, values, yaml_path)
    cfg = replace(cfg, overrides)
    from_yaml = {key for key in dotted_keys(raw) if overrides.get(key) is None}
    try:
        check_config(cfg, from_yaml)
    except LadcError as exc:
        if yaml_path is None or getattr(exc, "key", None) not in from_yaml:
            raise
        raise LadcError(f"config file {yaml_path}{yaml_line(Path(yaml_path), exc.key)}: {exc}") from None
    return cfg


def build_config(cls: type, yaml_path: str | Path | None, overrides: dict, raw: dict | None = None) -> Any:
    """`resolve_config` of the YAML file at `yaml_path` (if any; `raw` when the caller already read it)."""
    if raw is None:
        raw = load_yaml(yaml_path) if yaml_path else {}
    return resolve_config(cls, raw, overrides, yaml_path)
