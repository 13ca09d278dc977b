"""Reading GLUE splits from the hub, a GLUE TSV dir or CSV/JSONL files into the hub's columns.

Every reader yields the columns of `nyu-mll/glue` (Wang et al., 2019): the task's text fields, `label` (class id
in the hub's label order, float score for STS-B, -1 for unlabelled test rows) and `idx` (row order in the file).
`ladc.data.load_raw` picks the reader; this module holds the per-format parsing and its error messages.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import datasets

from ladc.config import DataConfig
from ladc.errors import LadcError, did_you_mean
from ladc.tasks import TaskSpec

__all__ = [
    "HUB_DATASET",
    "Split",
    "resolve_split",
    "source_of",
    "parse_label",
    "raw_features",
    "read_glue_tsv",
    "read_table_file",
    "load_hub",
]

HUB_DATASET = "nyu-mll/glue"
_TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


# ----------------------------------------------------------------------------- splits and sources


@dataclass(frozen=True)
class Split:
    """One resolved split of a task: its kind, hub name and GLUE TSV file stem."""

    kind: str  # train | dev | test
    name: str  # hub split name (`validation_matched`)
    tsv_stem: str  # GLUE TSV file stem (`dev_matched`)
    is_primary: bool  # the split a generic --dev-file / --test-file stands for


def resolve_split(task: TaskSpec, split: str) -> Split:
    """Map `train`/`dev`/`test`, a hub split name or a GLUE TSV stem to one split of `task`.

    Raises:
        LadcError: the split does not exist for this task.
    """
    if split == "train":
        return Split("train", "train", "train", True)
    groups = [("dev", task.dev_splits, task.tsv_dev_files), ("test", task.test_splits, task.tsv_test_files)]
    for kind, names, stems in groups:
        aliases = {kind: 0, **({"validation": 0} if kind == "dev" else {})}
        position = aliases.get(split)
        for i, (name, stem) in enumerate(zip(names, stems, strict=True)):
            if split in (name, stem):
                position = i
        if position is not None:
            return Split(kind, names[position], stems[position], position == 0)
    choices = ["train", "dev", *task.dev_splits, "test", *task.test_splits]
    raise LadcError(
        f"unknown split '{split}' for {task.name}{did_you_mean(split, choices)}; expected one of: "
        f"{', '.join(dict.fromkeys(choices))}"
    )


def _generic_file(data: DataConfig, split: Split) -> str | None:
    if not split.is_primary:
        return None
    return {"train": data.train_file, "dev": data.dev_file, "test": data.test_file}[split.kind]


def source_of(data: DataConfig, task: TaskSpec, split: Split) -> tuple[str, Path | None]:
    """('file', path) for a CSV/JSONL file, ('tsv', path) for a GLUE TSV dir, ('hub', None) otherwise."""
    generic = _generic_file(data, split)
    if generic is not None:
        path = Path(generic)
        if not path.is_file():
            raise LadcError(f"{split.kind} file {generic} does not exist")
        if path.suffix.lower() not in _TABLE_SUFFIXES:
            raise LadcError(f"{split.kind} file {generic}: expected a .csv, .tsv, .jsonl or .json file")
        return "file", path
    if data.data_dir is None:
        return "hub", None
    root = Path(data.data_dir)
    if not root.is_dir():
        raise LadcError(f"data dir {data.data_dir} does not exist (expected GLUE TSV layout: <dir>/{task.glue_dir}/)")
    path = root / task.glue_dir / f"{split.tsv_stem}.tsv"
    if not path.is_file():
        relative = f"{task.glue_dir}/{split.tsv_stem}.tsv"
        raise LadcError(f"data dir {data.data_dir} has no {relative} (expected GLUE TSV layout: <dir>/{relative})")
    return "tsv", path


# ----------------------------------------------------------------------------- labels


def parse_label(value, task: TaskSpec, where: str) -> int | float:
    """A label cell -> class id (ints as ids, names BY NAME in hub order) or a float score for regression."""
    text = str(value).strip() if value is not None else ""
    if task.is_regression:
        try:
            score = float(text)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise LadcError(f"{where}: label {text!r} for {task.name} is not a number")
        return score
    if text in task.label_names:
        return task.label_names.index(text)
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number.is_integer() and 0 <= number < task.num_labels:
        return int(number)
    raise LadcError(
        f"{where}: unknown label {text!r} for {task.name}; expected one of {', '.join(task.label_names)} "
        f"(or an id 0..{task.num_labels - 1})"
    )


def raw_features(task: TaskSpec) -> datasets.Features:
    """The hub's schema for `task`, with `label` as a plain int64 id (float32 score for regression)."""
    columns = {name: datasets.Value("string") for name in task.text_fields}
    columns["label"] = datasets.Value("float32" if task.is_regression else "int64")
    columns["idx"] = datasets.Value("int64")
    return datasets.Features(columns)


def _unlabelled(task: TaskSpec) -> int | float:
    return -1.0 if task.is_regression else -1


def _label_or_unlabelled(value, task: TaskSpec, split: Split, where: str) -> int | float:
    """Test files may leave labels empty or write the hub's -1; other splits need a real label."""
    if split.kind == "test" and (value is None or str(value).strip() in ("", "-1", "-1.0")):
        return _unlabelled(task)
    return parse_label(value, task, where)


# ----------------------------------------------------------------------------- readers


def _header_index(header: list[str], column: str, path: Path) -> int:
    if column not in header:
        raise LadcError(
            f"{path}: missing column '{column}'{did_you_mean(column, header)}; columns: {', '.join(header)}"
        )
    return header.index(column)


def read_glue_tsv(path: Path, task: TaskSpec, split: Split) -> dict[str, list]:
    """Parse one GLUE TSV file (QUOTE_NONE: GLUE texts contain stray quotes) into hub columns."""
    # CoLA train/dev have no header; every test file (CoLA's included) has one
    has_header = task.tsv_has_header or split.kind == "test"
    columns: dict[str, list] = {name: [] for name in (*task.text_fields, "label", "idx")}
    # utf-8-sig: GLUE's MRPC files start with a byte-order mark before `Quality`
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if has_header:
            header = next(reader, None)
            if not header:
                raise LadcError(f"{path} is empty; expected a header row")
            # header-less tasks name their columns by index; their test files use the hub names
            text_names = [
                c if isinstance(c, str) else f for c, f in zip(task.tsv_text_columns, task.text_fields, strict=True)
            ]
            text_columns = [_header_index(header, name, path) for name in text_names]
            label_name = str(task.tsv_label_column)
            # test files carry no label column: every row gets -1
            label_column = None
            if split.kind != "test" or label_name in header:
                label_column = _header_index(header, label_name, path)
            width = len(header)
        else:
            text_columns = [int(c) for c in task.tsv_text_columns]
            label_column = int(task.tsv_label_column)
            width = max(*text_columns, label_column) + 1
        for row in reader:
            if not row:
                continue  # blank lines (e.g. a trailing one) carry no example
            where = f"{path} line {reader.line_num}"
            if len(row) != width:
                raise LadcError(f"{where}: expected {width} tab-separated columns, got {len(row)}")
            for name, column in zip(task.text_fields, text_columns, strict=True):
                columns[name].append(row[column])
            has_label = label_column is not None
            label = _label_or_unlabelled(row[label_column], task, split, where) if has_label else _unlabelled(task)
            columns["label"].append(label)
            columns["idx"].append(len(columns["idx"]))
    return columns


def _table_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if path.suffix.lower() == ".tsv":
            return next(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), [])
        return next(csv.reader(handle), [])


def _load_table(path: Path) -> datasets.Dataset:
    """CSV/TSV (every column read as a string, empty cells kept as '') or JSON/JSONL via `datasets`."""
    suffix = path.suffix.lower()
    kwargs: dict = {}
    builder = "json" if suffix in (".json", ".jsonl") else "csv"
    if builder == "csv":
        header = _table_header(path)
        if not header:
            raise LadcError(f"{path} is empty; expected a header row")
        kwargs = {"features": datasets.Features({c: datasets.Value("string") for c in header})}
        kwargs["keep_default_na"] = False  # a text "NA" or "null" is text, not a missing value
        if suffix == ".tsv":
            kwargs.update(sep="\t", quoting=csv.QUOTE_NONE)
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad user file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"cannot parse {path} as {builder.upper()}: {reason}") from None


def read_table_file(path: Path, data: DataConfig, task: TaskSpec, split: Split) -> dict[str, list]:
    """Generic CSV/JSONL: pick `data.text_fields` and `data.label_field`, rename them to the hub columns."""
    text_fields = tuple(data.text_fields) if data.text_fields else task.text_fields
    if len(text_fields) != len(task.text_fields):
        raise LadcError(
            f"data.text_fields {list(text_fields)}: {task.name} needs {len(task.text_fields)} text column(s) "
            f"({', '.join(task.text_fields)})"
        )
    table = _load_table(path)
    available = list(table.column_names)
    for name in text_fields:
        if name not in available:
            raise LadcError(
                f"{path}: missing text column '{name}'{did_you_mean(name, available)}; columns: {', '.join(available)}"
            )
    has_label = data.label_field in available
    if not has_label and split.kind != "test":
        raise LadcError(
            f"{path}: missing label column '{data.label_field}'{did_you_mean(data.label_field, available)}"
            f"; columns: {', '.join(available)}"
        )
    columns: dict[str, list] = {}
    for hub_name, name in zip(task.text_fields, text_fields, strict=True):
        columns[hub_name] = ["" if v is None else str(v) for v in table[name]]
    if has_label:
        labels = table[data.label_field]
        columns["label"] = [_label_or_unlabelled(v, task, split, f"{path} row {i + 1}") for i, v in enumerate(labels)]
    else:
        columns["label"] = [_unlabelled(task)] * len(table)
    columns["idx"] = list(range(len(table)))
    return columns


def load_hub(task: TaskSpec, split: Split) -> datasets.Dataset:
    """`nyu-mll/glue` from the hub (or the local HF cache), cast to `raw_features(task)`."""
    try:
        raw = datasets.load_dataset(HUB_DATASET, task.name, split=split.name)
    except (OSError, ValueError) as exc:  # ConnectionError is an OSError; offline mode raises it too
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LadcError(
            f"cannot load GLUE task {task.name} from the hub ({reason}); pass --data-dir DIR with the GLUE TSV layout"
        ) from None
    return raw.select_columns([*task.text_fields, "label", "idx"]).cast(raw_features(task))
