"""Tests for ladc/runs/runs.py: what manifests say, default outputs, the exists/--overwrite/--resume check, finalize,
configs."""

from __future__ import annotations

import json

import pytest

from ladc.errors import LadcError
from ladc.runs.config import (
    BenchConfig,
    DataConfig,
    DistillConfig,
    ExportConfig,
    OptimConfig,
    TuneTeacherConfig,
    save_yaml,
)
from ladc.runs.manifest import read_manifest
from ladc.runs.runs import (
    LADC_MANIFESTS,
    build_run_config,
    check_output,
    check_replaceable,
    check_resume,
    create_run_dir,
    data_config_from_run,
    default_output,
    finalize_run,
    infer_task,
    load_saved_config,
    run_command,
)
from tests.helpers import write_run_manifest
from tests.test_manifest import STUDENT

# ----------------------------------------------------------------------------- what the manifests say


def test_data_config_from_run(tmp_path):
    run_dir = write_run_manifest(tmp_path / "r", json.dumps({"task": "rte", "data": {"task": "rte", "data_dir": "/g",
                                                                           "max_seq_len": 64}}))  # fmt: skip
    assert data_config_from_run(str(run_dir), None, None) == DataConfig(task="rte", data_dir="/g", max_seq_len=64)
    assert data_config_from_run(str(run_dir), None, "/other").data_dir == "/other"  # an explicit flag wins
    other_task = data_config_from_run(str(run_dir), "wnli", None)
    assert (other_task.task, other_task.data_dir) == ("wnli", None)  # rte's data dir says nothing about wnli
    with pytest.raises(LadcError, match="does not record one; pass --task"):
        data_config_from_run(str(tmp_path), None, None)


def test_infer_task_from_run_and_export_manifests(tmp_path):
    run_dir = write_run_manifest(tmp_path / "student", '{"task": "rte"}')
    export_dir = tmp_path / "onnx"
    export_dir.mkdir()
    (export_dir / "export.json").write_text('{"task": "rte"}')
    assert infer_task([str(run_dir), str(export_dir / "model.onnx"), str(tmp_path / "bare")]) == "rte"
    assert infer_task([str(tmp_path / "bare")]) is None
    write_run_manifest(tmp_path / "other", '{"task": "sst2"}')
    with pytest.raises(LadcError, match="different tasks"):
        infer_task([str(run_dir), str(tmp_path / "other")])


# ----------------------------------------------------------------------------- outputs


def test_default_outputs_are_chosen_in_one_place():
    assert default_output(ExportConfig(model="runs/student-sst2/")) == "runs/onnx-student-sst2"
    assert default_output(BenchConfig(data=DataConfig(task="SST-2"))) == "runs/bench-sst2"
    assert default_output(TuneTeacherConfig()) == "runs/teacher"
    assert default_output(DistillConfig()) == "runs/student"
    assert default_output(DistillConfig(output="x")) == "x"


def test_check_output(tmp_path):
    assert check_output(tmp_path / "new", overwrite=False) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", overwrite=False)  # nothing to lose
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(LadcError, match=r"already exists; pass --overwrite to replace it$"):
        check_output(full, overwrite=False)
    with pytest.raises(LadcError, match="--overwrite to replace it or --resume to continue it"):
        check_output(full, overwrite=False, resume=False)
    with pytest.raises(LadcError, match=rf"^--overwrite would delete {full / 'x'}: {full} was not written by ladc"):
        check_output(full, overwrite=True)
    check_output(full, overwrite=False, resume=True)
    with pytest.raises(LadcError, match="pass one of them"):
        check_output(full, overwrite=True, resume=True)
    (full / "metrics.json").write_text("{}")
    with pytest.raises(LadcError, match="already finished"):
        check_output(full, overwrite=False, resume=True)
    with pytest.raises(LadcError, match="is a file, not a directory"):
        check_output(full / "x" / "out", overwrite=True)
    assert sorted(p.name for p in full.iterdir()) == ["metrics.json", "x"]  # the check touched nothing


def test_run_command_fills_the_default_output_and_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []

    @run_command("ladc test")
    def command(cfg):
        seen.append((cfg.output, sorted(p.name for p in (tmp_path / "runs").iterdir())))

    command(DistillConfig())
    assert seen == [("runs/student", [".student.lock"])]
    assert not (tmp_path / "runs" / ".student.lock").exists()  # released afterwards


# ----------------------------------------------------------------------------- creating and finishing a run dir


def test_create_run_dir_saves_the_config_and_refuses_to_clobber(tmp_path):
    cfg = TuneTeacherConfig(model="m", output=str(tmp_path / "t"), optim=OptimConfig(lr=0.001))
    run_dir = create_run_dir(cfg)
    assert load_saved_config(TuneTeacherConfig, run_dir)["optim"]["lr"] == 0.001
    with pytest.raises(LadcError, match="already exists"):
        create_run_dir(cfg)
    (run_dir / "checkpoints" / "step-2").mkdir(parents=True)  # an unfinished run: --overwrite starts it again
    create_run_dir(TuneTeacherConfig(model="m", output=str(run_dir), overwrite=True))
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("manifest", [*LADC_MANIFESTS, None])
def test_overwrite_replaces_only_what_ladc_wrote(tmp_path, manifest):
    """A directory with a ladc manifest (whatever else it holds), an empty one, or an unfinished training run (its
    config.yaml beside checkpoints and temp files) may be replaced; anything else is refused, naming a file."""
    run_dir = tmp_path / "run"
    (run_dir / "sub").mkdir(parents=True)
    (run_dir / "sub" / "thesis.tex").write_text("years of work")
    if manifest is not None:
        (run_dir / manifest).write_text("{}")
        check_replaceable(run_dir)
        return
    message = rf"^--overwrite would delete {run_dir / 'sub' / 'thesis.tex'}: {run_dir} was not written by ladc \("
    with pytest.raises(LadcError, match=message):
        check_replaceable(run_dir)
    check_replaceable(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty")
    unfinished = tmp_path / "unfinished"
    save_yaml(DistillConfig(output=str(unfinished)), unfinished / "config.yaml")
    for name in ("checkpoints", "best", ".best.tmp-123", ".ladc.json.abc.tmp"):
        (unfinished / name).mkdir()
    check_replaceable(unfinished)
    (unfinished / "notes.md").write_text("mine")  # a file no training run writes: the dir is no longer only ladc's
    with pytest.raises(LadcError, match=r"would delete .*notes\.md"):
        check_replaceable(unfinished)
    copied = tmp_path / "experiments"  # a config.yaml copied from a run beside the user's own files
    save_yaml(TuneTeacherConfig(), copied / "config.yaml")
    (copied / "results.csv").write_text("a,b\n")
    with pytest.raises(LadcError, match=r"would delete .*experiments/results\.csv"):
        check_replaceable(copied)
    foreign_yaml = tmp_path / "foreign"
    (foreign_yaml / "checkpoints").mkdir(parents=True)
    (foreign_yaml / "config.yaml").write_text("learning_rate: 3\n")  # another tool's config
    with pytest.raises(LadcError, match=r"would delete .*config\.yaml"):
        check_replaceable(foreign_yaml)
    assert (run_dir / "sub" / "thesis.tex").read_text() == "years of work"


def test_finalize_moves_the_best_checkpoint_and_writes_the_manifest_last(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "best").mkdir(parents=True)
    (run_dir / "best" / "model.safetensors").write_text("weights")
    (run_dir / "checkpoints" / "step-3").mkdir(parents=True)
    finalize_run(run_dir, STUDENT, {"dev": {"accuracy": 0.61}})
    assert sorted(p.name for p in run_dir.iterdir()) == ["README.md", "ladc.json", "metrics.json", "model.safetensors"]
    assert read_manifest(run_dir) == STUDENT
    with pytest.raises(RuntimeError, match="no best checkpoint"):
        finalize_run(tmp_path / "empty", STUDENT, {})


# ----------------------------------------------------------------------------- configs of run dirs


def test_resume_refuses_other_options_and_other_commands(tmp_path):
    run_dir = tmp_path / "t"
    run_dir.mkdir()
    save_yaml(TuneTeacherConfig(model="m", output=str(run_dir), optim=OptimConfig(lr=0.001)), run_dir / "config.yaml")
    same = TuneTeacherConfig(model="m", output=str(run_dir), optim=OptimConfig(lr=0.001), resume=True)
    check_resume(same, ["optim.lr", "model"])
    with pytest.raises(LadcError, match=r"optim.lr \(saved 0.001, given 0.5\)"):
        check_resume(TuneTeacherConfig(output=str(run_dir), optim=OptimConfig(lr=0.5), resume=True), ["optim.lr"])
    check_resume(TuneTeacherConfig(output=str(run_dir), optim=OptimConfig(lr=0.5)), ["optim.lr"])  # not resuming
    with pytest.raises(LadcError, match="is a `ladc tune-teacher` run, not a `ladc distill` one"):
        load_saved_config(DistillConfig, run_dir)


def test_bench_config_takes_its_task_from_the_targets(tmp_path):
    run_dir = write_run_manifest(tmp_path / "student-rte", '{"task": "rte"}')
    cfg = build_run_config(BenchConfig, None, {"targets": [str(run_dir)]})
    assert cfg.data.task == "rte" and cfg.output == "runs/bench-rte"
    assert build_run_config(BenchConfig, None, {"targets": [str(run_dir)], "data.task": "wnli"}).data.task == "wnli"
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text("data: {task: qnli}\n")
    assert build_run_config(BenchConfig, yaml_file, {"targets": [str(run_dir)]}).data.task == "qnli"
    with pytest.raises(LadcError, match="no --task given and no target records one"):
        build_run_config(BenchConfig, None, {"targets": [str(tmp_path / "model.onnx")]})


def test_export_config_output_defaults_beside_the_model_with_or_without_yaml(tmp_path):
    yaml_file = tmp_path / "x.yaml"
    yaml_file.write_text("optimize: true\n")
    from_flags = build_run_config(ExportConfig, None, {"model": "runs/student-sst2"})
    from_yaml = build_run_config(ExportConfig, yaml_file, {"model": "runs/student-sst2"})
    assert from_flags.output == from_yaml.output == "runs/onnx-student-sst2" and from_yaml.optimize
