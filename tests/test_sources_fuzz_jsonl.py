"""Property-based tests of the JSON Lines reader (ladc/data/sources.py via ladc.data.data.load_raw): generated train
files, with the faults and the oracle of tests/fuzzing.py; see test_sources_fuzz.py for what is generated."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ladc.data.data import load_raw
from ladc.data.tasks import get_task
from ladc.runs.config import DataConfig
from tests.fuzzing import (
    COLUMN_NAMES,
    CSV_TEXT,
    EMPTY_TEXTS,
    EXAMPLES,
    PAIR_TASKS,
    SETTINGS,
    Expected,
    assert_outcome,
    bad_labels,
    encode,
    nonempty,
    oracle_bytes,
    oracle_label,
    some_text,
    valid_labels,
)

# ----------------------------------------------------------------------------- JSON Lines files

JSON_FAULTS = ["none"] * 6 + ["empty", "invalid", "not_object", "missing_key", "missing_label", "bad_text"]
JSON_FAULTS += ["surrogate", "bad_label", "latin-1", "utf-16", "empty_text"]
JSON_TEXT = st.one_of(
    some_text(CSV_TEXT), st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def jsonl_files(draw):
    task = get_task(draw(st.sampled_from(PAIR_TASKS)))
    names = draw(st.lists(COLUMN_NAMES, min_size=len(task.text_fields) + 1, max_size=4, unique=True))
    text_names, label_name = names[: len(task.text_fields)], names[len(task.text_fields)]
    fault = draw(st.sampled_from(JSON_FAULTS))
    objects: list = []
    for _ in range(draw(st.integers(1, 5))):
        record = {name: draw(JSON_TEXT) for name in text_names}
        label = draw(st.sampled_from(valid_labels(task)))
        record[label_name] = int(label) if label.strip().isdigit() and draw(st.booleans()) else label
        if draw(st.booleans()):
            record["extra"] = draw(JSON_TEXT)
        objects.append(record)
    target = draw(st.integers(0, len(objects) - 1))
    lines = [json.dumps(o, ensure_ascii=draw(st.booleans())) for o in objects]
    if fault == "empty":
        lines = []
    elif fault == "invalid":
        lines[target] = lines[target][:-1]
    elif fault == "not_object":
        lines[target] = draw(st.sampled_from(["[1, 2]", "3", '"text"', "null", "true"]))
    elif fault in (
        "missing_key",
        "missing_label",
        "bad_text",
        "surrogate",
        "bad_label",
        "latin-1",
        "utf-16",
        "empty_text",
    ):
        record = objects[target]
        if fault == "missing_key":
            del record[text_names[0]]
        elif fault == "missing_label":
            del record[label_name]
        elif fault == "bad_text":
            record[text_names[0]] = draw(st.sampled_from([[1, 2], {"a": 1}, True, False]))
        elif fault == "surrogate":
            record[text_names[0]] = "a\ud800b"
        elif fault == "bad_label":
            record[label_name] = draw(st.sampled_from(bad_labels(task)))
        elif fault == "empty_text":
            record[text_names[-1]] = draw(st.one_of(EMPTY_TEXTS, st.none()))  # null is no text either
        else:
            record[text_names[0]] = "déjà vu"
        lines[target] = json.dumps(record, ensure_ascii=fault != "latin-1")
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", "\t", "\r"])))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    text = "".join(line + terminator for line in lines)
    encoding = fault if fault in ("latin-1", "utf-16") else draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    return task, text_names, label_name, encode(text, encoding)


def oracle_jsonl(text: str, task, text_names, label_name):
    parsed = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise Expected("invalid JSON", line=number) from None
        if not isinstance(value, dict):
            raise Expected("expected a JSON object", line=number)
        parsed.append((number, value))
    if not parsed:
        raise Expected("has no data rows")
    available = {key for _, value in parsed for key in value}
    for name in text_names:
        if name not in available:
            raise Expected(f"missing text column '{name}'")
    if label_name not in available:
        raise Expected(f"missing label column '{label_name}'")
    rows = []
    for number, value in parsed:
        texts = []
        for name in text_names:
            if name not in value:
                raise Expected(f"no text field '{name}'", line=number)
            cell = value[name]
            if isinstance(cell, bool) or not isinstance(cell, (str, int, float, type(None))):
                raise Expected(f"text field '{name}' is", line=number)
            cell = "" if cell is None else str(cell)
            if any(0xD800 <= ord(c) <= 0xDFFF for c in cell):
                raise Expected("unpaired UTF-16 surrogate", line=number)
            texts.append(nonempty(number, [cell], [name])[0])
        if label_name not in value:
            raise Expected(f"no label field '{label_name}'", line=number)
        try:
            rows.append((*texts, oracle_label(value[label_name], task, "train")))
        except Expected as expected:
            raise Expected(*expected.fragments, line=number) from None
    return rows


@settings(max_examples=EXAMPLES["jsonl"], **SETTINGS)
@given(jsonl_files())
def test_jsonl_train_files_load_exactly_or_fail_in_one_line(generated):
    task, text_names, label_name, data = generated
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "train.jsonl"
        path.write_bytes(data)
        data_config = DataConfig(
            task=task.name, train_file=str(path), text_fields=tuple(text_names), label_field=label_name
        )
        try:
            expected = oracle_jsonl(oracle_bytes(data), task, text_names, label_name)
        except Expected as outcome:
            expected = outcome
        assert_outcome(lambda: load_raw(data_config, "train"), path, expected)
