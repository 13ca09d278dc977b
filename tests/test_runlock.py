"""Tests of ladc/runs/runlock.py: one ladc process per output directory, with real processes holding and losing locks."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ladc.errors import LadcError
from ladc.runs.runlock import lock_path, locked_run, run_lock
from tests.helpers import write_tiny_base_model, write_tiny_sst2

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
HOLDER = """
import sys, time
from ladc.runs.runlock import run_lock
with run_lock(sys.argv[1], "ladc test-holder"):
    print("held", flush=True)
    time.sleep(300)
"""


class Holder:
    """A real process holding the lock of `output` until killed."""

    def __init__(self, output: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(output)], stdout=subprocess.PIPE, env=ENV, text=True
        )
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        self.proc.wait(timeout=30)


@pytest.fixture
def holder_factory():
    holders: list[Holder] = []

    def make(output: Path) -> Holder:
        holders.append(Holder(output))
        return holders[-1]

    yield make
    for holder in holders:
        if holder.proc.poll() is None:
            holder.kill()


def test_lock_file_sits_beside_the_output_and_names_its_holder(tmp_path):
    output = tmp_path / "runs" / "teacher-sst2"
    assert lock_path(output) == tmp_path.resolve() / "runs" / ".teacher-sst2.lock"
    with run_lock(output, "ladc tune-teacher") as path:
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "ladc tune-teacher"
        assert not output.exists()  # the lock never creates the output itself
    assert not path.exists()
    assert not (tmp_path / "runs").exists()  # parents it made and left empty are removed again


def test_parents_that_receive_a_run_are_kept(tmp_path):
    output = tmp_path / "runs" / "x"
    with run_lock(output, "ladc test"):
        output.mkdir()
    assert output.is_dir() and not lock_path(output).exists()


def test_nested_lock_in_one_process_is_allowed(tmp_path):
    with run_lock(tmp_path / "out", "ladc pipeline") as outer:
        with run_lock(tmp_path / "out", "ladc pipeline") as inner:
            assert inner is None  # the outer lock already covers this process
        assert outer.exists()


def test_second_process_is_refused_with_the_holders_pid(tmp_path, holder_factory):
    output = tmp_path / "run"
    holder = holder_factory(output)
    with pytest.raises(LadcError) as error:
        with run_lock(output, "ladc tune-teacher"):
            pass
    message = str(error.value)
    assert f"pid {holder.proc.pid}: ladc test-holder" in message and str(output) in message
    assert "\n" not in message


def test_a_holder_that_names_our_pid_is_still_another_process(tmp_path, holder_factory):
    """Another PID namespace can hold the lock under our pid (two containers both run ladc as PID 1): the holder's
    pid in the file must not make a live lock look like this process's own."""
    output = tmp_path / "run"
    holder_factory(output)
    lock_path(output).write_text(json.dumps({"pid": os.getpid(), "command": "ladc in another container"}))
    with pytest.raises(LadcError, match=rf"in use by another ladc process \(pid {os.getpid()}: ladc in another"):
        with run_lock(output, "ladc tune-teacher"):
            pass


UNSHARED_TRY = """
import sys
from ladc.errors import LadcError
from ladc.runs.runlock import run_lock
try:
    with run_lock(sys.argv[1], "ladc second"):
        print("taken", flush=True)
except LadcError as exc:
    print("refused:", exc, flush=True)
"""


def test_two_pid_namespaces_with_the_same_pid_do_not_share_the_lock(tmp_path):
    """Two processes that are both PID 1 of their own namespace (`unshare -p -f`, as two containers)."""
    probe = subprocess.run(["unshare", "-p", "-f", sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, env=ENV)  # fmt: skip
    if probe.returncode != 0 or probe.stdout.strip() != "1":
        pytest.skip(f"cannot make a PID namespace here (needs root): {probe.stderr.strip()[:200]}")
    output = tmp_path / "run"
    holder = subprocess.Popen(["unshare", "-p", "--kill-child", sys.executable, "-c", HOLDER, str(output)],
                              stdout=subprocess.PIPE, env=ENV, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert json.loads(lock_path(output).read_text())["pid"] == 1
        second = subprocess.run(["unshare", "-p", "-f", sys.executable, "-c", UNSHARED_TRY, str(output)],
                                capture_output=True, text=True, env=ENV, timeout=120)  # fmt: skip
    finally:
        holder.kill()  # --kill-child: PID 1 of the namespace dies with unshare, and the kernel drops the flock
        holder.wait(timeout=30)
    assert second.stdout.startswith("refused: output") and "(pid 1: ladc test-holder)" in second.stdout, second


def test_lock_of_a_killed_process_is_taken_over(tmp_path, holder_factory, caplog):
    output = tmp_path / "run"
    holder = holder_factory(output)
    holder.kill()
    assert json.loads(lock_path(output).read_text())["pid"] == holder.proc.pid  # stale file left behind
    with caplog.at_level(logging.WARNING, logger="ladc.runs.runlock"):
        with run_lock(output, "ladc distill") as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"took over the stale lock of pid {holder.proc.pid}" in caplog.text


def test_stale_lock_file_with_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    output = tmp_path / "run"
    lock_path(output).write_text(json.dumps({"pid": dead.pid, "command": "ladc distill"}))
    with run_lock(output, "ladc distill") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_unwritable_location_and_a_file_on_the_way_are_user_errors(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(LadcError, match="a-file is a file, not a directory"):
        with run_lock(blocker / "out", "ladc test"):
            pass
    # /proc accepts no new entries, even from root (chmod cannot make a directory unwritable for root)
    with pytest.raises(LadcError, match="/proc"):
        with run_lock("/proc/ladc-lock-test/out", "ladc test"):
            pass


def test_launcher_ranks_other_than_0_do_not_lock(tmp_path, monkeypatch, holder_factory):
    output = tmp_path / "run"
    holder_factory(output)
    monkeypatch.setenv("RANK", "1")  # what torchrun / accelerate launch export to every rank
    with run_lock(output, "ladc distill") as path:
        assert path is None


def test_no_output_locks_nothing():
    with run_lock(None, "ladc bench") as path:  # bench picks runs/bench-<task> itself when --output is not given
        assert path is None


def test_decorator_locks_the_configs_output(tmp_path, holder_factory):
    from types import SimpleNamespace

    @locked_run("ladc export")
    def export(cfg):
        return json.loads(lock_path(cfg.output).read_text())["command"]

    assert export(SimpleNamespace(output=str(tmp_path / "onnx"))) == "ladc export"
    holder_factory(tmp_path / "busy")
    with pytest.raises(LadcError, match="in use by another ladc process"):
        export(SimpleNamespace(output=str(tmp_path / "busy")))


def test_tune_teacher_and_distill_take_the_lock(tmp_path, holder_factory):
    """Library calls (what the pipeline uses) refuse a run dir another process holds, before touching it."""
    from ladc.commands.distill import distill
    from ladc.commands.teacher import tune_teacher
    from ladc.runs.config import DistillConfig, TuneTeacherConfig

    output = tmp_path / "run"
    holder = holder_factory(output)
    for call in (lambda: tune_teacher(TuneTeacherConfig(output=str(output))),
                 lambda: distill(DistillConfig(output=str(output)))):  # fmt: skip
        with pytest.raises(LadcError, match=rf"pid {holder.proc.pid}: ladc test-holder"):
            call()
    assert not output.exists()


def test_two_real_ladc_runs_then_the_killed_ones_lock_is_taken_over(tmp_path, tiny_bert_config, tiny_tokenizer):
    """A real `ladc tune-teacher` holds its run dir; a second one is refused with its pid; after a SIGKILL the next
    run takes the stale lock over."""
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=2), tiny_tokenizer)
    glue = write_tiny_sst2(tmp_path / "glue", train=32, dev=8)
    output = tmp_path / "teacher"
    command = [sys.executable, "-m", "ladc", "tune-teacher", "--task", "sst2", "--model", str(base), "--data-dir",
               str(glue), "--batch-size", "4", "--eval-steps", "1000", "--save-steps", "1000", "--output", str(output)]  # fmt: skip
    first = subprocess.Popen([*command, "--max-steps", "100000"], env=ENV, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (output / "config.yaml").is_file():  # the first run is past its checks and writing
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never created its run dir"
            time.sleep(0.2)
        second = subprocess.run([*command, "--max-steps", "2", "--overwrite"], env=ENV, cwd=tmp_path,
                                capture_output=True, text=True, timeout=240)  # fmt: skip
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"in use by another ladc process (pid {first.pid}: ladc tune-teacher)" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert (output / "config.yaml").is_file()  # --overwrite did not delete the first run's dir
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert json.loads(lock_path(output).read_text())["pid"] == first.pid  # the killed run's stale lock
    # the next run takes the stale lock over, then stops at its model, a file (a full run would only cost time; a bad
    # option would stop it before the lock: flags are checked while the config is built)
    not_a_model = glue / "SST-2" / "train.tsv"
    third = subprocess.run([*command, "--overwrite", "--model", str(not_a_model)], env=ENV, cwd=tmp_path,
                           capture_output=True, text=True, timeout=240)  # fmt: skip
    assert f"took over the stale lock of pid {first.pid}" in third.stderr
    assert third.returncode == 2 and "is a file; expected an HF model directory" in third.stderr, third.stderr[-3000:]
    assert not lock_path(output).exists() and (output / "config.yaml").is_file()
