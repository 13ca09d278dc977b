"""Tests for ladc/runs/checkpoint_files.py: complete checkpoints newest first, the newest intact one (a damaged file
named before anything loads), and the temp files a killed process leaves (no training needed: the files are made
here)."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest

from ladc.errors import LadcError
from ladc.runs.checkpoint_files import (
    CHECKPOINT_DIR,
    STATE_FILE,
    check_checkpoint,
    complete_checkpoints,
    latest_checkpoint,
    remove_stale_temps,
)


def _checkpoint(run_dir: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint with a valid safetensors file, a torch.save-style zip and its state."""
    import numpy as np
    from safetensors.numpy import save_file

    path = run_dir / CHECKPOINT_DIR / f"step-{step}"
    path.mkdir(parents=True)
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(path / "model.safetensors"))
    with zipfile.ZipFile(path / "optimizer.bin", "w") as archive:
        archive.writestr("data.pkl", b"x" * 100)
    if complete:
        (path / STATE_FILE).write_text(json.dumps({"step": step}))
    return path


def test_complete_checkpoints_are_those_with_a_state_newest_first_by_step_number(tmp_path):
    assert complete_checkpoints(tmp_path) == []
    for step in (9, 10, 100):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 200, complete=False)  # killed before its state was written
    (tmp_path / CHECKPOINT_DIR / "step-x").mkdir()
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step-100", "step-10", "step-9"]  # not by name


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before_with_a_warning(tmp_path, caplog):
    assert latest_checkpoint(tmp_path) is None
    older, newest = _checkpoint(tmp_path, 2), _checkpoint(tmp_path, 4)
    assert latest_checkpoint(tmp_path) == newest
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # truncated
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path) == older
    assert f"checkpoint {newest} is damaged (model.safetensors" in caplog.text and "from step-2 instead" in caplog.text
    caplog.clear()
    assert latest_checkpoint(tmp_path, warn=False) == older and caplog.text == ""


def test_every_checkpoint_damaged_is_one_error_naming_each_and_the_way_out(tmp_path):
    first, second = _checkpoint(tmp_path, 2), _checkpoint(tmp_path, 4)
    (first / "optimizer.bin").write_bytes(b"not a zip")
    (second / STATE_FILE).write_text("{")
    with pytest.raises(LadcError) as caught:
        latest_checkpoint(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"no usable checkpoint to resume: checkpoint {second} is damaged ({STATE_FILE}: ")
    assert f"checkpoint {first} is damaged (optimizer.bin: " in message
    assert message.endswith("pass --overwrite instead of --resume to start again") and "\n" not in message
    with pytest.raises(LadcError, match=r"optimizer\.bin: File is not a zip file\); pass --overwrite"):
        check_checkpoint(first)


def test_stale_temps_are_removed_and_nothing_else(tmp_path):
    kept = _checkpoint(tmp_path, 2)
    leftovers = [tmp_path / ".best.tmp-123", tmp_path / CHECKPOINT_DIR / ".step-4.tmp-7", tmp_path / ".config.yaml.x.tmp",
                 tmp_path / ".best.old-9"]  # fmt: skip
    for path in leftovers[:2]:
        path.mkdir()
    for path in leftovers[2:]:
        path.write_text("partial")
    (tmp_path / "config.yaml").write_text("kept")
    remove_stale_temps(tmp_path)
    assert not any(path.exists() for path in leftovers)
    assert (tmp_path / "config.yaml").read_text() == "kept" and complete_checkpoints(tmp_path) == [kept]
