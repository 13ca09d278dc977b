"""TEST-ONLY kill points: a `ladc` process SIGKILLs itself at a named point, so fault tests are exact and cheap.

The fault-injection tests (tests/test_faults.py, tests/helpers.py) set one of two environment variables on a real
`python -m ladc ...` child process; nothing else may set them, and unset they cost one dictionary lookup:

- `LADC_TEST_KILL_AT=<point>[:n[:SIGNAL]]`: at the n-th time (default 1) this process passes `kill_point(<point>)`,
  send itself SIGNAL (default KILL; INT stands in for a Ctrl-C that lands exactly there).
- `LADC_TEST_KILL_AT_STEP=N`: die right after the checkpoint of training step N is complete (point
  `checkpoint-done` with step N); kept for the resume tests that name a step rather than a count.

SIGKILL ends the process as an OOM kill or a power cut would: no `finally`, no atexit, no flush.
"""

from __future__ import annotations

import os
import signal

__all__ = ["KILL_AT_ENV", "KILL_AT_STEP_ENV", "POINTS", "TRACE_ENV", "kill_point"]

KILL_AT_ENV = "LADC_TEST_KILL_AT"
KILL_AT_STEP_ENV = "LADC_TEST_KILL_AT_STEP"
TRACE_ENV = "LADC_TEST_KILL_TRACE"
# every point some command passes, so a test can check that a point it names exists
POINTS = (
    "train-step",  # an optimizer step is done, before its eval/checkpoint
    "checkpoint-write",  # half a checkpoint is in its temp dir (model and optimizer written, trainer state not)
    "checkpoint-rename",  # the checkpoint's temp dir is complete, not yet renamed into place
    "checkpoint-done",  # the checkpoint is in place, older ones not yet pruned
    "best-write",  # the best model's temp dir is complete, not yet renamed over the previous best
    "finalize",  # a training run's final files are being linked into the run dir (before ladc.json)
    "finalize-manifest",  # ladc.json written, metrics.json (the marker of a finished run) not yet
    "artifact-done",  # export: one artifact (graph) is built in the temp output dir
    "export-rename",  # export: the output temp dir is complete, not yet renamed into place
    "stage-done",  # pipeline: a stage finished, the next not started
    "atomic-write",  # any atomic file write: the temp file is complete and fsynced, not yet renamed
    "atomic-dir",  # any atomic dir: the temp dir is complete, not yet renamed
    "atomic-dir-swap",  # replacing a dir: the old one is moved aside, the new one not yet in place
)
_passed: dict[str, int] = {}  # test-only state: how often this process passed each point


def kill_point(name: str, step: int | None = None) -> None:
    """SIGKILL this process here if a fault test asked for point `name` (and its count, or `step`); else nothing."""
    spec, at_step, trace = (os.environ.get(k) for k in (KILL_AT_ENV, KILL_AT_STEP_ENV, TRACE_ENV))
    if not (spec or at_step or trace):
        return
    _passed[name] = _passed.get(name, 0) + 1
    if trace:
        with open(trace, "a") as handle:
            handle.write(f"{name}:{_passed[name]}\n")
    point, count, signal_name = ((spec or "").split(":") + ["", ""])[:3]
    if point == name and _passed[name] == int(count or 1):
        # raise_signal sends it to this thread and runs Python's handler before returning, so a Ctrl-C lands exactly
        # here (os.kill(getpid()) lets the kernel pick any thread). A process that ignores SIGINT (started with `&`
        # by a non-interactive shell) ignores this one too, as it would a real Ctrl-C
        signal.raise_signal(getattr(signal, f"SIG{signal_name or 'KILL'}"))
    elif at_step and name == "checkpoint-done" and step == int(at_step):
        os.kill(os.getpid(), signal.SIGKILL)
