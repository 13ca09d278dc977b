"""Tests of ladc/data/tables.py: the rows and cells of CSV, TSV and JSON Lines files, and their one-line errors.

The task-level readers built on them (columns, labels, empty texts) are tests/test_sources.py's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ladc.data.tables import column_names, read_csv_table, read_json_table, read_rows, text_cell
from ladc.errors import LadcError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _error(read, path: Path) -> str:
    with pytest.raises(LadcError) as caught:
        read(path)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_csv_keeps_line_breaks_inside_quoted_fields_and_names_an_unreadable_path(tmp_path):
    path = tmp_path / "dev.csv"
    path.write_bytes(b'sentence,label\r\n"two\r\nlines",1\r\nplain,0\r\n')
    header, records = read_csv_table(path)
    assert header == ["sentence", "label"]
    # every cell a string; a row is numbered by the line it starts on
    assert records == [(2, {"sentence": "two\r\nlines", "label": "1"}), (4, {"sentence": "plain", "label": "0"})]
    directory = tmp_path / "folder.csv"
    directory.mkdir()
    assert _error(read_csv_table, directory) == f"cannot read {directory}: Is a directory"


def test_unclosed_quotes_and_long_column_lists_have_exact_messages(tmp_path):
    unclosed = _write(tmp_path / "a.csv", 'sentence,label\nfine,1\n"never closed,0\n')
    assert _error(read_csv_table, unclosed) == f"{unclosed} line 3: a quoted field is never closed"
    # at most 50 names; a 40-character unprintable name is quoted whole, without "..."
    assert column_names([f"c{i}" for i in range(60)]) == ", ".join(f"c{i}" for i in range(50))
    assert column_names(["e" * 39 + "\x01"]) == repr("e" * 39 + "\x01")


def test_rows_skip_blank_lines_drop_a_bom_and_restore_the_field_limit(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes("\ufeffsentence\tlabel\n\n  \t \nlong ".encode() + b"x" * 200_000 + b"\t1\n")
    limit = csv.field_size_limit()
    rows = list(read_rows(path, "\t", csv.QUOTE_NONE))
    assert [(line, row[0][:6], len(row[1])) for line, row in rows] == [(1, "senten", 5), (4, "long x", 1)]
    assert rows[0][1] == ["sentence", "label"]  # the byte-order mark is not part of the first column's name
    assert csv.field_size_limit() == limit  # raised only while the file is read


def test_json_records_are_named_by_line_or_item(tmp_path):
    lines = _write(tmp_path / "a.jsonl", '{"s": "x", "y": 1}\n\n{"t": 2}\n')
    assert read_json_table(lines) == (["s", "y", "t"], [("line 1", {"s": "x", "y": 1}), ("line 3", {"t": 2})])
    array = _write(tmp_path / "b.json", '\n  [{"s": "a"}, 5]')
    assert _error(read_json_table, array) == f"{array} item 2: expected a JSON object, got int"
    broken = _write(tmp_path / "c.jsonl", '{"s": "x"}\n{"s": \n')
    assert _error(read_json_table, broken) == (
        f"{broken} line 2: invalid JSON (Expecting value at column 7); expected one object per line"
    )


def test_text_cells_are_strings_numbers_as_written_and_nothing_else(tmp_path):
    where = tmp_path / "f.jsonl"
    assert [text_cell(v, where, "line 1", "s") for v in ("a", 42, 0.5, None)] == ["a", "42", "0.5", ""]
    for value, kind in (([1], "list"), ({"a": 1}, "dict"), (True, "bool")):
        with pytest.raises(LadcError) as caught:
            text_cell(value, where, "line 2", "s")
        assert str(caught.value) == f"{where} line 2: text field 's' is {kind}; expected a string"
    with pytest.raises(LadcError, match="holds an unpaired UTF-16 surrogate"):
        text_cell("a\ud800b", where, "line 3", "s")
