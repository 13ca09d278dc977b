"""Tests for ladc/runs/knobs.py and ladc/cli_options.py: one declaration per knob (default, help and check on the
config field), read by the CLI, the YAML path and the commands alike."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from ladc.cli import app, user_errors
from ladc.cli_options import TRAINING_YAML_ONLY, shown_default, with_config
from ladc.errors import LadcError
from ladc.runs.config import (
    DEFAULT_ITERATIONS,
    EVAL_BATCH_SIZE,
    BenchConfig,
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    OptimConfig,
    TuneTeacherConfig,
    build_config,
    check_config,
)
from ladc.runs.knobs import knob, knob_of, leaf_fields, positive

REPO = Path(__file__).resolve().parents[1]
CONFIG_COMMANDS = {"tune-teacher", "distill", "export", "bench", "evaluate", "pipeline"}
WIDE = {"COLUMNS": "240", "TERM": "dumb"}


def _commands() -> dict[str, tuple]:
    """{command: (config class, {parameter: dotted key}, {YAML-only key: why})} of every generated command."""
    return {c.name: c.callback.config_options for c in app.registered_commands if hasattr(c.callback, "config_options")}


def _yaml_only(key: str, table: dict) -> bool:
    return any(key == entry or key.startswith(entry + ".") for entry in table)


def test_every_field_of_every_command_has_a_flag_or_a_reason():
    commands = _commands()
    assert set(commands) == CONFIG_COMMANDS
    click_app = typer.main.get_command(app)
    for name, (cls, flags, yaml_only) in commands.items():
        keys = [key for key, *_ in leaf_fields(cls)]
        assert all(knob_of(field) is not None for _, field, *_ in leaf_fields(cls)), name  # help and check on each
        missing = [key for key in keys if key not in flags.values() and not _yaml_only(key, yaml_only)]
        assert not missing, (name, missing)
        assert not [key for key in flags.values() if _yaml_only(key, yaml_only)], name  # a key is one or the other
        assert all(any(_yaml_only(key, {entry: 1}) for key in keys) for entry in yaml_only), name  # no stale entry
        assert all(isinstance(why, str) and len(why) > 20 for why in yaml_only.values()), name
        params = {param.name for param in click_app.commands[name].params}
        assert set(flags) <= params, (name, set(flags) - params)


def _help(name: str) -> dict[str, str]:
    """{parameter: help} of a command's options (arguments show no default)."""
    params = typer.main.get_command(app).commands[name].params
    return {param.name: param.help or "" for param in params if param.param_type_name == "option"}


@pytest.mark.parametrize("name", sorted(CONFIG_COMMANDS))
def test_no_help_text_repeats_a_default(name):
    """A help says what a knob does; its `[default: ...]` is made from the field, never written in a help."""
    cls, flags, _ = _commands()[name]
    defaults = {key: (field, default) for key, field, default, _ in leaf_fields(cls)}
    for param, text in _help(name).items():
        said, _, shown = text.partition(" \\[default: ")
        assert "default" not in said.lower(), (name, param, text)
        if param in flags and flags[param] in defaults:
            field, default = defaults[flags[param]]
            expected = shown_default(default, knob_of(field), field.name)
            override = "the task the targets record" if (name, param) == ("bench", "task") else None
            assert shown.removesuffix("]") == (override or expected), (name, param, text)
            literal = repr(default) if isinstance(default, int) and not isinstance(default, bool) else None
            assert literal is None or default in (0, 1) or not re.search(rf"\b{literal}\b", said), (name, param)


def test_a_switch_shows_its_default_side_and_a_plain_flag_shows_none():
    assert _help("export")["per_channel"].endswith("\\[default: per-channel]")
    assert _help("distill")["reverse_gates"].endswith("\\[default: forward-gates]")
    assert "default" not in _help("bench")["real"] and _help("distill")["epochs"].endswith("\\[default: 4]")
    assert _help("tune-teacher")["epochs"].endswith("\\[default: 3]")  # each command shows its own default


# a knob added here alone: no file outside this test changes
Extended = dataclasses.make_dataclass(
    "Extended",
    [("cooldown_steps", int, knob(7, "Steps at the end with the learning rate at zero.", check=positive()))],
    bases=(TuneTeacherConfig,),
    frozen=True,
)


def _extended_app(seen: list) -> typer.Typer:
    extended = typer.Typer()

    @extended.command()
    @user_errors
    @with_config(Extended, TRAINING_YAML_ONLY)
    def run(config: Annotated[Path | None, typer.Option("--config")] = None, *, overrides: dict) -> None:
        seen.append(build_config(Extended, config, overrides))

    return extended


def test_a_knob_added_in_a_test_alone_is_a_checked_flag_whose_value_reaches_the_config(tmp_path):
    seen: list = []
    runner, extended = CliRunner(), _extended_app(seen)
    shown = runner.invoke(extended, ["--help"], env=WIDE).output
    assert re.search(
        r"--cooldown-steps +<int> +Steps at the end with the learning rate at zero\. \[default: 7\]", shown
    )
    assert "--lr" in shown and "--weight-decay" not in shown  # the inherited knobs, YAML-only ones left out

    assert runner.invoke(extended, ["--cooldown-steps", "3", "--lr", "1e-3"]).exit_code == 0
    assert (seen[-1].cooldown_steps, seen[-1].optim.lr) == (3, 1e-3)  # the flag's value reaches the config
    assert runner.invoke(extended, []).exit_code == 0 and seen[-1].cooldown_steps == 7  # the field's default

    bad = runner.invoke(extended, ["--cooldown-steps", "0"])
    assert (bad.exit_code, bad.output.strip()) == (2, "error: cooldown_steps must be positive, got 0")
    (tmp_path / "c.yaml").write_text("model: m\ncooldown_steps: -1\n")
    with pytest.raises(LadcError, match=r"c\.yaml line 2: cooldown_steps must be positive, got -1$"):
        build_config(Extended, tmp_path / "c.yaml", {})  # the YAML path runs the same check
    with pytest.raises(LadcError, match="^cooldown_steps must be positive, got 0$"):
        check_config(Extended(cooldown_steps=0))  # and so does a command handed the dataclass in Python


@pytest.mark.parametrize(
    ("cls", "yaml", "key", "bad", "good", "on_the_cli", "in_the_file"),
    [
        (DistillConfig, "student_layers: 0", "student_layers", 0, 1, "--student-layers must be at least 1, got 0",
         "line 1: student_layers must be at least 1, got 0"),
        (TuneTeacherConfig, "optim:\n  batch_size: 0", "optim.batch_size", 0, 8, "batch_size must be positive, got 0",
         "line 2: batch_size must be positive, got 0"),
        (ExportConfig, "opset: 13", "opset", 13, 17, "--opset 13 is not supported", "line 1: opset 13 is not supported"),
        (BenchConfig, "batch_sizes: [0]", "batch_sizes", "0", "1", "--batch-sizes [0]: need ints >= 1",
         "line 1: batch_sizes [0]: need ints >= 1"),
    ],
)  # fmt: skip
def test_a_fields_check_runs_for_flags_and_yaml_alike(tmp_path, cls, yaml, key, bad, good, on_the_cli, in_the_file):
    """One check, two paths: a flag's error names the flag, a YAML value's names the file, line and key."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml + "\n")
    with pytest.raises(LadcError, match=re.escape(in_the_file)):
        build_config(cls, path, {})
    with pytest.raises(LadcError, match=f"^{re.escape(on_the_cli)}"):
        build_config(cls, None, {key: bad})
    assert build_config(cls, path, {key: good}) is not None  # a flag given over a bad YAML value wins, as before


def test_a_pipeline_section_is_checked_when_the_file_loads(tmp_path):
    from ladc.commands.pipeline import load_pipeline_config

    path = tmp_path / "p.yaml"
    path.write_text("data: {task: sst2}\ndistill:\n  student_layers: 0\n")
    with pytest.raises(LadcError, match=r"p\.yaml line 3: distill\.student_layers must be at least 1, got 0$"):
        load_pipeline_config(path)  # before the teacher trains, not after


def _int_literals(path: Path, value: int) -> int:
    tree = ast.parse(path.read_text())
    return sum(isinstance(n, ast.Constant) and type(n.value) is int and n.value == value for n in ast.walk(tree))


KNOB_FILES = ["ladc/runs/config.py", "ladc/cli.py", "ladc/cli_options.py", "ladc/bench/bench.py", "ladc/deploy/export.py",
              *(str(p.relative_to(REPO)) for p in sorted((REPO / "ladc" / "commands").glob("*.py"))
                if p.name != "serve.py")]  # fmt: skip
# serve.py is not a config command (its options are ladc/cli_use.py's); its 64 is the largest batch it times at start


@pytest.mark.parametrize(("value", "meaning"), [(EVAL_BATCH_SIZE, "eval batch size"), (17, "ONNX opset"),
                                                 (DEFAULT_ITERATIONS, "bench's timed runs")])  # fmt: skip
def test_a_default_used_in_several_places_is_written_once(value, meaning):
    counts = {path: _int_literals(REPO / path, value) for path in KNOB_FILES}
    assert sum(counts.values()) == 1 and counts["ladc/runs/config.py"] == 1, (meaning, counts)


def test_the_eval_batch_size_is_one_declaration_for_every_dev_pass():
    assert OptimConfig().eval_batch_size == BenchConfig().eval_batch_size == EVAL_BATCH_SIZE
    assert EvaluateConfig(model_dir="m").batch_size == EVAL_BATCH_SIZE
