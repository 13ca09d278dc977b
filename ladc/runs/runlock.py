"""One ladc process per output directory: a lock file beside the directory, held with flock and naming its holder.

`runs/teacher-sst2` is guarded by `runs/.teacher-sst2.lock`. The lock sits beside the directory, not in it, because
--overwrite deletes the directory and atomic writes rename it. The kernel drops an flock when its process dies,
SIGKILL included, so a lock file left by a killed run is stale by construction: the next run takes it over, and no
pid can be mistaken for a live holder after the pid is reused. The file's JSON (pid, command, host, start time) only
serves the error message: a pid says nothing across PID namespaces (two containers sharing `runs/` both run ladc as
PID 1), so nested use in one process is known from what this process holds, never from the pid in the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ladc.errors import LadcError
from ladc.runs.io import check_output_path

__all__ = ["launcher_rank", "lock_path", "run_lock", "locked_run"]

_log = logging.getLogger(__name__)

# lock file -> pid of the process that took it: this process's own locks, so a nested `run_lock` (a pipeline stage
# under the pipeline's lock) passes. Keyed by pid too because a forked child inherits this dict but not the lock.
_held: dict[Path, int] = {}


def lock_path(output: str | Path) -> Path:
    """Where the lock of `output` lives: `<parent>/.<name>.lock` (symlinks resolved, so two spellings share it)."""
    output = Path(output).resolve()
    return output.parent / f".{output.name}.lock"


def launcher_rank() -> int:
    """The process rank torchrun / `accelerate launch` export as RANK (0 when launched alone).

    Read here because the lock is per run, not per rank, and must be taken before the Accelerator exists; ranks
    other than 0 write through the main process.
    """
    try:
        return int(os.environ.get("RANK") or 0)
    except ValueError:
        return 0


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 65536).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    pid = holder.get("pid", "unknown")
    command = str(holder.get("command") or "ladc")[:120]
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {pid}{where}: {command}"


def _make_parents(directory: Path) -> list[Path]:
    """Create `directory` and its missing ancestors; returns those created, deepest first (for cleanup)."""
    created = []
    probe = directory
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LadcError(f"cannot create {directory}: {exc.strerror or exc}") from None
    return created


def _remove_empty(created: list[Path]) -> None:
    """Undo `_make_parents` where nothing was written: a refused or failed run leaves the tree as it found it."""
    for directory in created:
        try:
            directory.rmdir()
        except OSError:
            return  # not empty: the run wrote into it


def _acquire(path: Path, output: Path, command: str) -> tuple[int | None, dict]:
    """flock `path` (created if missing): (fd, previous holder), or (None, {}) when this process holds it already.

    Whether this process holds it is read from `_held`, not from the pid in the file: another PID namespace can hold
    the lock under the same pid.

    Raises:
        LadcError: another live process holds it (naming that process), or the file system cannot lock.
    """
    if _held.get(path) == os.getpid():
        return None, {}  # nested use in this process (e.g. a pipeline stage): the outer lock covers it
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LadcError(f"cannot create lock file {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LadcError(
                f"output {output} is in use by another ladc process ({_describe(holder)}); wait for it to finish "
                f"or stop it (lock file {path})"
            ) from None
        except OSError as exc:  # e.g. a network file system without locks
            os.close(fd)
            raise LadcError(f"cannot lock {path}: {exc.strerror or exc}") from None
        # the previous holder unlinks the file before releasing it: a lock on an unlinked file guards nothing
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd, _read_holder(fd)
        os.close(fd)


def _write_holder(fd: int, command: str) -> None:
    holder = {
        "pid": os.getpid(),
        "command": command,
        "argv": sys.argv,
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode())


@contextlib.contextmanager
def run_lock(output: str | Path | None, command: str) -> Iterator[Path | None]:
    """Hold the lock of `output` for the `with` block: a second ladc process on that directory gets a LadcError.

    Args:
        output: the run/output directory (need not exist; missing parents are created, and removed again if the
            block leaves them empty); None locks nothing.
        command: what the holder is, for the other process's message (`ladc tune-teacher`).

    Yields:
        The lock file's path (None on launcher ranks other than 0, and when this process already holds it).

    Raises:
        LadcError: another live process holds the lock (its pid and command are named), or the lock cannot be made.
    """
    if output is None or launcher_rank() != 0:  # None: the command picks its output later (bench); nothing to lock
        yield None
        return
    check_output_path(output)  # a file on the way or a read-only location: refuse before creating anything
    path = lock_path(output)
    created = _make_parents(path.parent)
    try:
        fd, previous = _acquire(path, Path(output), command)
    except BaseException:
        _remove_empty(created)
        raise
    if fd is None:
        yield None
        return
    if previous.get("pid"):
        _log.warning("ladc: took over the stale lock of %s (that process is gone)", _describe(previous))
    _held[path] = os.getpid()
    try:
        _write_holder(fd, command)
        yield path
    finally:
        _held.pop(path, None)
        with contextlib.suppress(OSError):
            path.unlink()  # before closing: a waiter that opened this file sees it unlinked and retries
        os.close(fd)
        _remove_empty(created)


def locked_run(command: str, attribute: str = "output") -> Callable:
    """Decorator: run `function(cfg, ...)` holding the lock of `getattr(cfg, attribute)`.

    Example (one line above a command's library function):
        @locked_run("ladc export")
        def export_onnx(cfg: ExportConfig, console=None) -> dict: ...
    """

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(cfg, *args, **kwargs):
            with run_lock(getattr(cfg, attribute), command):
                return function(cfg, *args, **kwargs)

        return wrapper

    return decorate
