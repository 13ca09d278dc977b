"""Atomic file and directory writes, run-dir guards and JSON helpers shared by every command."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ladc.errors import LadcError

__all__ = ["atomic_write_text", "atomic_write_json", "prepare_run_dir", "atomic_dir", "read_json"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LadcError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise LadcError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from None


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create a run directory, refusing to clobber an existing one without --overwrite.

    Raises:
        LadcError: the directory exists and is not empty, and neither overwrite nor resume was asked for.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LadcError(f"output {path} exists and is not a directory")
    if path.exists() and any(path.iterdir()):
        if resume:
            return path
        if not overwrite:
            raise LadcError(
                f"output dir {path} already exists; pass --overwrite to replace it or --resume to continue it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


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
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, old)
            os.replace(self.tmp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)
