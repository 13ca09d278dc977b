"""The CLI options of a command, made from its config dataclass: one flag per knob (ladc/runs/knobs.py), with the
field's help and its default; fields without a flag are listed here with the reason (`yaml_only`)."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ladc.runs.knobs import Knob, knob_of, leaf_fields

__all__ = ["ConfigOption", "config_options", "with_config", "shown_default", "knob_help",
           "TRAINING_YAML_ONLY", "EXPORT_YAML_ONLY", "BENCH_YAML_ONLY", "EVALUATE_YAML_ONLY", "PIPELINE_YAML_ONLY"]  # fmt: skip

# ----------------------------------------------------------------------------- the fields without a flag, and why
_MACHINE = "a machine setting, not part of an experiment: set it in the YAML"
_RECIPE = "the BERT fine-tuning recipe's; change it in the YAML"
TRAINING_YAML_ONLY = {
    "data.test_file": "only test predictions read it (`ladc evaluate --predict test` takes it from the run)",
    "data.cache_dir": _MACHINE,
    "optim.weight_decay": _RECIPE,
    "optim.max_grad_norm": _RECIPE,
    "optim.eval_batch_size": "changes speed and memory of evaluation, never a score",
    "optim.log_steps": "changes only how often the log prints",
    "optim.num_workers": _MACHINE,
}
EXPORT_YAML_ONLY = {
    "cache_dir": _MACHINE,
    "parity_batch_size": "changes speed and memory of the parity check, never its verdict",
    "select_iterations": "--select fastest's timing budget; --threads is the knob users need",
}
BENCH_YAML_ONLY = {
    **{f"data.{name}": "bench reads only the dev set, chosen by --task, --data-dir and --dev-limit" for name in (
        "train_file", "dev_file", "test_file", "text_fields", "label_field", "max_seq_len", "train_limit")},
    "data.cache_dir": _MACHINE,
    "interleave_block": "a detail of --isolation interleaved",
    "seed": "seeds only the synthetic token ids, which never change a timing's meaning",
}  # fmt: skip
EVALUATE_YAML_ONLY = {"max_seq_len": "the model's run records the length it was trained with"}
_SECTION = "a pipeline is its YAML file; the CLI only picks the run's stage, the report's --max-drop and --overwrite"
PIPELINE_YAML_ONLY = dict.fromkeys(("run_dir", "data", "teacher", "distill", "export", "bench", "students"), _SECTION)


# ----------------------------------------------------------------------------- one option per knob
@dataclass(frozen=True)
class ConfigOption:
    """The CLI parameter `name` that sets the config value at dotted `key`."""

    key: str
    name: str
    annotation: Any
    default: Any
    to_value: Callable[[Any], Any]  # the parameter's value -> the override (None: not given)


def shown_default(value: Any, spec: Knob, name: str) -> str:
    """The `[default: ...]` text of a knob: its value as a user would type it, or what None means ('' = none)."""
    if value is None:
        return spec.unset
    if isinstance(value, bool):
        switches = spec.flags(name)[0].split("/")
        return "" if len(switches) == 1 else switches[0 if value else 1].lstrip("-")
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def knob_help(cls: type, key: str) -> str:
    """The help of the knob at dotted `key` of `cls` (for a flag that sets something beside a config, e.g. the
    pipeline's --overwrite)."""
    return next(knob_of(field).help for dotted, field, _, _ in leaf_fields(cls) if dotted == key)


def _cli_type(hint: Any, spec: Knob) -> tuple[Any, Callable[[Any], Any], Any]:
    """(the parameter's type, how its value becomes an override, the parameter's default) for a field type."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)] if union else [hint]
    kind = args[0] if len(args) == 1 else str  # `float | Literal["auto"]`: typed as text, checked by the knob
    if typing.get_origin(kind) is tuple:
        if spec.repeatable:
            return list[str] | None, lambda items: ",".join(items or []) or None, None
        return str | None, lambda text: text, None  # comma-separated; ladc.runs.schema splits it
    if kind is bool:
        if "/" in spec.flag:
            return bool | None, lambda given: given, None
        return bool, lambda given: given or None, False  # a plain switch: absent = not given
    return (Path if spec.path else kind) | None, lambda given: given, None


def config_options(cls: type, yaml_only: Mapping[str, str] = {}, shown: Mapping[str, str] = {}, *,
                   arguments: Mapping[str, str] = {}) -> list[ConfigOption]:  # fmt: skip
    """One parameter per knob of `cls` that is not YAML-only: a positional argument for the keys in `arguments`
    ({key: parameter name}), an option for the others; `shown` replaces the default a key shows (bench: the task its
    targets record)."""
    options, hints = [], {}
    for key, field, default, owner in leaf_fields(cls):
        spec = knob_of(field)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{key} has no knob(): give it one, with its help")
        if _is_yaml_only(key, yaml_only):
            continue
        hint = hints.setdefault(owner, typing.get_type_hints(owner))[field.name]
        if key in arguments:
            options.append(_argument(key, arguments[key], hint, spec, default))
            continue
        if default is True and "/" not in spec.flag:  # a plain switch could never turn it off
            raise TypeError(f"{cls.__name__}.{key} defaults to True: give its knob flag='--{field.name}/--no-...'")
        kind, to_value, param_default = _cli_type(hint, spec)
        text = shown.get(key, shown_default(default, spec, field.name))
        help_text = f"{spec.help} \\[default: {text}]" if text else spec.help  # \\[: not rich markup
        option = typer.Option(*spec.flags(field.name), help=help_text)
        options.append(ConfigOption(key, field.name, Annotated[kind, option], param_default, to_value))
    names = [option.name for option in options]
    if len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__}: two knobs make the same option: {sorted(names)}")
    return options


def _is_yaml_only(key: str, yaml_only: Mapping[str, str]) -> bool:
    return any(key == entry or key.startswith(entry + ".") for entry in yaml_only)


def _argument(key: str, name: str, hint: Any, spec: Knob, default: Any) -> ConfigOption:
    """A positional argument: required where the field has no default to fall back on, else optional (a list)."""
    argument = typer.Argument(help=spec.help)
    if typing.get_origin(hint) is tuple:
        return ConfigOption(key, name, Annotated[list[str] | None, argument], None, lambda items: items or None)
    required = default is MISSING or default == ""
    return ConfigOption(key, name, Annotated[str, argument], inspect.Parameter.empty if required else None,
                        lambda given: given)  # fmt: skip


def with_config(cls: type, yaml_only: Mapping[str, str] = {}, shown: Mapping[str, str] = {}, *,
                arguments: Mapping[str, str] = {}) -> Callable:  # fmt: skip
    """Add `config_options(cls, ...)` to a command's signature; the command receives their values as `overrides`
    (dotted keys, None = not given), ready for `build_run_config`."""
    options = config_options(cls, yaml_only, shown, arguments=arguments)

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(**kwargs):
            overrides = {option.key: option.to_value(kwargs.pop(option.name)) for option in options}
            return command(**kwargs, overrides=overrides)

        own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "overrides"]
        generated = [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                                       annotation=option.annotation) for option in options]  # fmt: skip
        wrapper.__signature__ = inspect.Signature([*own, *generated])
        wrapper.config_options = (cls, {option.name: option.key for option in options}, dict(yaml_only))
        return wrapper

    return decorate
