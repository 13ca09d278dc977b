"""Reading GLUE splits from the hub, a GLUE TSV dir or CSV/JSONL files into the hub's columns.

Every reader yields the columns of `nyu-mll/glue` (Wang et al., 2019): the task's text fields, `label` (class id
in the hub's label order, float score for STS-B, -1 for unlabelled test rows) and `idx` (row order in the file).
`ladc.data.data.load_raw` picks the reader; this module maps each format's rows to those columns, with its error
messages (ladc.data.tables reads the rows and cells of the files).

Files are UTF-8 (a leading byte-order mark is dropped). Other bytes are a LadcError naming the file, the offset and
line of the first bad byte, and an iconv command: guessing an encoding would silently change the text. Blank and
whitespace-only lines are skipped; a file with no data rows (empty, or a header alone) is a LadcError; every other
error names the file and line, an empty (or whitespace-only) text field included: a model cannot classify nothing,
and a silent skip would change the row count a run reports. Fields of any length load (csv's default limit of 131,072
characters is raised while a file is read): the tokenizer truncates long documents to max_seq_len like any other row.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import datasets

from ladc.data.tables import column_names, quoted, read_csv_table, read_json_table, read_rows, text_cell
from ladc.data.tasks import TaskSpec
from ladc.errors import LadcError, did_you_mean
from ladc.runs.config import DataConfig

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
_FLOAT32_MAX = 3.4028234663852886e38


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
        # scores are stored as float32: a larger magnitude would silently become inf
        if not (math.isfinite(score) and abs(score) <= _FLOAT32_MAX):
            raise LadcError(f"{where}: label {quoted(text)} for {task.name} is not a number")
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
        f"{where}: unknown label {quoted(text)} for {task.name}; expected one of {', '.join(task.label_names)} "
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
            f"{path}: missing column '{column}'{did_you_mean(column, header)}; columns: {column_names(header)}"
        )
    return header.index(column)


def _checked_text(text: str, where: str, name: str) -> str:
    """A text cell, refused in one line when it is empty or whitespace only."""
    if not text.strip():
        raise LadcError(
            f"{where}: text field '{name}' is empty; every example needs its text (fill it in or drop the row)"
        )
    return text


def _no_rows(path: Path, has_header: bool) -> LadcError:
    after = " after the header" if has_header else ""
    return LadcError(f"{path} has no data rows{after}; expected at least one example")


def read_glue_tsv(path: Path, task: TaskSpec, split: Split) -> dict[str, list]:
    """Parse one GLUE TSV file (QUOTE_NONE: GLUE texts contain stray quotes) into hub columns.

    Raises:
        LadcError: not UTF-8, no header or no data rows, a missing column, a row of the wrong width, a bad label.
    """
    # CoLA train/dev have no header; every test file (CoLA's included) has one
    has_header = task.tsv_has_header or split.kind == "test"
    columns: dict[str, list] = {name: [] for name in (*task.text_fields, "label", "idx")}
    rows = read_rows(path, "\t", csv.QUOTE_NONE)
    if has_header:
        # header-less tasks name their columns by index; their test files use the hub names
        text_names = [
            c if isinstance(c, str) else f for c, f in zip(task.tsv_text_columns, task.text_fields, strict=True)
        ]
        first = next(rows, None)
        if first is None:
            raise LadcError(f"{path} is empty; expected a header row with columns {', '.join(text_names)}")
        header = first[1]
        text_columns = [_header_index(header, name, path) for name in text_names]
        label_name = str(task.tsv_label_column)
        # test files carry no label column: every row gets -1
        label_column = None
        if split.kind != "test" or label_name in header:
            label_column = _header_index(header, label_name, path)
        width = len(header)
    else:
        text_columns = [int(c) for c in task.tsv_text_columns]
        text_names = [f"column {c + 1}" for c in text_columns]
        label_column = int(task.tsv_label_column)
        width = max(*text_columns, label_column) + 1
    for line, row in rows:
        where = f"{path} line {line}"
        if len(row) != width:
            raise LadcError(f"{where}: expected {width} tab-separated columns, got {len(row)}")
        for name, column, shown in zip(task.text_fields, text_columns, text_names, strict=True):
            columns[name].append(_checked_text(row[column], where, shown))
        has_label = label_column is not None
        label = _label_or_unlabelled(row[label_column], task, split, where) if has_label else _unlabelled(task)
        columns["label"].append(label)
        columns["idx"].append(len(columns["idx"]))
    if not columns["idx"]:
        raise _no_rows(path, has_header)
    return columns


def read_table_file(path: Path, data: DataConfig, task: TaskSpec, split: Split) -> dict[str, list]:
    """Generic CSV/TSV/JSONL: pick `data.text_fields` and `data.label_field`, rename them to the hub columns.

    Raises:
        LadcError: not UTF-8, empty or header-only, a missing column, a malformed row or a bad label, naming the
            file and line.
    """
    text_fields = tuple(data.text_fields) if data.text_fields else task.text_fields
    if len(text_fields) != len(task.text_fields):
        raise LadcError(
            f"data.text_fields {list(text_fields)}: {task.name} needs {len(task.text_fields)} text column(s) "
            f"({', '.join(task.text_fields)})"
        )
    is_json = path.suffix.lower() in (".json", ".jsonl")
    available, records = read_json_table(path) if is_json else read_csv_table(path)
    if not records:
        raise _no_rows(path, not is_json)
    for name in text_fields:
        if name not in available:
            raise LadcError(
                f"{path}: missing text column '{name}'{did_you_mean(name, available)}; columns: {column_names(available)}"
            )
    has_label = data.label_field in available
    if not has_label and split.kind != "test":
        raise LadcError(
            f"{path}: missing label column '{data.label_field}'{did_you_mean(data.label_field, available)}"
            f"; columns: {column_names(available)}"
        )
    columns: dict[str, list] = {name: [] for name in (*task.text_fields, "label", "idx")}
    for where, record in records:
        where = f"line {where}" if isinstance(where, int) else where
        for hub_name, name in zip(task.text_fields, text_fields, strict=True):
            if name not in record:
                raise LadcError(f"{path} {where}: no text field '{name}'")
            columns[hub_name].append(_checked_text(text_cell(record[name], path, where, name), f"{path} {where}", name))
        if has_label and data.label_field in record:
            columns["label"].append(_label_or_unlabelled(record[data.label_field], task, split, f"{path} {where}"))
        elif split.kind == "test":
            columns["label"].append(_unlabelled(task))
        else:
            raise LadcError(f"{path} {where}: no label field '{data.label_field}'")
        columns["idx"].append(len(columns["idx"]))
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
