"""Property-based tests of every input reader (ladc/data/sources.py via ladc.data.data.load_raw, and ladc/runs/config.py's YAML).

Each example writes one generated file: every GLUE task's TSV layout, generic CSV / TSV / JSON Lines files and
`--config` YAML, with random encodings, byte-order marks, CR/CRLF/LF line ends, blank and whitespace-only lines,
quotes, NULs and Unicode line separators inside fields, long lines, and at most one fault (empty file, header
only, a missing or extra column, a column missing from the header, a bad label, an empty text field, a quote never
closed, invalid JSON, Latin-1 or UTF-16 bytes; a field over csv's default limit of 131,072 characters, which loads). A small oracle written from the documented behaviour says what
must happen: the exact rows, or a one-line LadcError naming the file, the line and what was expected. Any other
exception fails the test. Example counts are in `SETTINGS`; `benchmarks/reliability.md` records them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladc.data.data import load_raw
from ladc.data.sources import resolve_split
from ladc.data.tasks import TASKS, get_task
from ladc.errors import LadcError
from ladc.runs.config import BenchConfig, DataConfig, DistillConfig, ExportConfig, TuneTeacherConfig, build_config
from tests.test_data import GLUE_FILES

# LADC_FUZZ_SCALE=20 multiplies every count and draws fresh random inputs (a deeper run by hand; see the report)
SCALE = int(os.environ.get("LADC_FUZZ_SCALE", "1"))
EXAMPLES = {
    name: count * SCALE
    for name, count in {"glue_tsv": 300, "csv": 200, "jsonl": 200, "yaml": 200, "yaml_bytes": 100}.items()
}
SETTINGS = {
    "deadline": None,
    "derandomize": SCALE == 1,  # by default the same inputs on every run: a failure in CI reproduces locally
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
HUGE_FIELD = 200_000  # characters: over csv's default field limit (131,072), which ladc raises while it reads

# fields: any character but the ones that end a line or a TSV cell (NUL, U+0085, U+2028, quotes included)
CELL_TEXT = st.text(st.characters(blacklist_characters="\t\r\n", blacklist_categories=("Cs",)), max_size=24)
EMPTY_TEXTS = st.sampled_from(["", " ", "\xa0", "\x0b "])  # an empty text field is an error (the "empty_text" fault)


def some_text(strategy):
    """Text fields hold something to tokenize (an empty one is its own fault): a blank draw gets a letter."""
    return strategy.map(lambda text: text if text.strip() else text + "w")


BLANK_LINES = st.sampled_from(["", " ", "\t", "  \t ", "\x0b", "\x0c", "\xa0", "\t\t\t"])
PAIR_TASKS = ["sst2", "rte", "stsb", "mnli"]  # one text, two texts, regression, three classes


# ----------------------------------------------------------------------------- the oracle


class Expected(Exception):
    """What the oracle predicts instead of rows: a LadcError with these fragments (and `line N` when given)."""

    def __init__(self, *fragments: str, line: int | None = None):
        super().__init__(fragments)
        self.fragments, self.line = fragments, line


def oracle_label(text: str | None, task, split_kind: str):
    """The documented label rules: names by name, ids 0..C-1, finite float32 scores; test rows may be unlabelled."""
    text = "" if text is None else str(text).strip()
    if split_kind == "test" and text in ("", "-1", "-1.0"):
        return -1.0 if task.is_regression else -1
    if task.is_regression:
        try:
            score = float(text)
        except ValueError:
            score = math.nan
        if not (math.isfinite(score) and abs(score) <= 3.4028234663852886e38):
            raise Expected("is not a number")
        return score
    if text in task.label_names:
        return task.label_names.index(text)
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number.is_integer() and 0 <= number < task.num_labels:
        return int(number)
    raise Expected("unknown label", f"for {task.name}")


def oracle_bytes(data: bytes) -> str:
    """Decoded text, or the encoding error the readers must report (offset and line of the first bad byte)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise Expected("UTF-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise Expected("is not UTF-8", f"byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})") from None


def assert_outcome(load, path: Path, expected):
    """`load()` gives `expected` rows, or raises the one-line LadcError the oracle predicted."""
    if isinstance(expected, Expected):
        with pytest.raises(LadcError) as error:
            load()
        message = str(error.value)
        assert "\n" not in message and "\r" not in message, message
        assert str(path) in message, message
        for fragment in expected.fragments:
            assert fragment in message, (fragment, message)
        if expected.line is not None:
            assert f"line {expected.line}:" in message, (expected.line, message)
        assert len(message) < 400, message  # a user's huge cell never floods the terminal
        return
    raw = load()
    rows = [tuple(row[name] for name in raw.column_names if name != "idx") for row in raw]
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got[:-1] == want[:-1]
        assert got[-1] == pytest.approx(want[-1], rel=1e-6)  # float32 scores
    assert raw["idx"] == list(range(len(expected)))


def is_blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


def read_line(line: int, cells) -> list[str]:
    """What the reader meets on a line: its cells, or the syntax error it must report there (no length limit)."""
    if isinstance(cells, Expected):
        raise Expected(*cells.fragments, line=line)
    return cells


def nonempty(line: int, texts, names) -> tuple:
    """The texts of a row, or the error an empty (or whitespace-only) one must give."""
    for text, name in zip(texts, names, strict=True):
        if not text.strip():
            raise Expected(f"text field '{name}' is empty", line=line)
    return tuple(texts)


def unlabelled(task):
    return -1.0 if task.is_regression else -1


def labelled(line: int, text: str | None, task, split_kind: str):
    try:
        return oracle_label(text, task, split_kind)
    except Expected as expected:
        raise Expected(*expected.fragments, line=line) from None


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


def encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16":
        return text.encode("utf-16")
    if encoding == "latin-1":
        return text.encode("latin-1", errors="replace")
    return text.encode(encoding)


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


def valid_labels(task) -> list[str]:
    if task.is_regression:
        return ["0", "5.000", "3.800", " 0.25 ", "4", "-1.5"]
    return [*task.label_names, *(str(i) for i in range(task.num_labels)), "1.0", f" {task.label_names[0]} "]


def bad_labels(task) -> list[str]:
    if task.is_regression:
        return ["positive", "entailment", "nan", "inf", "-inf", "1e39", "", "five"]
    return ["maybe", "2.5", "0.25", str(task.num_labels), "-1", "", "1e400", "nan", "Positive", "acceptable!"]


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

COLUMN_NAMES = st.text(
    st.characters(blacklist_characters="\r\n\t", blacklist_categories=("Cs",)), min_size=1, max_size=8
).filter(lambda name: name.strip() and name == name.strip() and not name.startswith('"'))
CSV_FAULTS = ["none"] * 6 + ["empty", "header_only", "missing_column", "width", "bad_label", "huge", "unclosed"]
CSV_FAULTS += ["latin-1", "utf-16", "empty_text"]
# CSV fields may hold anything, line ends and quotes included: the writer quotes them
CSV_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)


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


# ----------------------------------------------------------------------------- JSON Lines files

JSON_FAULTS = ["none"] * 6 + ["empty", "invalid", "not_object", "missing_key", "missing_label", "bad_text"]
JSON_FAULTS += ["surrogate", "bad_label", "latin-1", "utf-16", "empty_text"]
JSON_TEXT = st.one_of(
    some_text(CSV_TEXT), st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def jsonl_files(draw):
    task = get_task(draw(st.sampled_from(PAIR_TASKS)))
    names = draw(st.lists(COLUMN_NAMES, min_size=len(task.text_fields) + 1, max_size=4, unique=True))
    text_names, label_name = names[: len(task.text_fields)], names[len(task.text_fields)]
    fault = draw(st.sampled_from(JSON_FAULTS))
    objects: list = []
    for _ in range(draw(st.integers(1, 5))):
        record = {name: draw(JSON_TEXT) for name in text_names}
        label = draw(st.sampled_from(valid_labels(task)))
        record[label_name] = int(label) if label.strip().isdigit() and draw(st.booleans()) else label
        if draw(st.booleans()):
            record["extra"] = draw(JSON_TEXT)
        objects.append(record)
    target = draw(st.integers(0, len(objects) - 1))
    lines = [json.dumps(o, ensure_ascii=draw(st.booleans())) for o in objects]
    if fault == "empty":
        lines = []
    elif fault == "invalid":
        lines[target] = lines[target][:-1]
    elif fault == "not_object":
        lines[target] = draw(st.sampled_from(["[1, 2]", "3", '"text"', "null", "true"]))
    elif fault in (
        "missing_key",
        "missing_label",
        "bad_text",
        "surrogate",
        "bad_label",
        "latin-1",
        "utf-16",
        "empty_text",
    ):
        record = objects[target]
        if fault == "missing_key":
            del record[text_names[0]]
        elif fault == "missing_label":
            del record[label_name]
        elif fault == "bad_text":
            record[text_names[0]] = draw(st.sampled_from([[1, 2], {"a": 1}, True, False]))
        elif fault == "surrogate":
            record[text_names[0]] = "a\ud800b"
        elif fault == "bad_label":
            record[label_name] = draw(st.sampled_from(bad_labels(task)))
        elif fault == "empty_text":
            record[text_names[-1]] = draw(st.one_of(EMPTY_TEXTS, st.none()))  # null is no text either
        else:
            record[text_names[0]] = "déjà vu"
        lines[target] = json.dumps(record, ensure_ascii=fault != "latin-1")
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", "\t", "\r"])))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    text = "".join(line + terminator for line in lines)
    encoding = fault if fault in ("latin-1", "utf-16") else draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    return task, text_names, label_name, encode(text, encoding)


def oracle_jsonl(text: str, task, text_names, label_name):
    parsed = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise Expected("invalid JSON", line=number) from None
        if not isinstance(value, dict):
            raise Expected("expected a JSON object", line=number)
        parsed.append((number, value))
    if not parsed:
        raise Expected("has no data rows")
    available = {key for _, value in parsed for key in value}
    for name in text_names:
        if name not in available:
            raise Expected(f"missing text column '{name}'")
    if label_name not in available:
        raise Expected(f"missing label column '{label_name}'")
    rows = []
    for number, value in parsed:
        texts = []
        for name in text_names:
            if name not in value:
                raise Expected(f"no text field '{name}'", line=number)
            cell = value[name]
            if isinstance(cell, bool) or not isinstance(cell, (str, int, float, type(None))):
                raise Expected(f"text field '{name}' is", line=number)
            cell = "" if cell is None else str(cell)
            if any(0xD800 <= ord(c) <= 0xDFFF for c in cell):
                raise Expected("unpaired UTF-16 surrogate", line=number)
            texts.append(nonempty(number, [cell], [name])[0])
        if label_name not in value:
            raise Expected(f"no label field '{label_name}'", line=number)
        try:
            rows.append((*texts, oracle_label(value[label_name], task, "train")))
        except Expected as expected:
            raise Expected(*expected.fragments, line=number) from None
    return rows


@settings(max_examples=EXAMPLES["jsonl"], **SETTINGS)
@given(jsonl_files())
def test_jsonl_train_files_load_exactly_or_fail_in_one_line(generated):
    task, text_names, label_name, data = generated
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "train.jsonl"
        path.write_bytes(data)
        data_config = DataConfig(
            task=task.name, train_file=str(path), text_fields=tuple(text_names), label_field=label_name
        )
        try:
            expected = oracle_jsonl(oracle_bytes(data), task, text_names, label_name)
        except Expected as outcome:
            expected = outcome
        assert_outcome(lambda: load_raw(data_config, "train"), path, expected)


# ----------------------------------------------------------------------------- --config YAML

CONFIG_CLASSES = [TuneTeacherConfig, DistillConfig, ExportConfig, BenchConfig]
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(), CELL_TEXT,
    st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(CELL_TEXT, st.integers(), max_size=2),
    st.sampled_from(["1e-4", "-3", "²", "٣", "inf", "nan", ".inf", "true", "no", "0x10", "1_000", "", " 7 "]),
)  # fmt: skip


def field_values(cls) -> dict:
    """{dotted key: default value} of a config class, nested dataclasses flattened."""
    import dataclasses

    values = {}
    for field in dataclasses.fields(cls):
        default = getattr(cls(), field.name)
        if dataclasses.is_dataclass(default):
            values.update({f"{field.name}.{k}": v for k, v in field_values(type(default)).items()})
        elif field.name != "resume":  # --resume reads a run dir; tests/test_cli_errors.py covers it
            values[field.name] = list(default) if isinstance(default, tuple) else default
    return values


def nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


@st.composite
def yaml_configs(draw):
    cls = draw(st.sampled_from(CONFIG_CLASSES))
    defaults = field_values(cls)
    keys = draw(st.lists(st.sampled_from(sorted(defaults)), max_size=6, unique=True))
    flat = {key: defaults[key] for key in keys}  # legal values: the defaults, round-tripped through YAML
    mutated = None
    if keys and draw(st.booleans()):
        mutated = draw(st.sampled_from(keys))
        flat[mutated] = draw(ANY_VALUE)
    unknown = draw(st.sampled_from([None, "lrate", "optim.learning_rate", "data.tsk", "bogus"]))
    if unknown and not draw(st.integers(0, 3)):
        flat[unknown] = 1
    else:
        unknown = None
    text = yaml.safe_dump(nest(flat), sort_keys=False, allow_unicode=draw(st.booleans()))
    style = draw(st.sampled_from(["\n", "\r\n"]))
    data = (("\ufeff" if draw(st.booleans()) else "") + text.replace("\n", style)).encode("utf-8")
    return cls, flat, mutated, unknown, data


@settings(max_examples=EXAMPLES["yaml"], **SETTINGS)
@given(yaml_configs())
def test_yaml_configs_load_their_values_or_name_file_line_and_key(generated):
    cls, flat, mutated, unknown, data = generated
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "config.yaml"
        path.write_bytes(data)
        try:
            cfg = build_config(cls, path, {})
        except LadcError as error:
            message = str(error)
            assert "\n" not in message and str(path) in message, message
            culprits = [
                f"'{part}'" if i == 0 and key == unknown else part  # ExportConfig has no `optim` section
                for key in (unknown, mutated)
                if key
                for i, part in enumerate(key.split("."))
            ]
            assert any(part in message for part in culprits), (culprits, message)  # only these keys may fail
            assert re.search(r" line \d+: ", message), message
            return
        assert unknown is None
        for key, value in flat.items():
            got = cfg
            for part in key.split("."):
                got = getattr(got, part)
            if key != mutated:
                assert (list(got) if isinstance(got, tuple) else got) == value, key
            assert not (isinstance(got, float) and not math.isfinite(got)), (key, got)


YAML_BYTES = st.one_of(
    st.binary(max_size=200),
    CELL_TEXT.map(lambda text: text.encode("utf-8")),
    st.sampled_from([
        b"", b"\xef\xbb\xbf", b"- a\n- b\n", b"lr: [", b"optim: {lr: \x00}", b"task: caf\xe9\n", b"\xff\xfetask: x",
        b"a: &x [*x]\n", b"optim:\n\tlr: 1\n", b"? [a, b]\n: 1\n", b"data: 5\n", b"output: 2024-01-01\n",
        b"optim: {lr: 1e-4, batch_size: 1.5}\n", b"optim: {lr: .nan}\n", b"!!python/object:os.system {}\n",
    ]),
)  # fmt: skip


@settings(max_examples=EXAMPLES["yaml_bytes"], **SETTINGS)
@given(st.sampled_from(CONFIG_CLASSES), YAML_BYTES)
def test_arbitrary_yaml_bytes_give_a_config_or_a_one_line_error_naming_the_file(cls, data):
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "config.yaml"
        path.write_bytes(data)
        try:
            cfg = build_config(cls, path, {})
        except LadcError as error:
            message = str(error)
            assert "\n" not in message and str(path) in message, message
            return
        assert isinstance(cfg, cls)


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
