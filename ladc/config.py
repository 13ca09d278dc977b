"""Config dataclasses for every command, YAML loading with validation, and saving into run dirs."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladc.errors import LadcError, did_you_mean

__all__ = [
    "DataConfig",
    "OptimConfig",
    "TuneTeacherConfig",
    "from_dict",
    "to_dict",
    "load_yaml",
    "save_yaml",
    "replace",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are tokenized."""

    task: str = "sst2"
    # None -> the hub (`nyu-mll/glue`); a directory in the original GLUE TSV layout otherwise
    data_dir: str | None = None
    # generic CSV/JSONL files (override data_dir/hub for the splits given)
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    text_fields: tuple[str, ...] | None = None  # CSV/JSONL column names of the text(s)
    label_field: str = "label"
    max_seq_len: int = 128  # BERT fine-tuning default; dynamic padding pads only to the longest in a batch
    train_limit: int | None = None  # random subset of train (seeded), e.g. 8000 for quick CPU runs
    dev_limit: int | None = None  # first N dev examples; None = the full dev set
    cache_dir: str | None = None  # tokenized-dataset cache; None -> ~/.cache/ladc


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings shared by tune-teacher and distill."""

    lr: float = 2e-5  # BERT paper's fine-tuning range is 2e-5..5e-5
    batch_size: int = 32
    grad_accum: int = 1
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs when set
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_steps: int | None = None  # None -> evaluate once per epoch
    save_steps: int | None = None  # None -> checkpoint whenever we evaluate
    eval_batch_size: int = 64
    mixed_precision: str = "no"  # no | bf16 | fp16 (fp16 needs CUDA)
    group_by_length: bool = False  # batches of similar length waste less padding
    log_steps: int = 10
    num_workers: int = 0


@dataclass(frozen=True)
class TuneTeacherConfig:
    """`ladc tune-teacher`: fine-tune a BERT-style encoder on one GLUE task."""

    model: str = "bert-base-uncased"  # hub name, local HF dir, or the offline alias `minilm`
    output: str = "runs/teacher"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    overwrite: bool = False
    resume: bool = False


# ----------------------------------------------------------------------------- generic (de)serialisation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


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
        raise LadcError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise LadcError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise LadcError(f"{where}: expected a mapping of {tp.__name__} options, got {value!r}")
        return from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise LadcError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise LadcError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise LadcError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)  # YAML reads `1e-4` as a string; accept it
        except (TypeError, ValueError):
            raise LadcError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise LadcError(f"{where}: expected a string, got {value!r}")
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise LadcError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def from_dict(cls: type, values: dict, where: str = "config") -> Any:
    """Build dataclass `cls` from a (YAML) dict, rejecting unknown keys with a did-you-mean hint.

    Raises:
        LadcError: unknown key or a value of the wrong type, naming the dotted key path.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise LadcError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            key_path = f"{where}.{key}" if where else key
            raise LadcError(
                f"unknown key '{key_path}'{did_you_mean(key, names)}; valid keys: {', '.join(sorted(names))}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


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


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LadcError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise LadcError(f"config file {path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LadcError(f"config file {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def save_yaml(cfg: Any, path: str | Path, header: str | None = None) -> None:
    """Write a dataclass (or dict) as YAML atomically."""
    import yaml

    from ladc.io import atomic_write_text

    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    text = yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(Path(path), (f"# {header}\n" if header else "") + text)


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
