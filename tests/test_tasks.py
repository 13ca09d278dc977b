"""Tests for ladc/data/tasks.py: the GLUE registry's label counts, regression flag, lookup and errors."""

from __future__ import annotations

import pytest

from ladc.data.tasks import TASKS, get_task
from ladc.errors import LadcError

EXPECTED_NUM_LABELS = {
    "cola": 2,
    "sst2": 2,
    "mrpc": 2,
    "stsb": 1,
    "qqp": 2,
    "mnli": 3,
    "qnli": 2,
    "rte": 2,
    "wnli": 2,
}


def test_registry_has_all_nine_tasks_with_label_counts():
    assert set(TASKS) == set(EXPECTED_NUM_LABELS)
    for name, num_labels in EXPECTED_NUM_LABELS.items():
        task = TASKS[name]
        assert task.num_labels == num_labels, name
        assert task.is_regression == (name == "stsb"), name
        assert len(task.text_fields) == (1 if name in ("cola", "sst2") else 2), name
        assert len(task.tsv_text_columns) == len(task.text_fields), name
        assert len(task.dev_splits) == len(task.tsv_dev_files), name
        assert len(task.test_splits) == len(task.tsv_test_files), name


def test_hub_label_orders():
    # the hub's order, which the TSV readers map names onto (MNLI's TSV processors use another order)
    assert get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("rte").label_names == ("entailment", "not_entailment")
    assert get_task("wnli").label_names == ("not_entailment", "entailment")
    assert get_task("mnli").dev_splits == ("validation_matched", "validation_mismatched")


@pytest.mark.parametrize(("alias", "name"), [("sst-2", "sst2"), ("SST-2", "sst2"), ("STS-B", "stsb"), (" RTE ", "rte")])
def test_get_task_accepts_glue_directory_names(alias, name):
    assert get_task(alias) is TASKS[name]


def test_unknown_task_error_has_did_you_mean():
    with pytest.raises(LadcError, match=r"unknown task 'sst3' \(did you mean 'sst2'\?\); expected one of: cola, sst2"):
        get_task("sst3")
    with pytest.raises(LadcError) as error:
        get_task("imagenet")
    assert "did you mean" not in str(error.value)


def test_dev_split_resolution():
    assert get_task("mnli").dev_split("dev") == "validation_matched"
    assert get_task("mnli").dev_split("validation_mismatched") == "validation_mismatched"
    assert get_task("rte").dev_split(None) == "validation"
