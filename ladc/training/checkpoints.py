"""Checkpoint dirs of a training run: the newest intact one, cleanup after a killed run, stopping on Ctrl-C, and which
evaluated checkpoint to keep.

A run keeps its newest KEEP_CHECKPOINTS checkpoints (accelerate states, each renamed into place when complete), so a
newest one damaged on disk still leaves one to resume from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ladc.errors import LadcError

__all__ = [
    "CHECKPOINT_DIR",
    "KEEP_CHECKPOINTS",
    "STATE_FILE",
    "check_checkpoint",
    "check_world_size",
    "complete_checkpoints",
    "graceful_sigint",
    "kept_index",
    "latest_checkpoint",
    "remove_stale_temps",
    "selection_margin",
]

_log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
KEEP_CHECKPOINTS = 2  # the newest, and the one before it in case the newest is damaged (`--resume` falls back)


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints under run_dir/checkpoints that were renamed into place (they hold trainer_state.json), newest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    done = [p for p in root.glob("step-*") if p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name[5:]), reverse=True) if root.is_dir() else []


def latest_checkpoint(run_dir: Path, warn: bool = True) -> Path | None:
    """The newest checkpoint under run_dir/checkpoints whose files are intact; None when there is none at all.

    A damaged newest checkpoint (truncated or overwritten file) is skipped for the one before it, with a warning
    unless `warn` is False (a check before the run, which warns once it resumes).

    Raises:
        LadcError: checkpoints exist but every one is damaged (each is named with its first bad file).
    """
    damaged = []
    for checkpoint in complete_checkpoints(run_dir):
        try:
            check_checkpoint(checkpoint)
        except LadcError as exc:
            damaged.append(str(exc).split("; pass --overwrite")[0])
            continue
        for reason in damaged if warn else ():
            _log.warning("ladc: %s; resuming from %s instead", reason, checkpoint.name)
        return checkpoint
    if damaged:
        raise LadcError(
            f"no usable checkpoint to resume: {'; '.join(damaged)}; pass --overwrite instead of --resume to start again"
        )
    return None


def check_checkpoint(checkpoint: Path) -> None:
    """Raise LadcError when a file --resume would load from `checkpoint` is damaged (truncated, overwritten).

    Reads headers and checksums only (safetensors header, zip CRCs of torch.save files, JSON), so a bad file is named
    before any model loads instead of failing inside accelerate's load_state.
    """
    import zipfile

    from safetensors import SafetensorError, safe_open

    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as handle:
                    handle.keys()
            elif path.suffix in (".bin", ".pkl"):  # torch.save writes zip archives whatever the extension
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken:
                    raise ValueError(f"{broken} fails its checksum")
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, SafetensorError) as exc:
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise LadcError(
                f"checkpoint {checkpoint} is damaged ({path.name}: {reason}); pass --overwrite instead of --resume "
                "to start the run again"
            ) from None


def check_world_size(state: dict, checkpoint: Path, world_size: int, global_batch: int) -> None:
    """Refuse to resume a checkpoint written by another number of processes (or another global batch).

    The position in the epoch and the lr schedule are counted in optimizer steps of the sharded loader, so with
    another world size the same step number stands for another number of samples. Checkpoints of older ladc versions
    record neither value and are resumed as before.

    Raises:
        LadcError: one line naming the saved and the current world size and global batch.
    """
    saved_size, saved_batch = state.get("world_size"), state.get("global_batch")
    if saved_size is None or (saved_size, saved_batch) == (world_size, global_batch):
        return
    raise LadcError(
        f"cannot resume from {checkpoint}: it was trained with world size {saved_size} (global batch {saved_batch}), "
        f"this launch has world size {world_size} (global batch {global_batch}); relaunch with {saved_size} "
        "process(es), or pass --overwrite instead of --resume to start again"
    )


def selection_margin(best_score: float, examples: int) -> float:
    """By how much an earlier checkpoint must beat a later one to be kept: one standard error of the score,
    sqrt(p (1 - p) / n), and at least one example (1 / n); 0 when the number of examples is unknown.

    Why one standard error: two checkpoints scored on the same n rows differ by about sqrt(d) / n from noise alone,
    d being the rows they disagree on; nearby checkpoints disagree on 5 to 15 % of the rows, which gives 0.22 to
    0.39 / sqrt(n), about the range of sqrt(p (1 - p) / n) at the accuracies we see (0.22 to 0.43 / sqrt(n) for
    0.95 to 0.75). The same scale serves the correlation headlines (MCC, Pearson: their standard errors are of the
    same order), with p clipped to [0, 1]. At 0.88 this is 6.5 of 400 rows, or 14.5 of 2,000.
    """
    if examples <= 0:
        return 0.0
    p = min(max(best_score, 0.0), 1.0)
    return max(1.0 / examples, math.sqrt(p * (1.0 - p) / examples))


def kept_index(scores: list[float], examples: int) -> int:
    """Which of the evaluated checkpoints (scores in step order) to keep: the latest whose score is within
    `selection_margin` of the best one.

    A later checkpoint has trained on more data; an earlier one that wins by a row or two is noise, not evidence
    (RESULTS: epoch-1 checkpoints kept by 1 to 3 holdout rows lost 1.5 to 3.7 dev points). Comparing each score with
    the best, not with the kept one, stops a slow decline from being followed step by step. A NaN score never wins.

    Args:
        scores: the headline metric of each evaluation so far, oldest first (at least one).
        examples: rows of the selection split (0: unknown, then ties alone go to the later checkpoint).
    """
    finite = [-math.inf if math.isnan(score) else score for score in scores]
    best = max(finite)
    if best == -math.inf:
        return len(scores) - 1
    floor = best - selection_margin(best, examples) - 1e-12  # a win by exactly the margin is not more than it
    return max(index for index, score in enumerate(finite) if score >= floor)


def remove_stale_temps(run_dir: Path) -> None:
    """Delete the temp dirs and files a killed process left in a run dir (its lock says no live process writes)."""
    run_dir = Path(run_dir)
    for parent in (run_dir, run_dir / CHECKPOINT_DIR):
        for pattern in (".*.tmp-*", ".*.old-*", ".*.tmp"):
            for path in parent.glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


@contextlib.contextmanager
def graceful_sigint(enabled: bool) -> Iterator[Callable[[], bool]]:
    """Yields `asked()`: True once Ctrl-C was pressed. The loop then checkpoints the step it is on and stops.

    A second Ctrl-C interrupts at once. Only for one process in the main thread: ranks that stop at different
    steps would hang in their next collective.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    asked: list[bool] = []

    def handler(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGINT, previous)
