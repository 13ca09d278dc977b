"""Tests for `ladc push` (ladc/commands/push.py): refusals before any network use, and a hub that cannot be reached failing in
one line with nothing written (the real upload path needs internet; it is exercised by users, not here)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from ladc.commands.push import push_to_hub
from ladc.errors import LadcError
from tests.conftest import subprocess_env_with_default_threads


def _model_dir(tmp_path):
    directory = tmp_path / "student"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    (directory / "README.md").write_text("---\nlicense: apache-2.0\n---\n# card\n")
    return directory


def test_push_refuses_what_is_not_a_finished_model_dir(tmp_path):
    with pytest.raises(LadcError, match="is not a directory"):
        push_to_hub(tmp_path / "missing", "me/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LadcError, match="has neither config.json nor export.json"):
        push_to_hub(tmp_path / "empty", "me/model")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(LadcError, match="has no model card"):
        push_to_hub(tmp_path / "empty", "me/model")
    with pytest.raises(LadcError, match="repo 'model' is not a hub repo id; expected OWNER/NAME"):
        push_to_hub(_model_dir(tmp_path), "model")


def test_push_to_an_unreachable_hub_is_one_line_and_writes_nothing(tmp_path):
    directory = _model_dir(tmp_path)
    before = sorted(p.name for p in directory.iterdir())
    with socket.socket() as sock:  # a port nothing listens on: the connection is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**subprocess_env_with_default_threads(), "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_test"}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(
        [sys.executable, "-m", "ladc", "push", str(directory), "me/model"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: push: cannot upload {directory} to the hub repo me/model")
    assert sorted(p.name for p in directory.iterdir()) == before
