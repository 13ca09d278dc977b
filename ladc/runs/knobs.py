"""One declaration per knob: a config field carries its default, its CLI help and its check.

    batch_size: int = knob(32, "Per-device batch size.", check=positive())

The CLI (ladc/cli_options.py) makes the flag from the field, `[default: ...]` from its default, and every path to a
config (CLI flags, --config YAML, the pipeline's sections, a dataclass built in Python and handed to a command) runs
the same checks through `check_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Any

from ladc.errors import LadcError

__all__ = [
    "Knob", "Check", "knob", "knob_of", "leaf_fields", "check_config", "EVERY_KEY", "positive", "at_least", "one_of",
]  # fmt: skip

KNOB = "ladc.knob"  # the dataclass-field metadata key


class _EveryKey:
    def __contains__(self, key: object) -> bool:
        return True


EVERY_KEY = _EveryKey()  # `check_config(cfg, EVERY_KEY)`: every value came from a YAML file (the pipeline's)


@dataclass(frozen=True)
class Check:
    """A rule on one value, and its one-line message: a template with {flag} (`--batch-size` on the command line,
    the dotted key for a YAML value), {name} (the field), {value} (lists for tuples)."""

    ok: Callable[[Any], bool]
    message: str


@dataclass(frozen=True)
class Knob:
    """A field's CLI help and check (None values are never checked: None means unset).

    Attributes:
        help: what the knob does, without its default (the CLI shows the field's).
        flag: the option's spelling when it is not `--field-name`: `--backend`, or `--per-channel/--per-tensor` for a
            switch whose default is not False.
        short: a one-letter alias, e.g. `-o`.
        unset: what None means, shown as the default (`half the teacher's`).
        check: a `Check`, or a function that raises LadcError itself.
        path: the CLI types the value as a path.
        repeatable: a list option given once per item (joined with commas), not one comma-separated value.
    """

    help: str
    flag: str = ""
    short: str = ""
    unset: str = ""
    check: Check | Callable[[Any], Any] | None = None
    path: bool = False
    repeatable: bool = False

    def flags(self, name: str) -> tuple[str, ...]:
        """The option's declarations: (`--field-name`, `-o`) or the knob's own spelling."""
        return (self.flag or "--" + name.replace("_", "-"), *((self.short,) if self.short else ()))


def knob(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str = "",
    short: str = "",
    unset: str = "",
    check: Check | Callable[[Any], Any] | None = None,
    path: bool = False,
    repeatable: bool = False,
) -> Any:
    """A dataclass field with its default (none: a required field) and its `Knob` (see there for the arguments)."""
    spec = Knob(help, flag=flag, short=short, unset=unset, check=check, path=path, repeatable=repeatable)
    return dataclasses.field(default=default, metadata={KNOB: spec})


def knob_of(field: dataclasses.Field) -> Knob | None:
    return field.metadata.get(KNOB)


def _default(field: dataclasses.Field, owner: Any) -> Any:
    if owner is not None:
        return getattr(owner, field.name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default  # MISSING for a required field (evaluate's model dir)


def leaf_fields(cls: type, owner: Any = None, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any, type]]:
    """(dotted key, field, the command's default, the class declaring the field) of every knob of `cls`, through its
    nested sections.

    `owner` is the instance whose values are the defaults (a section's default can differ from its class's: distill
    trains 4 epochs, OptimConfig() 3); None: the class's own field defaults.
    """
    for field in dataclasses.fields(cls):
        value = _default(field, owner)
        if dataclasses.is_dataclass(value):  # a section: its fields are the knobs
            yield from leaf_fields(type(value), value, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", field, value, cls


def check_config(cfg: Any, yaml_keys: Container[str] = frozenset(), prefix: str = "") -> None:
    """Run every knob's check, then each section's cross-field `check()`; raise the first problem as LadcError.

    The error's `key` is the dotted key at fault. A key in `yaml_keys` came from a YAML file: its message names the
    key, not the flag.
    """
    for field in dataclasses.fields(cfg):
        value, key = getattr(cfg, field.name), f"{prefix}{field.name}"
        spec = knob_of(field)
        if dataclasses.is_dataclass(value):
            check_config(value, yaml_keys, f"{key}.")
        elif spec is not None and spec.check is not None and value is not None:
            _check_one(spec, field.name, key, value, key in yaml_keys)
    cross_field = getattr(cfg, "check", None)
    if callable(cross_field):
        try:
            cross_field()
        except LadcError as exc:
            exc.key = prefix + getattr(exc, "key", "")
            raise


def _check_one(spec: Knob, name: str, key: str, value: Any, from_yaml: bool) -> None:
    try:
        if isinstance(spec.check, Check):
            if not spec.check.ok(value):
                shown = list(value) if isinstance(value, tuple) else value
                flag = key if from_yaml else spec.flags(name)[0].split("/")[0]
                raise LadcError(spec.check.message.format(flag=flag, name=name, value=shown))
        else:
            spec.check(value)
    except LadcError as exc:
        exc.key = key
        raise


def positive(message: str = "{name} must be positive, got {value}") -> Check:
    return Check(lambda value: value > 0, message)


def at_least(low: float, message: str = "{flag} must be at least " + "{low}, got {value}") -> Check:
    return Check(lambda value: value >= low, message.replace("{low}", f"{low:g}"))


def one_of(choices: tuple, message: str = "{name} '{value}' is not one of: {choices}") -> Check:
    return Check(lambda value: value in choices, message.replace("{choices}", ", ".join(map(str, choices))))
