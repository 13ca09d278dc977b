"""Checkpoints as the training loop sees them: how many to keep, refusing to resume with another world size, which
evaluated checkpoint to keep, and stopping on Ctrl-C. (The files of a checkpoint dir, and finding the newest intact
one, are ladc.runs.checkpoint_files.)

A run keeps its newest KEEP_CHECKPOINTS checkpoints (accelerate states, each renamed into place when complete), so a
newest one damaged on disk still leaves one to resume from.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ladc.errors import LadcError

__all__ = ["KEEP_CHECKPOINTS", "check_world_size", "graceful_sigint", "kept_index", "selection_margin"]

KEEP_CHECKPOINTS = 2  # the newest, and the one before it in case the newest is damaged (`--resume` falls back)


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
