"""`ladc.json`, the manifest of a tune-teacher or distill run dir, and `metrics.json`, its finished marker: one typed
record with one reader (the writer is `ladc.runs.runs.finalize_run`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ladc.errors import LadcError
from ladc.runs.config import from_dict
from ladc.runs.io import read_json

__all__ = ["RUN_MANIFEST", "METRICS", "RunManifest", "read_manifest", "recorded_dev"]

RUN_MANIFEST = "ladc.json"  # what a run dir is: task, data source, method, versions; read by every later command
METRICS = "metrics.json"  # written last by a training run: its presence marks the run finished


@dataclass(frozen=True)
class RunManifest:
    """ladc.json of a tune-teacher (`teacher`) or distill (`student`) run; all optional: a hand-made dir may record
    only its task."""

    kind: str | None = None  # teacher | student
    task: str | None = None
    teacher: str | None = None  # student: the teacher run dir it learned from
    base_model: str | None = None  # the pretrained checkpoint the run started from
    method: str | None = None  # student: a key of ladc.training.methods.METHODS
    teacher_layers: int | None = None
    student_layers: int | None = None
    layer_map: list[int] | None = None  # student: teacher layer per student layer (methods that match layers)
    student_init: str | None = None
    init_from: str | None = None
    seed: int | None = None
    data: dict = field(default_factory=dict)  # the run's DataConfig, so export/evaluate find the same dev set
    config: dict = field(default_factory=dict)  # the whole resolved config
    dev: dict | None = None  # dev metrics of the kept checkpoint (metrics.json `selection` says what picked it)
    lr: float | None = None  # the peak lr trained with (config.optim.lr may say `auto`)
    lr_source: str | None = None  # `given`, or how `auto` chose it (ladc.training.lr.auto_lr)
    mixed_precision: str | None = None  # the precision trained in: no | bf16 | fp16 (`auto` resolved on this machine)
    teacher_dev: dict | None = None
    retention: float | None = None  # student headline metric / teacher's
    # student: its shape and the teacher's (num_layers, hidden_size, intermediate_size, num_heads)
    student_shape: dict | None = None
    teacher_shape: dict | None = None
    versions: dict = field(default_factory=dict)
    # the train holdout that picked the kept checkpoint: rows, sha256 of their ids, the full split's rows, train_limit
    # (a student compares its own with its teacher's: ladc.data.training_data.holdout_overlap)
    holdout: dict | None = None

    def to_dict(self) -> dict:
        """The JSON object; a teacher's omits the student-only keys so its file reads as before."""
        values = dataclasses.asdict(self)
        if self.kind == "student":
            return values
        return {k: v for k, v in values.items() if k not in _STUDENT_ONLY}


_STUDENT_ONLY = ("teacher", "method", "teacher_layers", "student_layers", "layer_map", "student_init", "init_from",
                 "seed", "teacher_dev", "retention", "student_shape", "teacher_shape")  # fmt: skip


def read_manifest(run_dir: str | Path) -> RunManifest | None:
    """The run dir's ladc.json, or None when it has none (any HF classifier dir is a valid input).

    Raises:
        LadcError: one line naming the file when it is not valid JSON, not an object, or a field has a wrong type.
    """
    path = Path(run_dir) / RUN_MANIFEST
    if not path.is_file():
        return None
    values = read_json(path)  # LadcError naming the file and line on invalid JSON
    if not isinstance(values, dict):
        raise LadcError(f"{path}: expected a JSON object, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(RunManifest)}
    # keys a later ladc version adds are kept out rather than refused: an old ladc can still export a new run
    return from_dict(RunManifest, {k: v for k, v in values.items() if k in known}, str(path))


def recorded_dev(run_dir: str | Path) -> dict | None:
    """The dev metrics a finished run recorded in metrics.json, or None."""
    path = Path(run_dir) / METRICS
    metrics = read_json(path) if path.is_file() else None
    return metrics.get("dev") if isinstance(metrics, dict) else None
