"""Property-based tests of ladc/runs/config.py's `--config` YAML: generated configs of every command and arbitrary bytes
load their values or fail in one line naming the file (and the line and key where there is one)."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ladc.errors import LadcError
from ladc.runs.config import BenchConfig, DistillConfig, ExportConfig, TuneTeacherConfig, build_config
from tests.fuzzing import (
    CELL_TEXT,
    EXAMPLES,
    SETTINGS,
)

# ----------------------------------------------------------------------------- --config YAML

CONFIG_CLASSES = [TuneTeacherConfig, DistillConfig, ExportConfig, BenchConfig]
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(), CELL_TEXT,
    st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(CELL_TEXT, st.integers(), max_size=2),
    st.sampled_from(["1e-4", "-3", "²", "٣", "inf", "nan", ".inf", "true", "no", "0x10", "1_000", "", " 7 "]),
)  # fmt: skip


def field_values(cls) -> dict:
    """{dotted key: default value} of a config class, nested dataclasses flattened."""
    import dataclasses

    values = {}
    for field in dataclasses.fields(cls):
        default = getattr(cls(), field.name)
        if dataclasses.is_dataclass(default):
            values.update({f"{field.name}.{k}": v for k, v in field_values(type(default)).items()})
        elif field.name != "resume":  # --resume reads a run dir; tests/test_cli_errors.py covers it
            values[field.name] = list(default) if isinstance(default, tuple) else default
    return values


def nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


@st.composite
def yaml_configs(draw):
    cls = draw(st.sampled_from(CONFIG_CLASSES))
    defaults = field_values(cls)
    keys = draw(st.lists(st.sampled_from(sorted(defaults)), max_size=6, unique=True))
    flat = {key: defaults[key] for key in keys}  # legal values: the defaults, round-tripped through YAML
    mutated = None
    if keys and draw(st.booleans()):
        mutated = draw(st.sampled_from(keys))
        flat[mutated] = draw(ANY_VALUE)
    unknown = draw(st.sampled_from([None, "lrate", "optim.learning_rate", "data.tsk", "bogus"]))
    if unknown and not draw(st.integers(0, 3)):
        flat[unknown] = 1
    else:
        unknown = None
    text = yaml.safe_dump(nest(flat), sort_keys=False, allow_unicode=draw(st.booleans()))
    style = draw(st.sampled_from(["\n", "\r\n"]))
    data = (("\ufeff" if draw(st.booleans()) else "") + text.replace("\n", style)).encode("utf-8")
    return cls, flat, mutated, unknown, data


@settings(max_examples=EXAMPLES["yaml"], **SETTINGS)
@given(yaml_configs())
def test_yaml_configs_load_their_values_or_name_file_line_and_key(generated):
    cls, flat, mutated, unknown, data = generated
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "config.yaml"
        path.write_bytes(data)
        try:
            cfg = build_config(cls, path, {})
        except LadcError as error:
            message = str(error)
            assert "\n" not in message and str(path) in message, message
            culprits = [
                f"'{part}'" if i == 0 and key == unknown else part  # ExportConfig has no `optim` section
                for key in (unknown, mutated)
                if key
                for i, part in enumerate(key.split("."))
            ]
            assert any(part in message for part in culprits), (culprits, message)  # only these keys may fail
            assert re.search(r" line \d+: ", message), message
            return
        assert unknown is None
        for key, value in flat.items():
            got = cfg
            for part in key.split("."):
                got = getattr(got, part)
            if key != mutated:
                assert (list(got) if isinstance(got, tuple) else got) == value, key
            assert not (isinstance(got, float) and not math.isfinite(got)), (key, got)


YAML_BYTES = st.one_of(
    st.binary(max_size=200),
    CELL_TEXT.map(lambda text: text.encode("utf-8")),
    st.sampled_from([
        b"", b"\xef\xbb\xbf", b"- a\n- b\n", b"lr: [", b"optim: {lr: \x00}", b"task: caf\xe9\n", b"\xff\xfetask: x",
        b"a: &x [*x]\n", b"optim:\n\tlr: 1\n", b"? [a, b]\n: 1\n", b"data: 5\n", b"output: 2024-01-01\n",
        b"optim: {lr: 1e-4, batch_size: 1.5}\n", b"optim: {lr: .nan}\n", b"!!python/object:os.system {}\n",
    ]),
)  # fmt: skip


@settings(max_examples=EXAMPLES["yaml_bytes"], **SETTINGS)
@given(st.sampled_from(CONFIG_CLASSES), YAML_BYTES)
def test_arbitrary_yaml_bytes_give_a_config_or_a_one_line_error_naming_the_file(cls, data):
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "config.yaml"
        path.write_bytes(data)
        try:
            cfg = build_config(cls, path, {})
        except LadcError as error:
            message = str(error)
            assert "\n" not in message and str(path) in message, message
            return
        assert isinstance(cfg, cls)
