"""Tests for ladc/runs/launch.py: the world size a launcher exports, and main-process-first when launched alone
(tests/test_training_data.py runs it under a real 2-process torchrun)."""

from __future__ import annotations

import pytest

from ladc.runs.launch import cpu_process_group, launched_world_size, main_process_first


@pytest.mark.parametrize(("value", "size"), [(None, 1), ("", 1), ("4", 4), ("0", 1), ("two", 1)])
def test_the_world_size_is_what_the_launcher_exported_or_one(monkeypatch, value, size):
    if value is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", value)
    assert launched_world_size() == size


def test_alone_there_is_no_process_group_and_the_block_just_runs(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ran = []
    with main_process_first():
        ran.append(True)
    assert ran == [True] and cpu_process_group() is False
