"""Tests for ladc/commands/teacher.py (`ladc tune-teacher`): its option checks and the run dir it leaves on a tiny random BERT."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ladc.commands.teacher import tune_teacher
from ladc.errors import LadcError
from ladc.runs.config import DataConfig, OptimConfig, TuneTeacherConfig, check_config
from ladc.runs.manifest import read_manifest
from ladc.runs.runs import build_run_config
from tests.helpers import write_tiny_base_model, write_tiny_sst2


@pytest.mark.parametrize(
    ("optim", "message"),
    [
        ({"lr": 0.0}, "lr must be positive, got 0.0"),
        ({"eval_steps": -1}, "eval_steps must be positive"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"epochs": 0.0}, "epochs must be positive"),
        ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
        ({"mixed_precision": "fp8"}, "mixed_precision 'fp8' is not one of"),
    ],
)
def test_bad_optimisation_options_are_user_errors(optim, message):
    with pytest.raises(LadcError, match=message):
        check_config(OptimConfig(**optim))


def test_valid_optimisation_options_pass():
    check_config(OptimConfig())
    check_config(OptimConfig(epochs=0.0, max_steps=5))  # max_steps makes epochs irrelevant


def test_a_teacher_run_dir_is_complete_and_repeatable(tmp_path, monkeypatch, tiny_bert_config, tiny_tokenizer):
    """Default output, manifest, saved config (which rebuilds the same config), and the --resume guards."""
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=2), tiny_tokenizer)
    glue = write_tiny_sst2(tmp_path / "glue", train=32, dev=16)
    monkeypatch.chdir(tmp_path)
    cfg = TuneTeacherConfig(
        model=str(base), data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(tmp_path / "cache")),
        optim=OptimConfig(lr=1e-3, batch_size=16, max_steps=2, warmup_ratio=0.0, log_steps=1),
    )  # fmt: skip
    metrics = tune_teacher(cfg)

    run_dir = tmp_path / "runs" / "teacher"  # no output given: the default place
    assert json.loads((run_dir / "metrics.json").read_text())["dev"] == metrics["dev"]
    manifest = read_manifest(run_dir)
    assert (manifest.kind, manifest.task, manifest.base_model) == ("teacher", "sst2", str(base))
    assert manifest.dev == metrics["dev"] and manifest.data["data_dir"] == str(glue) and manifest.method is None
    assert "method" not in json.loads((run_dir / "ladc.json").read_text())  # a teacher's file has no student keys

    again = build_run_config(TuneTeacherConfig, run_dir / "config.yaml", {})  # `--config RUN/config.yaml`
    assert again == dataclasses.replace(cfg, output="runs/teacher")
    with pytest.raises(LadcError, match="already exists; pass --overwrite to replace it or --resume"):
        tune_teacher(again)
    with pytest.raises(LadcError, match="already finished"):
        tune_teacher(dataclasses.replace(again, resume=True))
    with pytest.raises(LadcError, match=r"optim.lr \(saved 0.001, given 0.5\)"):
        build_run_config(TuneTeacherConfig, None, {"output": "runs/teacher", "resume": True, "optim.lr": 0.5})
