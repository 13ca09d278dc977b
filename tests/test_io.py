"""Tests of ladc/runs/io.py: atomic writes, UTF-8 reads with one-line errors, output-path guards and atomic_dir."""

from __future__ import annotations

import json
import os

import pytest

from ladc.errors import LadcError
from ladc.runs.io import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_output_path,
    not_utf8_error,
    read_json,
    read_text,
)

needs_non_root = pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check")


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_text_creates_parents_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_write_text_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # handle.write raises mid-write: the rename never happens
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_json_round_trips_and_stringifies_unknown_types(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"b": 1, "a": [1.5, None], "path": tmp_path})
    text = target.read_text()
    assert text.endswith("\n") and text.index('"b"') < text.index('"a"')  # key order kept, not sorted
    assert json.loads(text) == {"b": 1, "a": [1.5, None], "path": str(tmp_path)}


def test_atomic_write_under_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LadcError, match=r"is a file, not a directory"):
        atomic_write_text(tmp_path / "file" / "sub" / "out.txt", "x")


# ----------------------------------------------------------------------------- reading


def test_read_text_drops_a_bom_and_keeps_line_ends(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"\xef\xbb\xbfa\tb\r\nc\td\n")
    assert read_text(path) == "a\tb\r\nc\td\n"


def test_read_text_names_what_is_missing(tmp_path):
    with pytest.raises(LadcError, match=r"^train file .*nope\.tsv does not exist$"):
        read_text(tmp_path / "nope.tsv", "train file")


def test_not_utf8_reports_offset_and_line_of_the_first_bad_byte(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(LadcError) as caught:
        read_text(path)
    message = str(caught.value)
    assert "byte 0xe9 at offset 18 (line 2)" in message and "iconv -f LATIN1" in message and "\n" not in message


def test_not_utf8_offset_is_exact_across_chunk_boundaries(tmp_path):
    # a two-byte character split across the 1 MiB read boundary, then a bad byte: the offset must not drift
    path = tmp_path / "big.txt"
    prefix = b"a" * ((1 << 20) - 1) + "é".encode() + b"\n"
    path.write_bytes(prefix + b"ok\xff")
    message = str(not_utf8_error(path))
    assert f"at offset {len(prefix) + 2} (line 2)" in message


def test_utf16_is_named_as_such(tmp_path):
    path = tmp_path / "u16.tsv"
    path.write_bytes("a\tb\n".encode("utf-16"))
    with pytest.raises(LadcError, match="UTF-16/32 text"):
        read_text(path)


def test_read_json_reports_the_line_of_a_syntax_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(LadcError, match=r"bad\.json: invalid JSON at line 4"):
        read_json(path)
    (tmp_path / "good.json").write_text('{"a": [1, 2]}')
    assert read_json(tmp_path / "good.json") == {"a": [1, 2]}


# ----------------------------------------------------------------------------- output paths and run dirs


def test_check_output_path_accepts_new_and_existing_dirs_and_touches_nothing(tmp_path):
    assert check_output_path(tmp_path / "x" / "y") == tmp_path / "x" / "y"
    assert not (tmp_path / "x").exists()
    assert check_output_path(tmp_path) == tmp_path


def test_check_output_path_refuses_files(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(LadcError, match="exists and is not a directory"):
        check_output_path(tmp_path / "f")
    with pytest.raises(LadcError, match="is a file, not a directory"):
        check_output_path(tmp_path / "f" / "deeper")


@needs_non_root
def test_check_output_path_refuses_a_read_only_parent(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(LadcError, match="is not writable"):
            check_output_path(locked / "run")
    finally:
        locked.chmod(0o700)


def test_atomic_dir_publishes_on_success_only(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as build:
        (build / "a.txt").write_text("1")
        assert not final.exists()  # readers see nothing until the rename
    assert (final / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as build:
            (build / "b.txt").write_text("2")
            raise RuntimeError("crash mid-build")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]  # the old dir survives, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind


def test_atomic_dir_replaces_an_existing_dir_whole(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    with atomic_dir(final) as build:
        (build / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
