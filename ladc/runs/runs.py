"""Run directories as one concept: default output names, the exists/--overwrite/--resume check, the config a run dir
decides, atomic finalize, and what the manifests of run and export dirs say (data source, task, package versions).

The manifest itself (ladc.json) is ladc.runs.manifest; the checkpoint files inside a run are ladc.runs.checkpoint_files.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladc.errors import LadcError
from ladc.runs.checkpoint_files import CHECKPOINT_DIR, TEMP_PATTERNS, latest_checkpoint
from ladc.runs.config import (
    BenchConfig,
    DataConfig,
    DistillConfig,
    ExportConfig,
    TuneTeacherConfig,
    build_config,
    dotted_get,
    dotted_keys,
    from_dict,
    load_yaml,
    save_yaml,
    shown,
)
from ladc.runs.export_manifest import EXPORT_MANIFEST, is_export_dir, read_export_manifest
from ladc.runs.faults import kill_point
from ladc.runs.io import atomic_write_json, check_output_path
from ladc.runs.manifest import METRICS, RUN_MANIFEST, RunManifest, read_manifest
from ladc.runs.runlock import launcher_rank, run_lock

__all__ = ["SAVED_CONFIG", "versions", "data_config_from_run", "infer_task", "DEFAULT_OUTPUTS", "default_output",
    "with_default_output", "check_output", "LADC_MANIFESTS", "check_replaceable", "build_run_config",
    "load_saved_config", "check_resume", "resolve_run_config", "create_run_dir", "finalize_run",
    "run_command"]  # fmt: skip

SAVED_CONFIG = "config.yaml"  # the resolved config, so `--config RUN/config.yaml` repeats the run
# a directory holding one of these was written by ladc, so --overwrite may replace it: a finished training run, an
# export, a bench report, a pipeline run dir (written first, before any stage)
LADC_MANIFESTS = (RUN_MANIFEST, EXPORT_MANIFEST, "bench.json", "pipeline.yaml")
_TRAINING_PARTS = (CHECKPOINT_DIR, "best", *TEMP_PATTERNS)  # what an unfinished training run holds


# ----------------------------------------------------------------------------- what the manifests say


def versions() -> dict[str, str]:
    """Package versions recorded in every manifest, so a run can be reproduced."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ladc", "torch", "transformers", "datasets", "accelerate", "onnx", "onnxruntime", "optimum",
                 "optimum-onnx"):  # fmt: skip
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def data_config_from_run(model_dir: str, task: str | None, data_dir: str | None) -> DataConfig:
    """DataConfig for a run dir: explicit task/data_dir win, else what its ladc.json recorded."""
    manifest = read_manifest(model_dir) or RunManifest()
    recorded = manifest.data if isinstance(manifest.data, dict) else {}
    task = task or manifest.task or recorded.get("task")
    if not task:
        raise LadcError(f"no --task given and {Path(model_dir) / RUN_MANIFEST} does not record one; pass --task")
    keep = {k: recorded[k] for k in ("max_seq_len", "text_fields", "label_field") if recorded.get(k) is not None}
    if data_dir is None and recorded.get("task") == task:
        data_dir = recorded.get("data_dir")
    return from_dict(DataConfig, {"task": task, "data_dir": data_dir, **keep}, str(Path(model_dir) / RUN_MANIFEST))


def _target_task(arg: str) -> str | None:
    """The task a bench target records: export.json (export dirs, their files) or ladc.json (run dirs)."""
    engine, sep, rest = arg.partition(":")  # an ENGINE:FILE target (openvino:model.onnx) records FILE's
    path = Path(rest if sep and engine.isidentifier() and not Path(arg).exists() else arg)
    folder = path if path.is_dir() else path.parent
    if is_export_dir(folder):
        return read_export_manifest(folder).task or None
    return getattr(read_manifest(folder), "task", None)


def infer_task(paths: list[str] | tuple[str, ...]) -> str | None:
    """The task every target's manifest agrees on, or None when no target records one.

    Raises:
        LadcError: targets record different tasks.
    """
    recorded = {arg: task for arg in paths if (task := _target_task(str(arg)))}
    tasks = sorted(set(recorded.values()))
    if len(tasks) > 1:
        described = "; ".join(f"{arg}: {task}" for arg, task in recorded.items())
        raise LadcError(f"the targets were trained on different tasks ({described}); pass --task to choose one")
    return tasks[0] if tasks else None


# ----------------------------------------------------------------------------- output names and the exists check


def _sibling_of_model(cfg: ExportConfig) -> str:
    source = Path(cfg.model.rstrip("/"))  # runs/student-sst2 -> runs/onnx-student-sst2
    return str(source.parent / f"onnx-{source.name}")


def _bench_of_task(cfg: BenchConfig) -> str:
    from ladc.data.tasks import get_task

    return f"runs/bench-{get_task(cfg.data.task).name}"


# where each command writes when neither --output nor its YAML names a place (configs leave `output` None for this)
DEFAULT_OUTPUTS: dict[type, Callable[[Any], str]] = {
    TuneTeacherConfig: lambda cfg: "runs/teacher",
    DistillConfig: lambda cfg: "runs/student",
    ExportConfig: _sibling_of_model,
    BenchConfig: _bench_of_task,
}


def default_output(cfg: Any) -> str | None:
    """`cfg.output`, else the command's default place (None for configs without one, e.g. evaluate's)."""
    if cfg.output or type(cfg) not in DEFAULT_OUTPUTS:
        return cfg.output
    return DEFAULT_OUTPUTS[type(cfg)](cfg)


def with_default_output(cfg: Any) -> Any:
    return cfg if cfg.output else dataclasses.replace(cfg, output=default_output(cfg))


def check_output(output: str | Path, *, overwrite: bool, resume: bool | None = None) -> Path:
    """Refuse to touch an existing output without --overwrite (or, for training runs, --resume). Touches nothing.

    `resume` is None for commands that cannot resume (export, bench): the hint then leaves --resume out.

    Raises:
        LadcError: a file on the way, an unwritable location, a non-empty dir without --overwrite/--resume, both
            flags at once, or --resume of a run that already finished.
    """
    path = check_output_path(output)
    if resume and overwrite:
        raise LadcError("--resume continues a run and --overwrite deletes it; pass one of them")
    if resume and (path / METRICS).is_file():
        raise LadcError(f"run {path} already finished ({METRICS} exists); use --overwrite to start again")
    # other launcher ranks: rank 0 checks and creates the run dir, and may have made it already
    if not (resume or overwrite) and path.is_dir() and any(path.iterdir()) and launcher_rank() == 0:
        hint = " or --resume to continue it" if resume is not None else ""
        raise LadcError(f"output dir {path} already exists; pass --overwrite to replace it{hint}")
    if overwrite:
        check_replaceable(path)
    return path


def check_replaceable(path: str | Path) -> None:
    """Refuse to let --overwrite delete a directory ladc did not write. Touches nothing.

    Replaceable: no directory, an empty one, one holding a ladc manifest (`LADC_MANIFESTS`), or an unfinished training
    run (its saved config.yaml, a tune-teacher or distill config, beside checkpoints and temp files only).

    Raises:
        LadcError: naming a file the deletion would lose.
    """
    path = Path(path)
    if not path.is_dir() or any((path / name).is_file() for name in LADC_MANIFESTS):
        return
    entries = sorted(path.iterdir())
    if not entries or _unfinished_training_run(path, entries):
        return
    foreign = [e for e in entries if e.name != SAVED_CONFIG and not _is_training_part(e.name)] or entries
    lost = next((f for e in foreign for f in ([e] if e.is_file() else sorted(e.rglob("*"))) if f.is_file()), foreign[0])
    raise LadcError(
        f"--overwrite would delete {lost}: {path} was not written by ladc (it holds no {', '.join(LADC_MANIFESTS)}); "
        "choose another output, or empty the directory yourself"
    )


def _is_training_part(name: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(name, pattern) for pattern in _TRAINING_PARTS)


def _unfinished_training_run(path: Path, entries: list[Path]) -> bool:
    others = [e for e in entries if e.name != SAVED_CONFIG]
    if len(others) == len(entries) or not all(_is_training_part(e.name) for e in others):
        return False
    try:
        saved = load_yaml(path / SAVED_CONFIG)
    except LadcError:
        return False
    return any(set(saved) <= {f.name for f in dataclasses.fields(cls)} for cls in (TuneTeacherConfig, DistillConfig))


# ----------------------------------------------------------------------------- configs of run dirs


def build_run_config(cls: type, yaml_path: str | Path | None, overrides: dict) -> Any:
    """The config a command runs with: `config.build_config` (defaults < preset < YAML < CLI flags), then what a
    run dir decides: the task bench targets record, the default output, and on --resume the saved-config check.

    Raises:
        LadcError: bad YAML/values; bench targets that record no task or different ones; on --resume, an option that
            differs from the run's saved config.yaml.
    """
    raw = load_yaml(yaml_path) if yaml_path else {}
    cfg = build_config(cls, yaml_path, overrides, raw=raw)
    given = [*dotted_keys(raw), *(key for key, value in overrides.items() if value is not None)]
    if isinstance(cfg, BenchConfig) and "data.task" not in given and "data" not in raw:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, task=_recorded_task(cfg.targets)))
    check_resume(cfg, given)
    return with_default_output(cfg)


def _recorded_task(targets: tuple[str, ...]) -> str:
    task = infer_task(list(targets)) if targets else None
    if task is None:
        named = ", ".join(targets) or "(none)"
        raise LadcError(f"no --task given and no target records one in its {RUN_MANIFEST} or {EXPORT_MANIFEST} ({named}); "
                        "pass --task")  # fmt: skip
    return task


def load_saved_config(cls: type, run_dir: str | Path) -> dict | None:
    """The config.yaml a training run saved in `run_dir` (None when there is none), checked to belong to `cls`.

    Raises:
        LadcError: the file is unreadable, or another command's config (e.g. a distill run given to tune-teacher).
    """
    path = Path(run_dir) / SAVED_CONFIG
    if not path.is_file():
        return None
    saved = load_yaml(path)
    names = {f.name for f in dataclasses.fields(cls)}
    if not set(saved) <= names:
        commands = {"tune-teacher": TuneTeacherConfig, "distill": DistillConfig}
        other = next((c for c, k in commands.items() if set(saved) <= {f.name for f in dataclasses.fields(k)}), None)
        mine = next((c for c, k in commands.items() if k is cls), cls.__name__)
        if other is not None and other != mine:
            raise LadcError(
                f"{run_dir} is a `ladc {other}` run, not a `ladc {mine}` one; continue it with "
                f"`ladc {other} --resume --output {run_dir}`"
            )
        from_dict(cls, saved, "")  # names the first unknown key
    return saved


def check_resume(cfg: Any, given: list[str]) -> None:
    """On --resume the run continues with its saved config.yaml: refuse options given now that differ from it.

    `given` lists the dotted keys the user set (YAML and CLI flags); defaults are not compared, so repeating the
    original command with --resume, or `--resume --output DIR` alone, both continue the run.

    Raises:
        LadcError: naming each differing key with its saved and given values.
    """
    if not getattr(cfg, "resume", False) or not cfg.output:
        return
    saved = load_saved_config(type(cfg), cfg.output)
    if saved is None:
        return
    saved_cfg = from_dict(type(cfg), saved, "")
    differing = []
    for key in dict.fromkeys(given):
        if key.split(".")[0] in ("output", "resume", "overwrite"):
            continue
        now, before = dotted_get(cfg, key), dotted_get(saved_cfg, key)
        if now != before:
            differing.append(f"{key} (saved {shown(before, 30)}, given {shown(now, 30)})")
    if differing:
        raise LadcError(
            f"cannot resume {cfg.output}: it was started with other options: {', '.join(differing)}; drop them to "
            f"continue with its saved {SAVED_CONFIG}, or pass --overwrite instead of --resume to start again"
        )


def resolve_run_config(cfg: Any) -> Any:
    """Check the run dir without touching it; on --resume the saved config wins so the run continues unchanged.

    Raises:
        LadcError: the dir exists without --overwrite/--resume, the run to resume already finished or has a damaged
            checkpoint.
    """
    run_dir = check_output(cfg.output, overwrite=cfg.overwrite, resume=cfg.resume)
    if cfg.resume and run_dir.is_dir():
        latest_checkpoint(run_dir, warn=False)  # raises when every checkpoint is damaged; fit() warns on a fallback
    loaded = load_saved_config(type(cfg), run_dir) if cfg.resume else None
    if loaded is not None:
        # the output as given now: a relative path saved from another working directory would point elsewhere
        loaded.update({"resume": True, "overwrite": False, "output": cfg.output})
        cfg = from_dict(type(cfg), loaded, "")
    return cfg


# ----------------------------------------------------------------------------- creating and finishing a run dir


def create_run_dir(cfg: Any) -> Path:
    """Create (or, with --overwrite, replace) the run dir and save the resolved config into it.

    Called only after the model and data loaded, so bad input never leaves an empty run dir behind.
    """
    if launcher_rank() != 0:  # only the main process creates and finalizes run dirs
        return Path(cfg.output)
    run_dir = check_output(cfg.output, overwrite=cfg.overwrite, resume=cfg.resume)
    if cfg.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LadcError(f"cannot create output dir {run_dir}: {exc.strerror or exc}") from None
    saved = run_dir / SAVED_CONFIG
    save_yaml(cfg, saved, header=f"resolved config of {run_dir}; rerun with: ladc <command> --config {saved}")
    return run_dir


def _link_or_copy(source, target) -> None:
    """A hard link (no copy of the weights, the source stays intact); a copy where the file system has no links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def finalize_run(run_dir: Path, manifest: RunManifest, metrics: dict) -> None:
    """Link the best checkpoint's files into the run dir root, write ladc.json and metrics.json, then clean up.

    metrics.json is written last on purpose: its presence marks a finished run (pipeline skips on it). best/ and
    checkpoints/ stay until then, so a run killed while finalizing is still resumable.
    """
    if launcher_rank() != 0:  # the main process writes the files; the other ranks wrote nothing
        return
    best = run_dir / "best"
    if not best.is_dir():
        raise RuntimeError(f"no best checkpoint in {best}: training ended without an evaluation")
    for item in best.iterdir():
        target, staged = run_dir / item.name, run_dir / f".{item.name}.tmp"
        if item.is_dir():
            shutil.copytree(item, staged, copy_function=_link_or_copy, dirs_exist_ok=True)
        else:
            staged.unlink(missing_ok=True)
            _link_or_copy(item, staged)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staged, target)
        if staged.exists():  # rename(2) does nothing when both names link one file (left by a killed finalize)
            staged.unlink()
        kill_point("finalize")
    atomic_write_json(run_dir / RUN_MANIFEST, manifest.to_dict())
    kill_point("finalize-manifest")
    from ladc.runs.card import write_run_card

    write_run_card(run_dir, manifest.to_dict(), metrics)  # README.md, the model card; before the finished marker
    atomic_write_json(run_dir / METRICS, metrics)
    shutil.rmtree(best, ignore_errors=True)
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


def run_command(command: str) -> Callable:
    """Decorator of a command's library function `function(cfg, ...)`: fill the default output, then hold its lock
    (ladc.runs.runlock) for the whole run, so a second process on the same output is refused naming this one."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(cfg, *args, **kwargs):
            cfg = with_default_output(cfg)
            with run_lock(cfg.output, command):
                return function(cfg, *args, **kwargs)

        return wrapper

    return decorate
