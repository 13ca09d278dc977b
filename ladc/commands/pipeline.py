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

from ladc.errors import LadcError
from ladc.runs.config import (
    BenchConfig,
    DataConfig,
    DistillConfig,
    ExportConfig,
    TuneTeacherConfig,
    check_config,
    from_dict,
    load_yaml,
    save_yaml,
    with_preset,
)
from ladc.runs.export_manifest import EXPORT_MANIFEST
from ladc.runs.faults import kill_point
from ladc.runs.knobs import EVERY_KEY, at_least, knob
from ladc.runs.manifest import METRICS
from ladc.runs.resolve import yaml_line
from ladc.runs.runlock import locked_run
from ladc.runs.runs import check_replaceable

__all__ = [
    "StudentSpec", "PipelineConfig", "STAGES", "pipeline_stages", "load_pipeline_config", "run_pipeline", "run_demo",
    "demo_config_path",
]  # fmt: skip

STAGES = ("teacher", "student", "onnx", "bench", "report")  # without `students`; pipeline_stages adds theirs
MARKERS = {"teacher": METRICS, "student": METRICS, "onnx": EXPORT_MANIFEST, "bench": "bench.json"}


@dataclass(frozen=True)
class StudentSpec:
    """One more student for the frontier: its shape (and optionally init and seed); every other setting comes from
    the pipeline's `distill` section. Its stages are `student-NAME` (training) and `onnx-NAME` (export)."""

    name: str | None = None  # None -> from the shape, e.g. 3L-192H
    layers: int | None = None  # None -> distill.student_layers
    hidden: int | None = None  # None -> distill.student_hidden (the teacher's width)
    intermediate: int | None = None
    heads: int | None = None
    init: str | None = None  # None -> distill.student_init (prune when narrower)
    seed: int | None = None  # None -> distill.optim.seed
    lr: float | None = None  # None -> distill.optim.lr (narrow students often want a larger one)

    def stage_name(self) -> str:
        if self.name:
            return self.name
        parts = [f"{value}{unit}" for value, unit in ((self.layers, "L"), (self.hidden, "H"),
                 (self.intermediate, "I"), (self.heads, "A")) if value is not None]  # fmt: skip
        parts += [self.init] if self.init else []
        parts += [f"seed{self.seed}"] if self.seed is not None else []
        return "-".join(parts) or "default"


@dataclass(frozen=True)
class PipelineConfig:
    """One YAML file for the whole path. The pipeline fills every stage's paths, task and data itself."""

    run_dir: str = knob("runs/pipeline", "The run dir: one subdirectory per stage, report.md on top.")
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TuneTeacherConfig = field(default_factory=TuneTeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # every backend this machine has, ranked by speed: a pipeline user gets the fastest correct artifact for their CPU
    export: ExportConfig = field(
        default_factory=lambda: ExportConfig(optimize=True, quantize="dynamic", select="fastest")
    )
    bench: BenchConfig = field(default_factory=BenchConfig)
    # more student shapes: each is trained, exported with the export section and benched at its chosen artifact; the
    # teacher is then exported too, and the report adds the accuracy-speed frontier (ladc/bench/frontier.py)
    students: tuple[StudentSpec, ...] = knob((), "More student shapes, for the accuracy-speed frontier.")
    max_drop: float = knob(
        1.0,
        "Pick the fastest student within this many holdout points of the teacher.",
        check=at_least(0, "{name} must be a number of points >= 0, got {value}"),
    )


def pipeline_stages(cfg: PipelineConfig) -> tuple[str, ...]:
    """The stages in run order: STAGES, with the teacher's export and each extra student's two stages before bench."""
    if not cfg.students:
        return STAGES
    extra = ["teacher-onnx"]
    for spec in cfg.students:
        extra += [f"student-{spec.stage_name()}", f"onnx-{spec.stage_name()}"]
    return (*STAGES[:3], *extra, *STAGES[3:])


def _kind(stage: str) -> str:
    """teacher | student | onnx | bench | report: what a stage runs."""
    if stage in ("teacher", "bench", "report"):
        return stage
    return "student" if stage.startswith("student") else "onnx"


# fields each stage gets from the pipeline; setting them in the YAML is an error rather than silently ignored
_OWNED = {
    "teacher": ("output", "data", "overwrite", "resume"),
    "distill": ("teacher", "output", "data", "overwrite", "resume"),
    "export": ("model", "output", "task", "data_dir", "cache_dir", "overwrite"),
    "bench": ("targets", "data", "output", "overwrite"),
}


def load_pipeline_config(path: str | Path, max_drop: float | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML (unknown keys get a did-you-mean hint; wrong types name the key); a given
    `max_drop` (the CLI's --max-drop) overrides the file's."""
    raw = load_yaml(path)
    if max_drop is not None:
        raw = {**raw, "max_drop": max_drop}
    for stage, owned in _OWNED.items():
        for key in owned:
            if isinstance(raw.get(stage), dict) and key in raw[stage]:
                raise LadcError(f"{path}: '{stage}.{key}' is set by the pipeline itself; remove it")
    return _checked(from_dict(PipelineConfig, _with_preset(raw), ""), path)


def _checked(cfg: PipelineConfig, where) -> PipelineConfig:
    names = [spec.stage_name() for spec in cfg.students]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise LadcError(f"{where}: students {', '.join(repeated)} appear twice; give each a distinct shape or name")
    try:
        check_config(cfg, EVERY_KEY)  # every stage's knobs now, not after the teacher has trained for hours
    except LadcError as exc:
        raise LadcError(f"{where}{yaml_line(Path(where), getattr(exc, 'key', None))}: {exc}") from None
    return cfg


def _with_preset(raw: dict) -> dict:
    """Apply `distill.preset` the way `ladc distill --preset` does (ladc.runs.config.with_preset)."""
    distill = raw.get("distill")
    if not isinstance(distill, dict):
        return raw
    task = (raw.get("data") or {}).get("task") or DataConfig().task
    return {**raw, "distill": with_preset(distill, task)}


def _stage_configs(cfg: PipelineConfig, run_dir: Path) -> dict:
    data = cfg.data
    teacher_dir, student_dir = run_dir / "teacher", run_dir / "student"
    onnx_dir, bench_dir = run_dir / "onnx", run_dir / "bench"
    stages = {
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
    }
    targets = [str(teacher_dir), str(student_dir), str(onnx_dir)]
    if cfg.students:
        stages["teacher-onnx"] = _export_stage(cfg, teacher_dir, run_dir / "teacher-onnx")
        targets.append(f"{run_dir / 'teacher-onnx'}@chosen")
    for spec in cfg.students:
        name = spec.stage_name()
        student, onnx = run_dir / f"student-{name}", run_dir / f"onnx-{name}"
        stages[f"student-{name}"] = _student_stage(cfg, spec, teacher_dir, student)
        stages[f"onnx-{name}"] = _export_stage(cfg, student, onnx)
        targets.append(f"{onnx}@chosen")
    stages["bench"] = dataclasses.replace(cfg.bench, targets=tuple(targets), data=data, output=str(bench_dir))
    return stages


def _export_stage(cfg: PipelineConfig, model_dir: Path, output: Path) -> ExportConfig:
    data = cfg.data
    return dataclasses.replace(cfg.export, model=str(model_dir), output=str(output), task=data.task,
                               data_dir=data.data_dir, cache_dir=data.cache_dir, select=cfg.export.select or "fastest")  # fmt: skip


def _student_stage(cfg: PipelineConfig, spec: StudentSpec, teacher_dir: Path, output: Path) -> DistillConfig:
    base = cfg.distill
    optim = base.optim
    if spec.seed is not None:
        optim = dataclasses.replace(optim, seed=spec.seed)
    if spec.lr is not None:
        optim = dataclasses.replace(optim, lr=spec.lr)
    return dataclasses.replace(
        base, teacher=str(teacher_dir), output=str(output), data=cfg.data, optim=optim,
        student_layers=spec.layers if spec.layers is not None else base.student_layers,
        student_hidden=spec.hidden if spec.hidden is not None else base.student_hidden,
        student_intermediate=spec.intermediate if spec.intermediate is not None else base.student_intermediate,
        student_heads=spec.heads if spec.heads is not None else base.student_heads,
        student_init=spec.init if spec.init is not None else base.student_init,
    )  # fmt: skip


def _finished(run_dir: Path, stage: str) -> bool:
    if stage == "report":
        return (run_dir / "report.md").is_file()
    return (run_dir / stage / MARKERS[_kind(stage)]).is_file()


def _clear_from(run_dir: Path, stages: tuple[str, ...], start: str) -> None:
    for stage in stages[stages.index(start) :]:
        target = run_dir / stage
        if target.is_dir():
            shutil.rmtree(target)
    for name in ("report.md", "report.png", "report.json", "frontier.md", "frontier.png", "frontier.json"):
        (run_dir / name).unlink(missing_ok=True)


def _run_stage(stage: str, stage_cfg, run_dir: Path) -> None:
    kind = _kind(stage)
    if kind == "teacher":
        from ladc.commands.teacher import tune_teacher

        in_progress = (run_dir / "teacher").is_dir()
        tune_teacher(dataclasses.replace(stage_cfg, resume=in_progress))
    elif kind == "student":
        from ladc.commands.distill import distill

        in_progress = (run_dir / stage).is_dir()
        distill(dataclasses.replace(stage_cfg, resume=in_progress))
    elif kind == "onnx":
        from ladc.deploy.export import export_onnx

        export_onnx(dataclasses.replace(stage_cfg, overwrite=True))  # an unfinished export dir is never kept
    elif kind == "bench":
        from ladc.bench.bench import run_bench

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
    from ladc.bench.compression import write_compression_report

    stages = pipeline_stages(cfg)
    if start is not None and start not in stages:
        raise LadcError(f"--from '{start}' is not a stage; expected one of {', '.join(stages)}")
    run_dir = Path(cfg.run_dir)
    if overwrite and run_dir.exists():
        check_replaceable(run_dir)  # a directory ladc did not write is refused, not deleted
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if start is not None:
        _clear_from(run_dir, stages, start)
    save_yaml(
        cfg,
        run_dir / "pipeline.yaml",
        header=f"resolved pipeline config; rerun: ladc pipeline --config {run_dir}/pipeline.yaml",
    )
    stage_cfgs = _stage_configs(cfg, run_dir)
    for number, stage in enumerate(stages, start=1):
        if _finished(run_dir, stage):
            echo(f"[{number}/{len(stages)}] {stage}: already finished, skipped")
            continue
        resuming = _kind(stage) in ("teacher", "student") and (run_dir / stage).is_dir()
        echo(f"[{number}/{len(stages)}] {stage}: {'resuming' if resuming else 'running'}")
        started = time.perf_counter()
        if stage == "report":
            write_compression_report(run_dir, extra_markdown=_frontier(cfg, run_dir))
        else:
            _run_stage(stage, stage_cfgs[stage], run_dir)
        echo(f"[{number}/{len(stages)}] {stage}: done in {time.perf_counter() - started:.0f} s")
        kill_point("stage-done")  # test-only (ladc/runs/faults.py)
    return run_dir / "report.md"


def _frontier(cfg: PipelineConfig, run_dir: Path) -> str:
    """The frontier section of the report ('' without extra students)."""
    if not cfg.students:
        return ""
    from ladc.bench.frontier import write_frontier_report

    students = [("student", "student", "onnx")] + [
        (f"student-{spec.stage_name()}", f"student-{spec.stage_name()}", f"onnx-{spec.stage_name()}")
        for spec in cfg.students
    ]
    return write_frontier_report(run_dir, students, cfg.max_drop)


def demo_config_path() -> Path:
    return Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def run_demo(output: str, overwrite: bool = False, echo=print) -> Path:
    """The embedded offline demo: bundled MiniLM + the bundled demo sentences, whole pipeline, in minutes on 2 cores."""
    raw = load_yaml(demo_config_path())
    raw["run_dir"] = output
    raw.setdefault("data", {})["data_dir"] = str(Path(__file__).resolve().parents[1] / "demo_data")
    cfg = _checked(from_dict(PipelineConfig, _with_preset(raw), ""), demo_config_path())
    return run_pipeline(cfg, overwrite=overwrite, echo=echo)
