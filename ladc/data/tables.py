"""Rows and cells of CSV, TSV and JSON Lines files as text, with one-line errors naming the file and line.

Format only: which columns hold a task's texts and labels is ladc.data.sources'. Files are UTF-8 (a leading byte-order
mark is dropped); other bytes are a LadcError (ladc.runs.io.not_utf8_error). Blank and whitespace-only lines carry no
row. Fields of any length load: csv's default limit of 131,072 characters is raised while a file is read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ladc.errors import LadcError
from ladc.runs.io import not_utf8_error, read_text

__all__ = ["FIELD_LIMIT", "quoted", "column_names", "read_rows", "read_csv_table", "read_json_table", "text_cell"]

FIELD_LIMIT = 2**31 - 1  # the largest csv accepts on every platform (a C long); its default is 131,072 characters


def quoted(text: str, limit: int = 40) -> str:
    """repr of a user's cell, clipped: an error message stays one short line whatever the file holds."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def column_names(columns: list[str]) -> str:
    """The columns of a file for an error message: at most 50, odd or long names quoted."""
    return ", ".join(c if c.isprintable() and len(c) <= 40 else quoted(c) for c in columns[:50])


def _is_blank(row: list[str]) -> bool:
    """Blank and whitespace-only lines carry no example (e.g. a trailing newline, or spaces after the last row)."""
    return all(not cell.strip() for cell in row)


def _csv_error(exc: csv.Error, where: str) -> LadcError:
    reason = str(exc)
    if "field limit" in reason:
        reason = f"a field is longer than {FIELD_LIMIT} characters"
    elif "end of data" in reason:
        reason = "a quoted field is never closed"
    return LadcError(f"{where}: {reason}")


def read_rows(path: Path, delimiter: str, quoting: int):
    """(line number, cells) for each non-blank row of a CSV/TSV file; one-line LadcErrors for unreadable input.

    UTF-8 only (a leading byte-order mark is dropped: GLUE's MRPC files start with one); `strict` makes a quote
    left open a reported error instead of a field that silently swallows the rest of the file.
    """
    line = 1
    previous_limit = csv.field_size_limit(FIELD_LIMIT)  # process-wide: restored when the file is read
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting, strict=True)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise _csv_error(exc, f"{path} line {line}") from None
                if not _is_blank(row):
                    yield line, row
                line = reader.line_num + 1  # a quoted field may span lines: report where the row starts
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None
    except OSError as exc:
        raise LadcError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        csv.field_size_limit(previous_limit)


def read_csv_table(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """A CSV (or tab-separated, QUOTE_NONE) file with a header row: every cell a string, empty cells kept as ''."""
    tsv = path.suffix.lower() == ".tsv"
    rows = read_rows(path, "\t" if tsv else ",", csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    first = next(rows, None)
    if first is None:
        raise LadcError(f"{path} is empty; expected a header row")
    header = first[1]
    separated = "tab" if tsv else "comma"
    records = []
    for line, row in rows:
        if len(row) != len(header):
            raise LadcError(f"{path} line {line}: expected {len(header)} {separated}-separated columns, got {len(row)}")
        records.append((line, dict(zip(header, row, strict=True))))
    return header, records


def _json_values(path: Path) -> list[tuple[str, object]]:
    """('line N' or 'item N', value) for each record of a JSON Lines file, or of a .json file holding one array."""
    text = read_text(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LadcError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
        return [(f"item {i + 1}", item) for i, item in enumerate(items)]  # text starts with "[": a list
    values = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            values.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise LadcError(
                f"{path} line {number}: invalid JSON ({exc.msg} at column {exc.colno}); expected one object per line"
            ) from None
    return values


def read_json_table(path: Path) -> tuple[list[str], list[tuple[int | str, dict]]]:
    """JSON Lines (or a .json array): one object per record; columns in order of first appearance."""
    columns: dict[str, None] = {}
    records = []
    for where, value in _json_values(path):
        if not isinstance(value, dict):
            raise LadcError(f"{path} {where}: expected a JSON object, got {type(value).__name__}")
        columns.update(dict.fromkeys(value))
        records.append((where, value))
    return list(columns), records


def text_cell(value, path: Path, where, name: str) -> str:
    """A JSON/CSV text value as a string: numbers as written, null as ''; lists, objects and booleans rejected."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise LadcError(f"{path} {where}: text field '{name}' is {type(value).__name__}; expected a string")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON may escape a lone surrogate ("\ud800"), which is not text
        raise LadcError(f"{path} {where}: text field '{name}' holds an unpaired UTF-16 surrogate") from None
    return text
