"""Streaming rows in and predictions out for `ladc predict`: CSV, TSV and JSON Lines read one row at a time (stdin
too), predictions written row by row to a temp file that is renamed into place once complete.

Nothing here holds a whole file, so a million-row input costs one chunk of memory. Input is UTF-8; a row with a bad
byte, a wrong column count, invalid JSON or a missing text field is a `BadRow` naming the file and line, which the
caller either raises as a one-line error or skips (`--skip-bad`). Errors that leave the rest of the file unreadable
(a quote never closed, no header, a missing text column) are LadcErrors at once.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ladc.errors import LadcError, did_you_mean
from ladc.runs.io import check_output_path

__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "Example",
    "BadRow",
    "input_format",
    "output_format",
    "read_examples",
    "PredictionWriter",
]

INPUT_FORMATS = ("csv", "tsv", "jsonl")
OUTPUT_FORMATS = ("jsonl", "csv")
_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_ID_FIELDS = ("id", "idx", "index")  # the first one a file has names its rows, else the row number


@dataclass(frozen=True)
class Example:
    """One input row to classify.

    Attributes:
        row: 0-based number of the data row in the input (bad rows counted), the id when the input has none.
        id: the row's id column (as written), else `row`.
        texts: the text field(s), one or two strings.
    """

    row: int
    id: object
    texts: tuple[str, ...]


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be classified; `where` is `FILE line N`."""

    row: int
    where: str
    reason: str

    def message(self) -> str:
        return f"{self.where}: {self.reason} (pass --skip-bad to skip such rows)"


def input_format(source: str, given: str | None) -> str:
    """csv | tsv | jsonl: `given`, else the file suffix; stdin (`-`) is JSON Lines unless told otherwise."""
    if given is not None:
        if given not in INPUT_FORMATS:
            raise LadcError(f"--input-format {given!r}: expected one of {', '.join(INPUT_FORMATS)}")
        return given
    if source == "-":
        return "jsonl"
    suffix = Path(source).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise LadcError(f"input {source}: expected a .csv, .tsv or .jsonl file (or pass --input-format)")
    return _SUFFIX_FORMATS[suffix]


def output_format(output: str, given: str | None) -> str:
    """jsonl | csv: `given`, else the output suffix (.csv -> csv, anything else and stdout -> jsonl)."""
    if given is not None:
        if given not in OUTPUT_FORMATS:
            raise LadcError(f"--output-format {given!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
        return given
    return "csv" if output != "-" and Path(output).suffix.lower() == ".csv" else "jsonl"


# ----------------------------------------------------------------------------- reading


def _decoded_lines(handle) -> Iterator[str]:
    """Lines of a binary stream as text. Bad UTF-8 bytes become lone surrogates (surrogateescape), so the row that
    holds them is reported with its line number instead of the whole read failing at an unknown place."""
    first = True
    for raw in handle:
        if first:
            raw, first = raw.removeprefix(codecs.BOM_UTF8), False
        yield raw.decode("utf-8", "surrogateescape")


def _bad_byte(text: str) -> str | None:
    """'not UTF-8 (byte 0xe9)' when `text` holds a byte surrogateescape kept, else None."""
    for char in text:
        if "\udc80" <= char <= "\udcff":
            return f"not UTF-8 (byte 0x{ord(char) - 0xDC00:02x}); ladc reads UTF-8 only"
    return None


def _csv_records(lines: Iterator[str], name: str, tsv: bool) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line, record or None, reason or None) per non-blank data row; the first row is the header."""
    # TSV as GLUE writes it: no quoting (its texts hold stray quotes); CSV with standard quoting
    reader = csv.reader(lines, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
                        strict=True)  # fmt: skip
    header, line = None, 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the rest of the file cannot be split into rows reliably: not skippable
            reason = "a quoted field is never closed" if "end of data" in str(exc) else str(exc)
            raise LadcError(f"{name} line {line}: {reason}") from None
        start, line = line, reader.line_num + 1  # a quoted field may span lines: report where the row starts
        if all(not cell.strip() for cell in row):
            continue
        if header is None:
            if _bad_byte("".join(row)):
                raise LadcError(f"{name} line {start}: header is {_bad_byte(''.join(row))}")
            header = row
            continue
        if len(row) != len(header):
            separated = "tab" if tsv else "comma"
            yield start, None, f"expected {len(header)} {separated}-separated columns, got {len(row)}"
        else:
            yield start, dict(zip(header, row, strict=True)), None
    # (no header at all is reported by read_examples as "no data rows")


def _json_records(lines: Iterator[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON ({exc.msg} at column {exc.colno}); expected one object per line"
            continue
        if not isinstance(value, dict):
            yield number, None, f"expected a JSON object, got {type(value).__name__}"
        else:
            yield number, value, None


def _text_of(record: dict, field: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason): strings and numbers are text; null, lists, objects and booleans are not."""
    if field not in record:
        return None, f"no text field '{field}'{did_you_mean(field, list(record))}"
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"text field '{field}' is {type(value).__name__}; expected a string"
    text = str(value)
    return (None, f"text field '{field}' is {_bad_byte(text)}") if _bad_byte(text) else (text, None)


def read_examples(
    source: str, fmt: str, text_fields: tuple[str, ...], id_field: str | None = None
) -> Iterator[Example | BadRow]:
    """Every data row of `source` (a path, or `-` for stdin) in input order, streamed.

    Args:
        source: the input file, or `-` for standard input.
        fmt: csv | tsv | jsonl (see `input_format`).
        text_fields: the column(s) holding the text(s), in the model's order.
        id_field: the column naming each row; None: the first of id/idx/index the input has, else the row number.

    Raises:
        LadcError: unreadable file, a CSV/TSV header without a text column, a quote never closed, no data rows.
    """
    name = "stdin" if source == "-" else source
    try:
        handle = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise LadcError(f"cannot read input {source}: {exc.strerror or exc}") from None
    try:
        lines = _decoded_lines(handle)
        records = _json_records(lines) if fmt == "jsonl" else _csv_records(lines, name, fmt == "tsv")
        count = 0
        for line, record, reason in records:
            if record is not None and count == 0 and fmt != "jsonl":
                _check_columns(record, text_fields, name)
            count += 1
            yield _example(count - 1, f"{name} line {line}", record, reason, text_fields, id_field)
        if count == 0:
            raise LadcError(f"{name} has no data rows; expected at least one example")
    except OSError as exc:
        raise LadcError(f"cannot read input {source}: {exc.strerror or exc}") from None
    finally:
        if source != "-":
            handle.close()


def _check_columns(record: dict, text_fields: tuple[str, ...], name: str) -> None:
    for field in text_fields:
        if field not in record:
            columns = ", ".join(list(record)[:20])
            raise LadcError(
                f"{name}: missing text column '{field}'{did_you_mean(field, list(record))}; columns: {columns} "
                "(pass --text-fields)"
            )


def _example(row: int, where: str, record, reason, text_fields, id_field) -> Example | BadRow:
    if record is None:
        return BadRow(row, where, reason)
    texts = []
    for field in text_fields:
        text, problem = _text_of(record, field)
        if problem:
            return BadRow(row, where, problem)
        texts.append(text)
    key = id_field or next((name for name in DEFAULT_ID_FIELDS if name in record), None)
    if id_field is not None and id_field not in record:
        return BadRow(row, where, f"no id field '{id_field}'")
    example_id = record[key] if key is not None else row
    if isinstance(example_id, str) and _bad_byte(example_id):
        return BadRow(row, where, f"id field '{key}' is {_bad_byte(example_id)}")
    return Example(row, example_id, tuple(texts))


# ----------------------------------------------------------------------------- writing


class PredictionWriter:
    """Predictions as JSON Lines or CSV, written to a temp file beside `output` and renamed when the `with` block
    ends without an error (`-`: standard output, written as it goes).

    JSON Lines: `{"id": ..., "label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9}}`, or
    `{"id": ..., "score": 3.2}` for regression. CSV: `id,label,prob_<label>...` or `id,score`.
    """

    def __init__(self, output: str, fmt: str, label_names: tuple[str, ...]):
        self.output, self.fmt, self.label_names = output, fmt, label_names
        self.handle = self.tmp = self.csv = None

    def __enter__(self) -> PredictionWriter:
        if self.output == "-":
            self.handle = sys.stdout
        else:
            path = Path(self.output)
            if path.is_dir():
                raise LadcError(f"--output {path} is a directory; expected a file path")
            check_output_path(path.parent)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as exc:
                raise LadcError(f"cannot write {path}: {exc.strerror or exc}") from None
            self.handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
        if self.fmt == "csv":
            self.csv = csv.writer(self.handle, lineterminator="\n")
            names = ["score"] if not self.label_names else ["label", *(f"prob_{n}" for n in self.label_names)]
            self.csv.writerow(["id", *names])
        return self

    def write(self, example_id, probabilities: list[float] | None, score: float | None = None) -> None:
        """One prediction: class probabilities in label order (classification) or a score (regression)."""
        if self.fmt == "csv":
            values = [score] if score is not None else [self._label(probabilities), *probabilities]
            self.csv.writerow([example_id, *values])
            return
        row = {"id": example_id}
        if score is not None:
            row["score"] = score
        else:
            row["label"] = self._label(probabilities)
            row["probabilities"] = dict(zip(self.label_names, probabilities, strict=True))
        self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _label(self, probabilities: list[float]) -> str:
        return self.label_names[max(range(len(probabilities)), key=probabilities.__getitem__)]

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp is None:
            self.handle.flush()
            return
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if exc_type is None:
                os.replace(self.tmp, self.output)
        finally:
            Path(self.tmp).unlink(missing_ok=True)  # gone after the rename; a failed run leaves nothing
