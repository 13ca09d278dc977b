"""Tests for ladc/runs/manifest.py: ladc.json read back as written, old, partial and newer files, one-line errors."""

from __future__ import annotations

import json

import pytest

from ladc.errors import LadcError
from ladc.runs.manifest import RUN_MANIFEST, RunManifest, read_manifest
from ladc.runs.runs import versions
from tests.helpers import write_run_manifest

STUDENT = RunManifest(
    kind="student", task="rte", teacher="runs/teacher-rte", base_model="bert-base-uncased", method="lad",
    teacher_layers=12, student_layers=6, layer_map=[2, 4, 6, 8, 10, 12], student_init="even",
    init_from="bert-base-uncased", seed=43, data={"task": "rte", "data_dir": "../glue"}, config={"mu": 500.0},
    dev={"accuracy": 0.61}, teacher_dev={"accuracy": 0.66}, retention=0.92, versions={"torch": "2.13.0"},
)  # fmt: skip


def test_a_student_manifest_round_trips(tmp_path):
    run_dir = write_run_manifest(tmp_path / "s", json.dumps(STUDENT.to_dict()))
    assert read_manifest(run_dir) == STUDENT


def test_a_teacher_manifest_keeps_to_its_own_keys(tmp_path):
    teacher = RunManifest(kind="teacher", task="sst2", base_model="minilm", data={"task": "sst2"}, config={},
                          dev={"accuracy": 0.8}, versions=versions())  # fmt: skip
    assert set(teacher.to_dict()) == {
        "kind",
        "task",
        "base_model",
        "data",
        "config",
        "dev",
        "lr",
        "lr_source",
        "mixed_precision",
        "versions",
        "holdout",
    }
    assert read_manifest(write_run_manifest(tmp_path / "t", json.dumps(teacher.to_dict()))) == teacher
    assert "torch" in teacher.versions


def test_missing_partial_and_newer_manifests(tmp_path):
    assert read_manifest(tmp_path) is None  # any HF dir without ladc.json is a valid input
    assert read_manifest(write_run_manifest(tmp_path / "a", '{"task": "qnli"}')) == RunManifest(task="qnli")
    newer = read_manifest(write_run_manifest(tmp_path / "b", '{"task": "qnli", "added_in_2027": [1]}'))
    assert newer.task == "qnli"  # a key a later ladc adds does not stop an older one


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"task": "sst2",', "invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"task": ["sst2"]}', "task: expected a string, got ['sst2']"),
        ('{"student_layers": "six"}', "student_layers: expected an integer"),
    ],
)
def test_a_garbled_manifest_is_a_one_line_error_naming_the_file(tmp_path, text, message):
    run_dir = write_run_manifest(tmp_path / "run", text)
    with pytest.raises(LadcError) as error:
        read_manifest(run_dir)
    assert str(run_dir / RUN_MANIFEST) in str(error.value) and message in str(error.value)
    assert len(str(error.value).splitlines()) == 1
