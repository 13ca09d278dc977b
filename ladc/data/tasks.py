"""GLUE task registry (Wang et al., 2019): fields, labels, metrics and on-disk TSV layout per task."""

from __future__ import annotations

from dataclasses import dataclass

from ladc.errors import LadcError, did_you_mean

__all__ = ["TaskSpec", "TASKS", "get_task", "PRESETS", "preset_values"]


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task.

    Attributes:
        name: ladc name (`sst2`), also the hub config name of `nyu-mll/glue`.
        glue_dir: directory name in the original GLUE zip (`SST-2`).
        text_fields: hub column names of the one or two input texts.
        label_names: class names in the hub's label order; empty for regression.
        metrics: official metric names, the first one is the headline used to pick the best checkpoint.
        dev_splits: dev split names (MNLI has matched and mismatched).
        tsv_text_columns: column names (header tasks) or indices (header-less tasks) of the texts in GLUE TSVs.
        tsv_label_column: same for the label in train/dev TSVs.
        tsv_has_header: CoLA's TSVs have no header row; all other tasks do.
        tsv_dev_files: file stem per dev split (`dev_matched` for MNLI).
        tsv_test_files: file stem per test split.
    """

    name: str
    glue_dir: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    dev_splits: tuple[str, ...] = ("validation",)
    test_splits: tuple[str, ...] = ("test",)
    tsv_text_columns: tuple[str | int, ...] = ()
    tsv_label_column: str | int = "label"
    tsv_has_header: bool = True
    tsv_dev_files: tuple[str, ...] = ("dev",)
    tsv_test_files: tuple[str, ...] = ("test",)
    # GLUE submission file names (the leaderboard expects these exact names)
    submission_files: tuple[str, ...] = ()

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def headline_metric(self) -> str:
        return self.metrics[0]

    def dev_split(self, split: str | None = None) -> str:
        """Resolve `dev`/`validation`/`None` to this task's first dev split name."""
        if split in (None, "dev", "validation"):
            return self.dev_splits[0]
        return split


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            name="cola",
            glue_dir="CoLA",
            text_fields=("sentence",),
            label_names=("unacceptable", "acceptable"),
            metrics=("matthews_correlation", "accuracy"),
            # CoLA train/dev: source, label, original-label, sentence, no header; test has a header.
            tsv_text_columns=(3,),
            tsv_label_column=1,
            tsv_has_header=False,
            submission_files=("CoLA.tsv",),
        ),
        TaskSpec(
            name="sst2",
            glue_dir="SST-2",
            text_fields=("sentence",),
            label_names=("negative", "positive"),
            metrics=("accuracy",),
            tsv_text_columns=("sentence",),
            submission_files=("SST-2.tsv",),
        ),
        TaskSpec(
            name="mrpc",
            glue_dir="MRPC",
            text_fields=("sentence1", "sentence2"),
            label_names=("not_equivalent", "equivalent"),
            # accuracy and F1 are reported separately, never averaged under one name
            metrics=("f1", "accuracy"),
            tsv_text_columns=("#1 String", "#2 String"),
            tsv_label_column="Quality",
            submission_files=("MRPC.tsv",),
        ),
        TaskSpec(
            name="stsb",
            glue_dir="STS-B",
            text_fields=("sentence1", "sentence2"),
            label_names=(),
            metrics=("pearson", "spearmanr"),
            tsv_text_columns=("sentence1", "sentence2"),
            tsv_label_column="score",
            submission_files=("STS-B.tsv",),
        ),
        TaskSpec(
            name="qqp",
            glue_dir="QQP",
            text_fields=("question1", "question2"),
            label_names=("not_duplicate", "duplicate"),
            metrics=("f1", "accuracy"),
            tsv_text_columns=("question1", "question2"),
            tsv_label_column="is_duplicate",
            submission_files=("QQP.tsv",),
        ),
        TaskSpec(
            name="mnli",
            glue_dir="MNLI",
            text_fields=("premise", "hypothesis"),
            # hub order; the TSVs hold names and are mapped by name, never by index
            label_names=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            dev_splits=("validation_matched", "validation_mismatched"),
            test_splits=("test_matched", "test_mismatched"),
            tsv_text_columns=("sentence1", "sentence2"),
            tsv_label_column="gold_label",
            tsv_dev_files=("dev_matched", "dev_mismatched"),
            tsv_test_files=("test_matched", "test_mismatched"),
            submission_files=("MNLI-m.tsv", "MNLI-mm.tsv"),
        ),
        TaskSpec(
            name="qnli",
            glue_dir="QNLI",
            text_fields=("question", "sentence"),
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            tsv_text_columns=("question", "sentence"),
            submission_files=("QNLI.tsv",),
        ),
        TaskSpec(
            name="rte",
            glue_dir="RTE",
            text_fields=("sentence1", "sentence2"),
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",),
            tsv_text_columns=("sentence1", "sentence2"),
            submission_files=("RTE.tsv",),
        ),
        TaskSpec(
            name="wnli",
            glue_dir="WNLI",
            text_fields=("sentence1", "sentence2"),
            label_names=("not_entailment", "entailment"),
            metrics=("accuracy",),
            tsv_text_columns=("sentence1", "sentence2"),
            submission_files=("WNLI.tsv",),
        ),
    ]
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name (case-insensitive, GLUE directory names accepted).

    Raises:
        LadcError: the task is unknown.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise LadcError(f"unknown task '{name}'{did_you_mean(key, TASKS)}; expected one of: {', '.join(TASKS)}")
    return TASKS[key]


# Per-task distillation presets. `paper`: the LAD paper's hyperparameter table (6-layer student, batch 32,
# hard_w = soft_w = 0.5, seed 42); tasks it does not list use its QNLI row, as the paper does.
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "qnli": {"lr": 1e-4, "gate_lr": 1e-6, "epochs": 4, "warmup_ratio": 0.1, "temperature": 10, "mu": 1000},
        "sst2": {"lr": 1e-4, "gate_lr": 1e-6, "epochs": 20, "warmup_ratio": 0.3, "temperature": 20, "mu": 1000},
        "mrpc": {"lr": 7e-4, "gate_lr": 5e-6, "epochs": 20, "warmup_ratio": 0.1, "temperature": 10, "mu": 500},
        "rte": {"lr": 7e-4, "gate_lr": 3e-5, "epochs": 10, "warmup_ratio": 0.1, "temperature": 10, "mu": 1000},
    },
}
_PRESET_FALLBACK_TASK = "qnli"


def preset_values(preset: str, task: str) -> dict:
    """A preset's values for `task` as a nested distill-config mapping (`optim` holds the optimiser's).

    Raises:
        LadcError: the preset is unknown.
    """
    if preset not in PRESETS:
        raise LadcError(
            f"unknown preset '{preset}'{did_you_mean(preset, PRESETS)}; expected one of {', '.join(PRESETS)}"
        )
    rows = PRESETS[preset]
    row = rows.get(task, rows[_PRESET_FALLBACK_TASK])
    optim = {
        "lr": row["lr"],
        "epochs": row["epochs"],
        "warmup_ratio": row["warmup_ratio"],
        "batch_size": 32,
        "seed": 42,
    }
    return {
        "gate_lr": row["gate_lr"], "temperature": row["temperature"], "mu": row["mu"],
        "hard_weight": 0.5, "soft_weight": 0.5, "optim": optim,
    }  # fmt: skip
