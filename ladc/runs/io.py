"""Atomic file and directory writes, run-dir guards and JSON helpers shared by every command."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ladc.errors import LadcError
from ladc.runs.faults import kill_point

__all__ = [
    "atomic_write_text",
    "atomic_write_json",
    "check_output_path",
    "atomic_dir",
    "read_json",
    "read_text",
    "not_utf8_error",
]

_UTF16_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    path = Path(path)
    check_output_path(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # read-only file system, no space left: the user can act on it
        raise LadcError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        kill_point("atomic-write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def not_utf8_error(path: Path) -> LadcError:
    """The LadcError for a file that is not UTF-8: the offset, line and value of its first bad byte.

    Called only after a strict UTF-8 read failed: the file is rescanned in chunks, so the offset is exact whatever
    buffering the failed reader used.
    """
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith(_UTF16_BOMS):  # UTF-32 LE starts with the UTF-16 LE mark, so both are listed first
            return LadcError(
                f"{path} is UTF-16/32 text (it starts with that byte-order mark); ladc reads UTF-8 only: convert it, "
                f"e.g. iconv -f UTF-16 -t UTF-8 {path} > utf8-{path.name}"
            )
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = line = 0  # bytes and newlines before the current chunk
        while True:
            chunk = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])  # bytes of a character split across the previous chunk boundary
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                bad = offset - pending + exc.start
                line += exc.object.count(b"\n", 0, exc.start)
                return LadcError(
                    f"{path} is not UTF-8: byte 0x{exc.object[exc.start]:02x} at offset {bad} (line {line + 1}); "
                    f"ladc reads UTF-8 only: convert it, e.g. iconv -f LATIN1 -t UTF-8 {path} > utf8-{path.name}"
                )
            if not chunk:
                return LadcError(f"{path} is not UTF-8")  # unreachable unless the file changed since the failed read
            offset += len(chunk)
            line += chunk.count(b"\n")


def read_text(path: Path, what: str = "file") -> str:
    """A whole UTF-8 text file (a leading byte-order mark dropped), with one-line errors naming the file.

    Raises:
        LadcError: missing, unreadable, or not UTF-8 (with the offset of the first bad byte).
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:  # line ends as written: line numbers match
            return handle.read()
    except FileNotFoundError:
        raise LadcError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None
    except OSError as exc:
        raise LadcError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(read_text(path, "JSON file"))
    except json.JSONDecodeError as exc:
        raise LadcError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from None


def check_output_path(path: str | Path) -> Path:
    """Raise LadcError unless `path` is a directory or can be made one: no file on the way, a writable ancestor.

    Touches nothing, so commands call it before loading models. `os.access` also reports a read-only file
    system to root, who passes every permission check.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LadcError(f"output {path} exists and is not a directory")
    ancestor = path.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise LadcError(f"output {path} cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise LadcError(f"output {path} cannot be created: {ancestor} is not writable")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_orphans(final: Path) -> None:
    """Clear what a killed process (its pid is gone) left beside `final`: temp dirs can be gigabytes.

    A process killed between the two renames of a replacement left no `final` and the previous one aside as
    `.old-PID`: that one is put back, so a failing rebuild still leaves the previous complete result in place.
    """
    for path in sorted(final.parent.glob(f".{final.name}.*-*")):
        kind, _, pid = path.name[len(final.name) + 2 :].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        if kind == "old" and not final.exists():
            os.replace(path, final)
        else:
            shutil.rmtree(path, ignore_errors=True)


class atomic_dir:
    """Context manager: build a directory under a temp name, rename it into place on success.

    Example:
        with atomic_dir(run / "checkpoints" / "step-100") as tmp:
            model.save_pretrained(tmp)
    """

    def __init__(self, final: str | Path):
        self.final = Path(final)
        self.tmp = self.final.parent / f".{self.final.name}.tmp-{os.getpid()}"

    def __enter__(self) -> Path:
        check_output_path(self.final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(self.final)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        kill_point("atomic-dir")
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, old)
            kill_point("atomic-dir-swap")
            os.replace(self.tmp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)
