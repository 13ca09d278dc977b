"""Property-based tests of every input reader (ladc/data/sources.py via ladc.data.data.load_raw, and ladc/runs/config.py's YAML).

Each example writes one generated file: every GLUE task's TSV layout, generic CSV / TSV / JSON Lines files and
`--config` YAML, with random encodings, byte-order marks, CR/CRLF/LF line ends, blank and whitespace-only lines,
quotes, NULs and Unicode line separators inside fields, long lines, and at most one fault (empty file, header
only, a missing or extra column, a column missing from the header, a bad label, an empty text field, a quote never
closed, invalid JSON, Latin-1 or UTF-16 bytes; a field over csv's default limit of 131,072 characters, which loads). A small oracle written from the documented behaviour says what
must happen: the exact rows, or a one-line LadcError naming the file, the line and what was expected. Any other
exception fails the test. Example counts are in `SETTINGS`; `benchmarks/reliability.md` records them.

This file holds the GLUE TSV and generic CSV / TSV readers' tests, test_sources_fuzz_jsonl.py the JSON Lines reader's,
test_config_fuzz.py the YAML's; tests/fuzzing.py the example counts, settings, strategies and oracle they share.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladc.data.data import load_raw
from ladc.data.sources import resolve_split
from ladc.data.tasks import TASKS, get_task
from ladc.errors import LadcError
from ladc.runs.config import DataConfig
from tests.fuzzing import (
    BLANK_LINES,
    CELL_TEXT,
    COLUMN_NAMES,
    CSV_TEXT,
    EMPTY_TEXTS,
    EXAMPLES,
    HUGE_FIELD,
    PAIR_TASKS,
    SETTINGS,
    Expected,
    assert_outcome,
    bad_labels,
    encode,
    is_blank,
    labelled,
    nonempty,
    oracle_bytes,
    read_line,
    some_text,
    valid_labels,
)
from tests.test_data import GLUE_FILES


def unlabelled(task):
    return -1.0 if task.is_regression else -1


def oracle_glue(records, layout: Layout, task):
    """GLUE TSV: header (first non-blank line) checked first, then each row in order: width, then label."""
    header, rows = None, []
    has_header = layout.header is not None
    for line, cells in records:
        cells = read_line(line, cells)
        if is_blank(cells):
            continue
        if has_header and header is None:
            header = cells
            for name in (*layout.text_columns, layout.label_column):
                if name is not None and name not in header:
                    raise Expected(f"missing column '{name}'")
            continue
        if len(cells) != layout.width:
            raise Expected(f"expected {layout.width} tab-separated columns, got {len(cells)}", line=line)
        index = header.index if has_header else (lambda column: column)
        shown = layout.text_columns if has_header else [f"column {c + 1}" for c in layout.text_columns]
        texts = nonempty(line, [cells[index(name)] for name in layout.text_columns], shown)
        if layout.label_column is None:
            rows.append((*texts, unlabelled(task)))
        else:
            rows.append((*texts, labelled(line, cells[index(layout.label_column)], task, layout.split_kind)))
    if has_header and header is None:
        raise Expected("is empty", "expected a header row")
    if not rows:
        raise Expected("has no data rows")
    return rows


def oracle_table(records, task, text_names, label_name, separated: str):
    """Generic CSV/TSV: every row is read (syntax, width) before columns and labels are checked."""
    header, rows = None, []
    for line, cells in records:
        cells = read_line(line, cells)
        if is_blank(cells):
            continue
        if header is None:
            header = cells
        elif len(cells) != len(header):
            raise Expected(f"expected {len(header)} {separated}-separated columns, got {len(cells)}", line=line)
        else:
            rows.append((line, dict(zip(header, cells))))
    if header is None:
        raise Expected("is empty", "expected a header row")
    if not rows:
        raise Expected("has no data rows")
    for name in text_names:
        if name not in header:
            raise Expected(f"missing text column '{name}'")
    if label_name not in header:
        raise Expected(f"missing label column '{label_name}'")
    return [
        (*nonempty(line, [row[n] for n in text_names], text_names), labelled(line, row[label_name], task, "train"))
        for line, row in rows
    ]


# ----------------------------------------------------------------------------- file assembly


def join_lines(lines: list[str], style: str, trailing: bool, ends: list[str]) -> str:
    """Lines joined by one style of line end; `ends` picks LF or CRLF per line for the mixed style."""
    if style == "mixed":
        terminators = [ends[i % len(ends)] for i in range(len(lines))]
    else:
        terminators = [style] * len(lines)
    text = "".join(line + end for line, end in zip(lines, terminators, strict=True))
    if not trailing and lines:
        text = text[: -len(terminators[-1])]
    return text


def count_line_ends(text: str) -> int:
    return len(re.findall(r"\r\n|\r|\n", text))


@dataclass
class Layout:
    """Where a GLUE file keeps its texts and label: header names, or column indices for CoLA train/dev."""

    task_name: str
    stem: str
    header: list[str] | None
    text_columns: list  # names or indices
    label_column: object  # name, index, or None (test files)
    split_kind: str

    @property
    def width(self) -> int:
        return len(self.header) if self.header else max(*self.text_columns, self.label_column) + 1


def glue_layouts() -> list[Layout]:
    layouts = []
    for task_name, files in sorted(GLUE_FILES.items()):
        task = get_task(task_name)
        for stem, rows in files.items():
            kind = resolve_split(task, stem).kind
            if task.tsv_has_header or kind == "test":
                header = rows[0].lstrip("\ufeff").split("|")
                texts = [c if isinstance(c, str) else f for c, f in zip(task.tsv_text_columns, task.text_fields)]
                label = str(task.tsv_label_column) if str(task.tsv_label_column) in header else None
                layouts.append(Layout(task_name, stem, header, texts, label, kind))
            else:
                layouts.append(Layout(task_name, stem, None, list(task.tsv_text_columns), task.tsv_label_column, kind))
    return layouts


LAYOUTS = glue_layouts()
FAULTS = ["none"] * 6 + ["empty", "header_only", "missing_column", "width", "bad_label", "huge", "latin-1", "utf-16"]
FAULTS += ["empty_text"]


@st.composite
def glue_files(draw):
    layout = draw(st.sampled_from(LAYOUTS))
    task = get_task(layout.task_name)
    fault = draw(st.sampled_from(FAULTS))
    count = draw(st.integers(1, 5))
    lines: list[list[str]] = []
    data_lines: list[int] = []
    for i in range(count):
        cells = [f"j{i}"] * layout.width
        for column in layout.text_columns:
            where = layout.header.index(column) if layout.header else column
            cells[where] = draw(some_text(CELL_TEXT))
        if layout.label_column is not None:
            where = layout.header.index(layout.label_column) if layout.header else layout.label_column
            cells[where] = draw(st.sampled_from(valid_labels(task)))
        data_lines.append(len(lines))
        lines.append(cells)
    if draw(st.booleans()):  # a long but legal line
        cells = lines[data_lines[-1]]
        column = layout.text_columns[-1]
        cells[layout.header.index(column) if layout.header else column] = "word " * draw(st.integers(500, 4000))
    target = draw(st.integers(0, count - 1))
    cells = lines[data_lines[target]]
    if fault == "width":
        cells.append("extra") if draw(st.booleans()) else cells.pop(0)
    elif fault == "bad_label" and layout.label_column is not None and layout.split_kind != "test":
        where = layout.header.index(layout.label_column) if layout.header else layout.label_column
        cells[where] = draw(st.sampled_from(bad_labels(task)))
    elif fault == "huge":
        cells[0] = "x" * HUGE_FIELD
    elif fault == "empty_text":
        column = draw(st.sampled_from(layout.text_columns))
        cells[layout.header.index(column) if layout.header else column] = draw(EMPTY_TEXTS)
    elif fault in ("latin-1", "utf-16"):
        cells[0] = "café au lait"
    if layout.header is not None:
        header = list(layout.header)
        if fault == "missing_column":
            required = [*layout.text_columns, *([layout.label_column] if layout.label_column else [])]
            header[header.index(draw(st.sampled_from(required)))] += "_x"
        lines.insert(0, header)
    if fault in ("empty", "header_only"):
        lines = lines[:1] if (fault == "header_only" and layout.header is not None) else []
    for _ in range(draw(st.integers(0, 3))):  # blank and whitespace-only lines anywhere
        lines.insert(draw(st.integers(0, len(lines))), [draw(BLANK_LINES)])
    style = draw(st.sampled_from(["\n", "\r\n", "mixed", "\r"]))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=1, max_size=4))
    text = join_lines(["\t".join(c) for c in lines], style, draw(st.booleans()), ends)
    encoding = fault if fault in ("latin-1", "utf-16") else draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    return layout, encode(text, encoding)


def lines_of(text: str) -> list[list[str]]:
    """The cells of each physical line (CRLF, CR and LF each end one), as the file was written."""
    lines = re.split(r"\r\n|\r|\n", text)
    if text.endswith(("\n", "\r")):
        lines = lines[:-1]
    return [line.split("\t") for line in lines]


@settings(max_examples=EXAMPLES["glue_tsv"], **SETTINGS)
@given(glue_files())
def test_glue_tsv_of_every_task_loads_exactly_or_fails_in_one_line(generated):
    layout, data = generated
    task = get_task(layout.task_name)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / task.glue_dir / f"{layout.stem}.tsv"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        try:
            lines = lines_of(oracle_bytes(data))
            expected = oracle_glue([(i + 1, cells) for i, cells in enumerate(lines)], layout, task)
        except Expected as outcome:
            expected = outcome
        data_config = DataConfig(task=layout.task_name, data_dir=root)
        assert_outcome(lambda: load_raw(data_config, layout.stem), path, expected)


# ----------------------------------------------------------------------------- generic CSV / TSV files

CSV_FAULTS = ["none"] * 6 + ["empty", "header_only", "missing_column", "width", "bad_label", "huge", "unclosed"]
CSV_FAULTS += ["latin-1", "utf-16", "empty_text"]


@st.composite
def table_files(draw):
    task = get_task(draw(st.sampled_from(PAIR_TASKS)))
    suffix = draw(st.sampled_from([".csv", ".csv", ".tsv"]))
    names = draw(st.lists(COLUMN_NAMES, min_size=len(task.text_fields) + 2, max_size=6, unique=True))
    if suffix == ".tsv":  # QUOTE_NONE: quotes are literal, tabs and line ends cannot be escaped
        names = [n.replace('"', "'") for n in names]
        if len(set(names)) != len(names):
            names = [f"c{i}" for i in range(len(names))]
    text_names, label_name = names[: len(task.text_fields)], names[len(task.text_fields)]
    fault = draw(st.sampled_from(CSV_FAULTS if suffix == ".csv" else [f for f in CSV_FAULTS if f != "unclosed"]))
    delimiter = "\t" if suffix == ".tsv" else ","
    quoting = csv.QUOTE_NONE if suffix == ".tsv" else draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    cell_text = CSV_TEXT if suffix == ".csv" else CELL_TEXT
    if quoting == csv.QUOTE_MINIMAL and terminator == "\n":  # the writer leaves a lone CR unquoted: a line break
        cell_text = cell_text.map(lambda text: text.replace("\r", ""))
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        row = {name: draw(some_text(cell_text) if name in text_names else cell_text) for name in names}
        row[label_name] = draw(st.sampled_from(valid_labels(task)))
        rows.append([row[name] for name in names])
    target = draw(st.integers(0, len(rows) - 1))
    if fault == "width":
        rows[target].append("extra") if draw(st.booleans()) else rows[target].pop()
    elif fault == "bad_label":
        rows[target][len(task.text_fields)] = draw(st.sampled_from(bad_labels(task)))
    elif fault == "huge":
        rows[target][0] = "y" * HUGE_FIELD
    elif fault == "empty_text":
        rows[target][draw(st.integers(0, len(task.text_fields) - 1))] = draw(EMPTY_TEXTS)
    elif fault in ("latin-1", "utf-16"):
        rows[target][0] = "naïve"
    header = list(names)
    if fault == "missing_column":
        header[draw(st.integers(0, len(task.text_fields)))] += "_x"
    records = [header, *rows]
    if fault in ("empty", "header_only"):
        records = records[:1] if fault == "header_only" else []
    chunks: list[tuple[str, object]] = []  # (text, cells | Expected | None for a blank line)
    for cells in records:
        buffer = io.StringIO()
        if suffix == ".tsv":
            buffer.write("\t".join(cells) + terminator)
        else:
            csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=terminator).writerow(cells)
        chunks.append((buffer.getvalue(), cells))
    if fault == "unclosed":
        chunks.append(('"never closed,1' + terminator, Expected("a quoted field is never closed")))
    for _ in range(draw(st.integers(0, 3))):
        chunks.insert(draw(st.integers(0, len(chunks))), (draw(BLANK_LINES) + terminator, []))
    text, line, located = "", 1, []
    for chunk, cells in chunks:
        located.append((line, cells))
        text += chunk
        line += count_line_ends(chunk)
    encoding = fault if fault in ("latin-1", "utf-16") else draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    return task, suffix, text_names, label_name, encode(text, encoding), located


@settings(max_examples=EXAMPLES["csv"], **SETTINGS)
@given(table_files())
def test_csv_and_tsv_train_files_load_exactly_or_fail_in_one_line(generated):
    task, suffix, text_names, label_name, data, records = generated
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / f"train{suffix}"
        path.write_bytes(data)
        data_config = DataConfig(
            task=task.name, train_file=str(path), text_fields=tuple(text_names), label_field=label_name
        )
        try:
            oracle_bytes(data)
            separated = "tab" if suffix == ".tsv" else "comma"
            expected = oracle_table(records, task, text_names, label_name, separated)
        except Expected as outcome:
            expected = outcome
        assert_outcome(lambda: load_raw(data_config, "train"), path, expected)


# ----------------------------------------------------------------------------- deterministic edge cases


def test_bad_byte_after_a_character_split_by_the_rescan_chunks_has_its_exact_offset(tmp_path):
    """The rescan reads 1 MiB chunks: a 3-byte character straddling the boundary must not shift the offset."""
    head = "sentence\tlabel\n" + "a" * ((1 << 20) - 16)  # the euro sign starts one byte before 1 MiB
    data = head.encode() + "€ and".encode() + b" caf\xe9\t1\n"
    assert data.index("€".encode()) == (1 << 20) - 1
    path = tmp_path / "SST-2" / "train.tsv"
    path.parent.mkdir()
    path.write_bytes(data)
    bad = data.index(b"\xe9")
    with pytest.raises(LadcError, match=rf"is not UTF-8: byte 0xe9 at offset {bad} \(line 2\)"):
        load_raw(DataConfig(task="sst2", data_dir=str(tmp_path)), "train")


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_header_only_and_latin1_glue_files_name_the_file(tmp_path, task_name):
    """The two symptoms of issue 11, for every task: an IndexError and a UnicodeDecodeError before the fix."""
    task = get_task(task_name)
    layout = next(item for item in LAYOUTS if item.task_name == task_name and item.split_kind == "train")
    path = tmp_path / task.glue_dir / "train.tsv"
    path.parent.mkdir()
    data = DataConfig(task=task_name, data_dir=str(tmp_path))
    if layout.header is not None:
        path.write_text("\t".join(layout.header) + "\n")
        with pytest.raises(LadcError, match=rf"^{re.escape(str(path))} has no data rows after the header"):
            load_raw(data, "train")
    path.write_bytes("\t".join(layout.header or ["a", "b", "c", "d"]).encode() + b"\ncaf\xe9\n")
    with pytest.raises(LadcError, match=rf"^{re.escape(str(path))} is not UTF-8: byte 0xe9 at offset \d+ \(line 2\)"):
        load_raw(data, "train")
