"""Tests of ladc/runs/export_manifest.py: export.json's one reader and one writer."""

import json

import pytest

from ladc.errors import LadcError
from ladc.runs.export_manifest import (
    EXPORT_MANIFEST,
    ExportManifest,
    is_export_dir,
    read_export_manifest,
    write_export_manifest,
)

# the keys `ladc export --select fastest` writes, in its order, plus one this version does not know
WRITTEN = {
    "kind": "onnx-export", "source_model": "/runs/student", "task": "sst2", "opset": 17, "device": "cpu",
    "config": {"opset": 17}, "versions": {"torch": "2.13"}, "parity_set": {"examples": 48},
    "backends": ["onnxruntime"], "artifacts": [{"name": "fp32", "path": "model.onnx", "parity": {"accepted": True}}],
    "skipped_backends": [{"backend": "openvino", "reason": "not installed"}], "export_s": 1.5,
    "pytorch": {"headline_metric": "accuracy"}, "passed": True, "selection": {"chosen": "fp32"},
    "created": "2026-11-27T10:00:00+0000", "future_key": {"kept": 1},
}  # fmt: skip


def test_a_written_manifest_reads_back_and_rewrites_byte_for_byte(tmp_path):
    text = json.dumps(WRITTEN, indent=2) + "\n"
    (tmp_path / EXPORT_MANIFEST).write_text(text)
    manifest = read_export_manifest(tmp_path)
    assert (manifest.task, manifest.chosen, manifest.names()) == ("sst2", "fp32", ["fp32"])
    assert manifest.artifact("fp32")["path"] == "model.onnx" and manifest.artifact("int8") is None
    assert manifest.extra == {"future_key": {"kept": 1}}
    write_export_manifest(tmp_path, manifest)
    assert (tmp_path / EXPORT_MANIFEST).read_text() == text


def test_unset_optional_keys_are_not_written():
    written = ExportManifest(task="sst2", artifacts=[]).to_dict()
    assert list(written) == ["kind", "source_model", "task", "opset", "device", "config", "versions", "parity_set",
                             "backends", "artifacts"]  # fmt: skip
    assert ExportManifest().chosen is None


def test_the_reader_names_what_is_wrong(tmp_path):
    assert not is_export_dir(tmp_path)
    with pytest.raises(LadcError, match=f"{tmp_path} is not a `ladc export` dir \\(no export.json\\)"):
        read_export_manifest(tmp_path)
    (tmp_path / EXPORT_MANIFEST).write_text(json.dumps({"task": "sst2"}))
    assert is_export_dir(tmp_path) and read_export_manifest(tmp_path).artifacts == []  # the task alone reads
    (tmp_path / EXPORT_MANIFEST).write_text(json.dumps({"task": "sst2", "artifacts": "model.onnx"}))
    with pytest.raises(LadcError, match=r"export.json has no 'artifacts' list; re-run `ladc export`"):
        read_export_manifest(tmp_path)
    (tmp_path / EXPORT_MANIFEST).write_text("{")
    with pytest.raises(LadcError, match="invalid JSON"):
        read_export_manifest(tmp_path)
