"""`ladc pipeline` and `ladc demo`: tune-teacher -> distill -> export -> bench -> compression report, resumable.

Each stage writes its own subdirectory of the run dir and counts as finished once its completion marker exists
(metrics.json for training stages, export.json, bench.json, report.md); a rerun skips finished stages and resumes an
interrupted training stage from its last checkpoint. `--from STAGE` deletes that stage and every later one first.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ladc.config import (
    BenchConfig,
    DataConfig,
    DistillConfig,
    ExportConfig,
    TuneTeacherConfig,
    from_dict,
    load_yaml,
    save_yaml,
    with_preset,
)
from ladc.errors import LadcError
from ladc.faults import kill_point
from ladc.runlock import locked_run
from ladc.runs import EXPORT_MANIFEST, METRICS, check_replaceable

__all__ = ["PipelineConfig", "STAGES", "load_pipeline_config", "run_pipeline", "run_demo", "demo_config_path"]

STAGES = ("teacher", "student", "onnx", "bench", "report")
MARKERS = {"teacher": METRICS, "student": METRICS, "onnx": EXPORT_MANIFEST, "bench": "bench.json"}


@dataclass(frozen=True)
class PipelineConfig:
    """One YAML file for the whole path. The pipeline fills every stage's paths, task and data itself."""

    run_dir: str = "runs/pipeline"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TuneTeacherConfig = field(default_factory=TuneTeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # every backend this machine has, ranked by speed: a pipeline user gets the fastest correct artifact for their CPU
    export: ExportConfig = field(
        default_factory=lambda: ExportConfig(optimize=True, quantize="dynamic", select="fastest")
    )
    bench: BenchConfig = field(default_factory=BenchConfig)


# fields each stage gets from the pipeline; setting them in the YAML is an error rather than silently ignored
_OWNED = {
    "teacher": ("output", "data", "overwrite", "resume"),
    "distill": ("teacher", "output", "data", "overwrite", "resume"),
    "export": ("model", "output", "task", "data_dir", "cache_dir", "overwrite"),
    "bench": ("targets", "data", "output", "overwrite"),
}


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML (unknown keys get a did-you-mean hint; wrong types name the key)."""
    raw = load_yaml(path)
    for stage, owned in _OWNED.items():
        for key in owned:
            if isinstance(raw.get(stage), dict) and key in raw[stage]:
                raise LadcError(f"{path}: '{stage}.{key}' is set by the pipeline itself; remove it")
    return from_dict(PipelineConfig, _with_preset(raw), "")


def _with_preset(raw: dict) -> dict:
    """Apply `distill.preset` the way `ladc distill --preset` does (ladc.config.with_preset)."""
    distill = raw.get("distill")
    if not isinstance(distill, dict):
        return raw
    task = (raw.get("data") or {}).get("task") or DataConfig().task
    return {**raw, "distill": with_preset(distill, task)}


def _stage_configs(cfg: PipelineConfig, run_dir: Path) -> dict:
    data = cfg.data
    teacher_dir, student_dir = run_dir / "teacher", run_dir / "student"
    onnx_dir, bench_dir = run_dir / "onnx", run_dir / "bench"
    return {
        "teacher": dataclasses.replace(cfg.teacher, output=str(teacher_dir), data=data),
        "student": dataclasses.replace(cfg.distill, teacher=str(teacher_dir), output=str(student_dir), data=data),
        "onnx": dataclasses.replace(
            cfg.export,
            model=str(student_dir),
            output=str(onnx_dir),
            task=data.task,
            data_dir=data.data_dir,
            cache_dir=data.cache_dir,
        ),  # fmt: skip
        "bench": dataclasses.replace(
            cfg.bench, targets=(str(teacher_dir), str(student_dir), str(onnx_dir)), data=data, output=str(bench_dir)
        ),
    }


def _finished(run_dir: Path, stage: str) -> bool:
    if stage == "report":
        return (run_dir / "report.md").is_file()
    return (run_dir / stage / MARKERS[stage]).is_file()


def _clear_from(run_dir: Path, start: str) -> None:
    for stage in STAGES[STAGES.index(start) :]:
        target = run_dir / stage
        if target.is_dir():
            shutil.rmtree(target)
    for name in ("report.md", "report.png", "report.json"):
        (run_dir / name).unlink(missing_ok=True)


def _run_stage(stage: str, stage_cfg, run_dir: Path) -> None:
    if stage == "teacher":
        from ladc.teacher import tune_teacher

        in_progress = (run_dir / "teacher").is_dir()
        tune_teacher(dataclasses.replace(stage_cfg, resume=in_progress))
    elif stage == "student":
        from ladc.distill import distill

        in_progress = (run_dir / "student").is_dir()
        distill(dataclasses.replace(stage_cfg, resume=in_progress))
    elif stage == "onnx":
        from ladc.export import export_onnx

        export_onnx(dataclasses.replace(stage_cfg, overwrite=True))  # an unfinished export dir is never kept
    elif stage == "bench":
        from ladc.bench import run_bench

        run_bench(dataclasses.replace(stage_cfg, overwrite=True))


@locked_run("ladc pipeline", attribute="run_dir")  # one pipeline per run dir (its stages lock their own dirs)
def run_pipeline(cfg: PipelineConfig, *, start: str | None = None, overwrite: bool = False, echo=print) -> Path:
    """Run every unfinished stage in order; returns the path of report.md.

    Args:
        cfg: the pipeline config.
        start: restart from this stage (it and every later stage are deleted first).
        overwrite: delete the whole run dir first.
        echo: where stage progress lines go.
    """
    from ladc.compression import write_compression_report

    if start is not None and start not in STAGES:
        raise LadcError(f"--from '{start}' is not a stage; expected one of {', '.join(STAGES)}")
    run_dir = Path(cfg.run_dir)
    if overwrite and run_dir.exists():
        check_replaceable(run_dir)  # a directory ladc did not write is refused, not deleted
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if start is not None:
        _clear_from(run_dir, start)
    save_yaml(
        cfg,
        run_dir / "pipeline.yaml",
        header=f"resolved pipeline config; rerun: ladc pipeline --config {run_dir}/pipeline.yaml",
    )
    stage_cfgs = _stage_configs(cfg, run_dir)
    for number, stage in enumerate(STAGES, start=1):
        if _finished(run_dir, stage):
            echo(f"[{number}/{len(STAGES)}] {stage}: already finished, skipped")
            continue
        resuming = stage in ("teacher", "student") and (run_dir / stage).is_dir()
        echo(f"[{number}/{len(STAGES)}] {stage}: {'resuming' if resuming else 'running'}")
        started = time.perf_counter()
        if stage == "report":
            write_compression_report(run_dir)
        else:
            _run_stage(stage, stage_cfgs[stage], run_dir)
        echo(f"[{number}/{len(STAGES)}] {stage}: done in {time.perf_counter() - started:.0f} s")
        kill_point("stage-done")  # test-only (ladc/faults.py)
    return run_dir / "report.md"


def demo_config_path() -> Path:
    return Path(__file__).resolve().parent / "configs" / "demo.yaml"


def run_demo(output: str, overwrite: bool = False, echo=print) -> Path:
    """The embedded offline demo: bundled MiniLM + the bundled demo sentences, whole pipeline, in minutes on 2 cores."""
    raw = load_yaml(demo_config_path())
    raw["run_dir"] = output
    raw.setdefault("data", {})["data_dir"] = str(Path(__file__).resolve().parent / "demo_data")
    cfg = from_dict(PipelineConfig, _with_preset(raw), "")
    return run_pipeline(cfg, overwrite=overwrite, echo=echo)
