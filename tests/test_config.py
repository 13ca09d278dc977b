"""Tests for ladc/runs/config.py (and the typed dict conversion in ladc/runs/schema.py): precedence, presets, validation."""

from __future__ import annotations

import dataclasses

import pytest

from ladc.data.tasks import PRESETS, preset_values
from ladc.errors import LadcError
from ladc.runs.config import (
    BenchConfig,
    DistillConfig,
    ExportConfig,
    LossWeights,
    OptimConfig,
    TuneTeacherConfig,
    build_config,
    from_dict,
    resolve_config,
    to_dict,
    with_preset,
)


def _yaml(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_cli_beats_yaml_beats_preset_beats_default(tmp_path):
    path = _yaml(tmp_path, "preset: paper\ndata: {task: sst2}\nmu: 250\ntemperature: 4\noptim: {epochs: 2}\n")
    cfg = build_config(DistillConfig, path, {"temperature": 3.0, "optim.seed": 7, "beta": None})
    assert cfg.temperature == 3.0  # CLI over YAML (4) over the preset (20)
    assert cfg.mu == 250  # YAML over the preset (1000)
    assert cfg.optim.epochs == 2  # YAML over the preset (20), inside a nested section
    assert cfg.optim.seed == 7  # CLI over the preset (42)
    assert (cfg.gate_lr, cfg.optim.lr, cfg.optim.warmup_ratio) == (1e-6, 1e-4, 0.3)  # the preset over the defaults
    assert cfg.beta == DistillConfig().beta == LossWeights().beta  # None = not given: the default stays


def test_a_preset_named_on_the_command_line_uses_the_command_line_task(tmp_path):
    path = _yaml(tmp_path, "data: {task: sst2}\n")
    cfg = build_config(DistillConfig, path, {"preset": "paper", "data.task": "mrpc"})
    assert (cfg.preset, cfg.mu, cfg.optim.lr, cfg.gate_lr) == ("paper", 500, 7e-4, 5e-6)


def test_the_preset_is_applied_once_whatever_the_entry_point(tmp_path):
    """CLI/YAML (`build_config`) and the pipeline (`with_preset` on its distill section) give the same config."""
    from ladc.commands.pipeline import load_pipeline_config

    section = "preset: paper\nmu: 250\noptim: {eval_steps: 100}\n"
    direct = build_config(DistillConfig, _yaml(tmp_path, section + "data: {task: rte}\n"), {})
    pipeline_yaml = tmp_path / "p.yaml"
    pipeline_yaml.write_text("data: {task: rte}\ndistill:\n" + "".join(f"  {line}\n" for line in section.splitlines()))
    through_pipeline = load_pipeline_config(pipeline_yaml).distill
    assert dataclasses.replace(through_pipeline, data=direct.data, output=direct.output) == direct
    assert (direct.optim.lr, direct.gate_lr, direct.mu, direct.optim.eval_steps) == (7e-4, 3e-5, 250, 100)


def test_preset_values_and_unknown_presets():
    assert preset_values("paper", "sst2")["temperature"] == 20
    assert preset_values("paper", "cola") == preset_values("paper", "qnli")  # the paper's fallback row
    assert set(PRESETS["paper"]) == {"qnli", "sst2", "mrpc", "rte"}
    assert with_preset({"mu": 1.0}, "sst2") == {"mu": 1.0}  # no preset named: unchanged
    with pytest.raises(LadcError, match="unknown preset 'papr' \\(did you mean 'paper'\\?\\)"):
        resolve_config(DistillConfig, {"preset": "papr"}, {})


def test_an_unknown_preset_in_a_file_names_the_file_and_line(tmp_path):
    path = _yaml(tmp_path, "teacher: t\npreset: fast\n")
    with pytest.raises(LadcError, match=r"c.yaml line 2: unknown preset 'fast'; expected one of paper"):
        build_config(DistillConfig, path, {})


def test_loss_defaults_are_written_once():
    weights, cfg = LossWeights(), DistillConfig()
    assert cfg.loss_weights == weights
    assert (cfg.hard_weight, cfg.soft_weight, cfg.temperature, cfg.mu, cfg.beta) == dataclasses.astuple(weights)
    custom = DistillConfig(mu=5.0, temperature=2.0).loss_weights
    assert (custom.mu, custom.temperature) == (5.0, 2.0)
    with pytest.raises(LadcError, match="temperature=0.0 must be > 0"):
        _ = DistillConfig(temperature=0.0).loss_weights
    with pytest.raises(LadcError, match="loss weight mu=-1.0 must be a finite number >= 0"):
        LossWeights(mu=-1.0)


@pytest.mark.parametrize("cls", [TuneTeacherConfig, DistillConfig, ExportConfig, BenchConfig])
def test_every_config_round_trips_through_a_plain_dict(cls):
    cfg = from_dict(cls, {"overwrite": True}, "")
    assert from_dict(cls, to_dict(cfg), "") == cfg and cfg.overwrite is True
    assert cfg.output is None  # None: ladc.runs.runs.default_output decides


def test_bad_keys_and_values_name_the_file_line_and_key(tmp_path):
    path = _yaml(tmp_path, "teacher: t\ntemprature: 5\n")
    with pytest.raises(LadcError, match=r"c.yaml line 2: unknown key 'temprature' \(did you mean 'temperature'\?\)"):
        build_config(DistillConfig, path, {})
    path = _yaml(tmp_path, "optim:\n  lr: fast\n")
    with pytest.raises(LadcError, match=r"c.yaml line 2: optim.lr: expected a number, got 'fast'"):
        build_config(DistillConfig, path, {})
    with pytest.raises(LadcError, match="batch_sizes\\[1\\]: expected an integer"):
        build_config(BenchConfig, None, {"batch_sizes": "1,a"})
    assert build_config(BenchConfig, None, {"batch_sizes": "1,32"}).batch_sizes == (1, 32)  # comma lists parse here


@pytest.mark.parametrize("cls", [TuneTeacherConfig, DistillConfig, ExportConfig, BenchConfig])
def test_a_yaml_section_merges_over_the_commands_defaults_at_every_depth(cls):
    """A nested section sets only the keys it names: the rest keep the command's own default for that section, which
    may differ from the section class's (distill trains 4 epochs, OptimConfig() 3)."""
    default = cls()
    for section in (f.name for f in dataclasses.fields(cls) if dataclasses.is_dataclass(getattr(default, f.name))):
        first = dataclasses.fields(getattr(default, section))[0].name
        value = getattr(getattr(default, section), first)
        changed = {"lr": 1e-4, "task": "rte"}[first]
        assert value != changed
        cfg = resolve_config(cls, {section: {first: changed}}, {})
        assert cfg == dataclasses.replace(default, **{section: dataclasses.replace(getattr(default, section),
                                                                                     **{first: changed})})  # fmt: skip
        assert resolve_config(cls, {section: {}}, {}) == default


def test_distill_optim_section_keeps_distills_own_epochs():
    cfg = resolve_config(DistillConfig, {"optim": {"lr": 1e-4}}, {})
    assert (cfg.optim.lr, cfg.optim.epochs) == (1e-4, 4.0) and OptimConfig().epochs == 3.0
    # a preset fills in underneath and the YAML's section still merges over it
    paper = resolve_config(DistillConfig, {"preset": "paper", "data": {"task": "sst2"}, "optim": {"seed": 3}}, {})
    assert (paper.optim.seed, paper.optim.lr, paper.optim.batch_size, paper.data.max_seq_len) == (3, 1e-4, 32, 128)
