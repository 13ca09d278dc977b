"""Tests of ladc/data/sources.py on small hand-written files: each reader's documented result, column by column.

tests/test_sources_fuzz.py throws random bytes at the readers; these pin what they return on valid input. The rows and
cells of the files themselves are tests/test_tables.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ladc.data.sources import Split, parse_label, raw_features, read_glue_tsv, read_table_file, resolve_split, source_of
from ladc.data.tasks import get_task
from ladc.errors import LadcError
from ladc.runs.config import DataConfig


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _sst2_dev_error(path: Path) -> str:
    """The one-line error `read_table_file` gives for `path` read as SST-2's dev file."""
    with pytest.raises(LadcError) as caught:
        read_table_file(path, DataConfig(task="sst2"), get_task("sst2"), resolve_split(get_task("sst2"), "dev"))
    return str(caught.value)


# ----------------------------------------------------------------------------- splits and sources


def test_resolve_split_accepts_aliases_hub_names_and_tsv_stems():
    mnli = get_task("mnli")
    assert resolve_split(mnli, "dev") == resolve_split(mnli, "validation") == resolve_split(mnli, "dev_matched")
    mismatched = resolve_split(mnli, "dev_mismatched")
    assert (mismatched.kind, mismatched.name, mismatched.tsv_stem, mismatched.is_primary) == (
        "dev", "validation_mismatched", "dev_mismatched", False,
    )  # fmt: skip
    test = resolve_split(mnli, "test")
    assert (test.kind, test.name, test.tsv_stem, test.is_primary) == ("test", "test_matched", "test_matched", True)
    assert resolve_split(mnli, "train") == Split("train", "train", "train", True)


def test_unknown_split_suggests_a_name():
    with pytest.raises(LadcError) as caught:
        resolve_split(get_task("mnli"), "validation_matchd")
    assert str(caught.value) == (
        "unknown split 'validation_matchd' for mnli (did you mean 'validation_matched'?); expected one of: train, dev, "
        "validation_matched, validation_mismatched, test, test_matched, test_mismatched"
    )


def test_source_of_picks_file_then_tsv_dir_then_hub(tmp_path):
    sst2 = get_task("sst2")
    dev = resolve_split(sst2, "dev")
    (tmp_path / "SST-2").mkdir()
    tsv = _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\nok\t1\n")
    generic = _write(tmp_path / "mine.jsonl", '{"sentence": "ok", "label": 1}\n')
    assert source_of(DataConfig(task="sst2"), sst2, dev) == ("hub", None)
    assert source_of(DataConfig(task="sst2", data_dir=str(tmp_path)), sst2, dev) == ("tsv", tsv)
    both = DataConfig(task="sst2", data_dir=str(tmp_path), dev_file=str(generic))
    assert source_of(both, sst2, dev) == ("file", generic)
    # a generic --dev-file stands for the first dev split only; MNLI's mismatched split still comes from the dir
    mnli = get_task("mnli")
    (tmp_path / "MNLI").mkdir()
    mismatched = _write(tmp_path / "MNLI" / "dev_mismatched.tsv", "x\n")
    cfg = DataConfig(task="mnli", data_dir=str(tmp_path), dev_file=str(generic))
    assert source_of(cfg, mnli, resolve_split(mnli, "dev_mismatched")) == ("tsv", mismatched)


def test_source_of_names_the_missing_tsv_and_the_layout(tmp_path):
    with pytest.raises(LadcError, match=r"has no SST-2/dev\.tsv \(expected GLUE TSV layout: <dir>/SST-2/dev\.tsv\)"):
        source_of(
            DataConfig(task="sst2", data_dir=str(tmp_path)), get_task("sst2"), resolve_split(get_task("sst2"), "dev")
        )
    with pytest.raises(LadcError, match=r"expected a \.csv, \.tsv, \.jsonl or \.json file"):
        txt = _write(tmp_path / "dev.txt", "x")
        source_of(DataConfig(task="sst2", dev_file=str(txt)), get_task("sst2"), resolve_split(get_task("sst2"), "dev"))


# ----------------------------------------------------------------------------- labels


def test_parse_label_maps_names_by_hub_order_and_accepts_ids():
    mnli = get_task("mnli")
    assert [parse_label(v, mnli, "x") for v in ("entailment", "neutral", "contradiction", "2", "1.0", " 0 ")] == [
        0, 1, 2, 2, 1, 0,
    ]  # fmt: skip
    with pytest.raises(LadcError, match=r"x: unknown label '3' for mnli; expected one of entailment, neutral"):
        parse_label("3", mnli, "x")


def test_parse_label_scores_for_regression_and_rejects_overflow():
    stsb = get_task("stsb")
    assert parse_label("3.25", stsb, "x") == 3.25
    for bad in ("nan", "inf", "1e39", "high"):
        with pytest.raises(LadcError, match="is not a number"):
            parse_label(bad, stsb, "x")


def test_raw_features_match_the_hub_schema():
    assert {k: v.dtype for k, v in raw_features(get_task("mrpc")).items()} == {
        "sentence1": "string", "sentence2": "string", "label": "int64", "idx": "int64",
    }  # fmt: skip
    assert raw_features(get_task("stsb"))["label"].dtype == "float32"


# ----------------------------------------------------------------------------- GLUE TSV


def test_sst2_tsv_keeps_stray_quotes_and_skips_blank_lines(tmp_path):
    path = _write(tmp_path / "dev.tsv", "sentence\tlabel\nit 's \"great\t1\n\n   \nbad .\t0\n")
    columns = read_glue_tsv(path, get_task("sst2"), resolve_split(get_task("sst2"), "dev"))
    assert columns == {"sentence": ["it 's \"great", "bad ."], "label": [1, 0], "idx": [0, 1]}


def test_cola_tsv_without_header_reads_columns_by_index(tmp_path):
    path = _write(tmp_path / "dev.tsv", "gj04\t1\t\tThe dog barked .\ngj04\t0\t*\tDog the barked .\n")
    columns = read_glue_tsv(path, get_task("cola"), resolve_split(get_task("cola"), "dev"))
    assert columns == {"sentence": ["The dog barked .", "Dog the barked ."], "label": [1, 0], "idx": [0, 1]}


def test_mnli_tsv_maps_label_names_by_name(tmp_path):
    header = "index\tsentence1\tsentence2\tgold_label\n"
    rows = "0\tA man sleeps .\tSomeone sleeps .\tentailment\n1\tA cat .\tA dog .\tcontradiction\n"
    path = _write(tmp_path / "dev_matched.tsv", header + rows)
    columns = read_glue_tsv(path, get_task("mnli"), resolve_split(get_task("mnli"), "dev"))
    assert columns["premise"] == ["A man sleeps .", "A cat ."] and columns["hypothesis"] == [
        "Someone sleeps .",
        "A dog .",
    ]
    assert columns["label"] == [0, 2]  # hub order: entailment, neutral, contradiction


def test_mrpc_tsv_uses_its_own_column_names_and_a_bom(tmp_path):
    text = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said .\tHe says .\n"
    path = _write(tmp_path / "dev.tsv", text)
    columns = read_glue_tsv(path, get_task("mrpc"), resolve_split(get_task("mrpc"), "dev"))
    assert columns == {"sentence1": ["He said ."], "sentence2": ["He says ."], "label": [1], "idx": [0]}


def test_test_tsv_without_labels_gets_minus_one(tmp_path):
    path = _write(tmp_path / "test.tsv", "index\tsentence\n0\tfine .\n1\tawful .\n")
    columns = read_glue_tsv(path, get_task("sst2"), resolve_split(get_task("sst2"), "test"))
    assert columns["label"] == [-1, -1] and columns["idx"] == [0, 1]


def test_tsv_errors_name_file_and_line(tmp_path):
    sst2, dev = get_task("sst2"), resolve_split(get_task("sst2"), "dev")
    wide = _write(tmp_path / "wide.tsv", "sentence\tlabel\nok\t1\nbad\t0\textra\n")
    with pytest.raises(LadcError, match=r"wide\.tsv line 3: expected 2 tab-separated columns, got 3"):
        read_glue_tsv(wide, sst2, dev)
    header_only = _write(tmp_path / "header.tsv", "sentence\tlabel\n")
    with pytest.raises(LadcError, match=r"has no data rows after the header"):
        read_glue_tsv(header_only, sst2, dev)
    renamed = _write(tmp_path / "renamed.tsv", "sentense\tlabel\nok\t1\n")
    with pytest.raises(
        LadcError, match=r"missing column 'sentence' \(did you mean 'sentense'\?\); columns: sentense, label"
    ):
        read_glue_tsv(renamed, sst2, dev)


# ----------------------------------------------------------------------------- generic CSV / JSONL


def test_csv_with_renamed_columns_and_label_names(tmp_path):
    path = _write(tmp_path / "dev.csv", 'q,p,y\n"Is it, really?",Yes it is.,entailment\nWho?,Nobody.,not_entailment\n')
    data = DataConfig(task="qnli", dev_file=str(path), text_fields=("q", "p"), label_field="y")
    columns = read_table_file(path, data, get_task("qnli"), resolve_split(get_task("qnli"), "dev"))
    assert columns == {
        "question": ["Is it, really?", "Who?"], "sentence": ["Yes it is.", "Nobody."], "label": [0, 1], "idx": [0, 1],
    }  # fmt: skip


def test_jsonl_numbers_as_text_and_blank_lines_skipped(tmp_path):
    path = _write(tmp_path / "dev.jsonl", '{"sentence": "good", "label": 1}\n\n{"sentence": 42, "label": "0"}\n'
                  '{"sentence": 0.5, "label": "positive"}\n')  # fmt: skip
    columns = read_table_file(path, DataConfig(task="sst2"), get_task("sst2"), resolve_split(get_task("sst2"), "dev"))
    assert columns == {"sentence": ["good", "42", "0.5"], "label": [1, 0, 1], "idx": [0, 1, 2]}


EMPTY_TEXT = "text field '{}' is empty; every example needs its text (fill it in or drop the row)"


@pytest.mark.parametrize(
    ("name", "text", "line", "column"),
    [
        ("dev.csv", "sentence,label\ngood,1\n,0\n", 3, "sentence"),
        ("dev.csv", 'sentence,label\ngood,1\n"  ",0\n', 3, "sentence"),  # whitespace only: nothing to tokenize
        ("dev.tsv", "sentence\tlabel\ngood\t1\n \t0\n", 3, "sentence"),
        ("dev.jsonl", '{"sentence": "good", "label": 1}\n{"sentence": null, "label": 0}\n', 2, "sentence"),
        ("dev.jsonl", '{"sentence": "good", "label": 1}\n\n{"sentence": "", "label": 0}\n', 3, "sentence"),
    ],
)
def test_an_empty_text_field_is_a_one_line_error_naming_file_and_line(tmp_path, name, text, line, column):
    path = _write(tmp_path / name, text)
    assert _sst2_dev_error(path) == f"{path} line {line}: " + EMPTY_TEXT.format(column)


def test_an_empty_text_field_in_a_glue_tsv_names_its_column(tmp_path):
    rte, cola = get_task("rte"), get_task("cola")
    (tmp_path / "RTE").mkdir()
    pair = _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n"
                  "1\tthe premise\t\tnot_entailment\n")  # fmt: skip
    with pytest.raises(LadcError) as caught:
        read_glue_tsv(pair, rte, resolve_split(rte, "dev"))
    assert str(caught.value) == f"{pair} line 3: " + EMPTY_TEXT.format("sentence2")
    (tmp_path / "CoLA").mkdir()
    headerless = _write(tmp_path / "CoLA" / "dev.tsv", "gj04\t1\t\tfine .\ngj04\t0\t*\t   \n")
    with pytest.raises(LadcError) as caught:
        read_glue_tsv(headerless, cola, resolve_split(cola, "dev"))
    assert str(caught.value) == f"{headerless} line 2: " + EMPTY_TEXT.format("column 4")


def test_a_200k_character_field_loads_whole_and_the_tokenizer_truncates_it(tmp_path, tiny_tokenizer):
    """csv refuses a field over 131,072 characters unless its limit is raised; a long document is normal input."""
    import csv

    from ladc.data.data import tokenize
    from ladc.data.sources import raw_features

    sst2 = get_task("sst2")
    document = "the movie was good . " * 10_000  # 210,000 characters
    limit = csv.field_size_limit()
    (tmp_path / "SST-2").mkdir()
    tsv = _write(tmp_path / "SST-2" / "dev.tsv", f"sentence\tlabel\nshort one\t0\n{document}\t1\n")
    csv_file = _write(tmp_path / "dev.csv", f'sentence,label\n"{document}",1\nshort one,0\n')
    columns = read_glue_tsv(tsv, sst2, resolve_split(sst2, "dev"))
    assert columns["sentence"] == ["short one", document] and columns["label"] == [0, 1]
    table = read_table_file(csv_file, DataConfig(task="sst2"), sst2, resolve_split(sst2, "dev"))
    assert table["sentence"] == [document, "short one"]
    assert csv.field_size_limit() == limit  # raised only while a file is read
    import datasets

    raw = datasets.Dataset.from_dict(columns, features=raw_features(sst2))
    tokenized = tokenize(raw, tiny_tokenizer, sst2, max_seq_len=32)
    assert [len(ids) for ids in tokenized["input_ids"]] == [4, 32]


def test_json_array_file_and_unlabelled_test_rows(tmp_path):
    path = _write(tmp_path / "test.json", '[{"sentence": "a"}, {"sentence": "b", "label": -1}]')
    columns = read_table_file(path, DataConfig(task="sst2"), get_task("sst2"), resolve_split(get_task("sst2"), "test"))
    assert columns == {"sentence": ["a", "b"], "label": [-1, -1], "idx": [0, 1]}


def test_table_errors_name_file_and_record(tmp_path):
    sst2, dev = get_task("sst2"), resolve_split(get_task("sst2"), "dev")
    no_label = _write(tmp_path / "a.jsonl", '{"sentence": "x"}\n')
    with pytest.raises(LadcError, match=r"a\.jsonl: missing label column 'label'"):
        read_table_file(no_label, DataConfig(task="sst2"), sst2, dev)
    not_object = _write(tmp_path / "b.jsonl", '{"sentence": "x", "label": 1}\n[1, 2]\n')
    with pytest.raises(LadcError, match=r"b\.jsonl line 2: expected a JSON object, got list"):
        read_table_file(not_object, DataConfig(task="sst2"), sst2, dev)
    nested = _write(tmp_path / "c.jsonl", '{"sentence": ["x"], "label": 1}\n')
    with pytest.raises(LadcError, match=r"c\.jsonl line 1: text field 'sentence' is list; expected a string"):
        read_table_file(nested, DataConfig(task="sst2"), sst2, dev)
    pair = DataConfig(task="rte", text_fields=("only_one",))
    with pytest.raises(LadcError, match=r"rte needs 2 text column\(s\)"):
        read_table_file(no_label, pair, get_task("rte"), resolve_split(get_task("rte"), "dev"))


def test_table_files_name_what_is_wrong_exactly(tmp_path):
    # a .json array, whitespace before it allowed; records are "item N" from 1
    array = _write(tmp_path / "d.json", '\n  [{"sentence": "a", "label": 0}, 5]')
    assert _sst2_dev_error(array) == f"{array} item 2: expected a JSON object, got int"
    broken = _write(tmp_path / "e.json", '[{"sentence": "a",\n "label": }]')
    assert _sst2_dev_error(broken) == f"{broken} line 2: invalid JSON (Expecting value)"
    # no rows: a header-only CSV says so, an empty JSON Lines file has no header to speak of
    header_only, empty = _write(tmp_path / "f.csv", "sentence,label\n"), _write(tmp_path / "g.jsonl", "\n")
    for path, after in ((header_only, " after the header"), (empty, "")):
        assert _sst2_dev_error(path) == f"{path} has no data rows{after}; expected at least one example"
    # a missing text column: a suggestion, and column names listed raw up to 40 printable characters, else quoted
    long_40, long_41 = "c" * 40, "d" * 41
    typo = _write(tmp_path / "h.csv", f"sentense,label,{long_40},{long_41},tab\x01\nx,1,a,b,c\n")
    assert _sst2_dev_error(typo) == (
        f"{typo}: missing text column 'sentence' (did you mean 'sentense'?); columns: sentense, label, {long_40}, "
        f"'{long_41[:40]}'..., 'tab\\x01'"
    )
    pair = DataConfig(task="rte", text_fields=("only_one",))
    with pytest.raises(LadcError) as caught:
        read_table_file(typo, pair, get_task("rte"), resolve_split(get_task("rte"), "dev"))
    assert str(caught.value) == "data.text_fields ['only_one']: rte needs 2 text column(s) (sentence1, sentence2)"
    # a JSON record without the text field the others have
    missing = _write(tmp_path / "i.jsonl", '{"sentence": "a", "label": 1}\n{"label": 0}\n')
    assert _sst2_dev_error(missing) == f"{missing} line 2: no text field 'sentence'"


def test_tsv_train_files_keep_quotes_and_unlabelled_test_rows_are_minus_one_of_the_label_type(tmp_path):
    path = _write(tmp_path / "train.tsv", 'sentence\tlabel\n"quoted" start\t1\nan "inner" quote\t0\n')
    columns = read_table_file(path, DataConfig(task="sst2"), get_task("sst2"), resolve_split(get_task("sst2"), "train"))
    assert columns["sentence"] == ['"quoted" start', 'an "inner" quote'] and columns["label"] == [1, 0]
    for task, unlabelled in (("sst2", -1), ("stsb", -1.0)):
        fields = ("s",) if task == "sst2" else ("s", "t")
        path = _write(tmp_path / f"{task}.csv", ",".join(fields) + "\n" + ",".join("x" * len(fields)) + "\n")
        data = DataConfig(task=task, text_fields=fields)
        labels = read_table_file(path, data, get_task(task), resolve_split(get_task(task), "test"))["label"]
        assert labels == [unlabelled] and type(labels[0]) is type(unlabelled)


def test_load_hub_asks_for_the_task_config_and_split_and_casts_to_the_glue_schema(monkeypatch):
    """The hub is not reachable offline: `datasets.load_dataset` is replaced by a local in-memory Dataset (built by
    datasets itself), to check what ladc asks for and what it makes of the answer and of the hub's failures."""
    import datasets

    from ladc.data.sources import load_hub

    asked = []

    def local(path, name=None, split=None):
        asked.append((path, name, split))
        return datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [1, 0], "idx": [7, 8], "extra": [0, 0]})

    monkeypatch.setattr(datasets, "load_dataset", local)
    task = get_task("sst2")
    loaded = load_hub(task, resolve_split(task, "dev"))
    assert asked == [("nyu-mll/glue", "sst2", "validation")]
    assert loaded.column_names == ["sentence", "label", "idx"] and loaded.features == raw_features(task)
    assert loaded["label"] == [1, 0] and loaded["idx"] == [7, 8]

    for exc, reason in ((ConnectionError("no network\nmore detail"), "no network"), (OSError("  "), "OSError"),
                        (ValueError("x" * 300), "x" * 200)):  # fmt: skip

        def failing(*args, exc=exc, **kwargs):
            raise exc

        monkeypatch.setattr(datasets, "load_dataset", failing)
        with pytest.raises(LadcError) as caught:
            load_hub(task, resolve_split(task, "dev"))
        assert str(caught.value) == (
            f"cannot load GLUE task sst2 from the hub ({reason}); pass --data-dir DIR with the GLUE TSV layout"
        )


def test_an_empty_glue_file_has_an_exact_message(tmp_path):
    rte = get_task("rte")
    (tmp_path / "RTE").mkdir()
    empty = _write(tmp_path / "RTE" / "dev.tsv", "")
    with pytest.raises(LadcError) as caught:
        read_glue_tsv(empty, rte, resolve_split(rte, "dev"))
    assert str(caught.value) == f"{empty} is empty; expected a header row with columns sentence1, sentence2"


def test_label_cells_at_their_edges(tmp_path):
    sst2, stsb = get_task("sst2"), get_task("stsb")
    with pytest.raises(LadcError) as caught:
        parse_label(None, sst2, "f.jsonl line 2")  # JSON null: an empty label, not the text "None"
    assert str(caught.value) == (
        "f.jsonl line 2: unknown label '' for sst2; expected one of negative, positive (or an id 0..1)"
    )
    with pytest.raises(LadcError, match=r"\(or an id 0\.\.2\)$"):
        parse_label("7", get_task("mnli"), "x")
    assert parse_label("3.4028234663852886e38", stsb, "x") == 3.4028234663852886e38  # float32's largest is a score
    # unlabelled test rows: empty, null, -1 or -1.0 (the hub's marker), for classification and regression alike
    path = _write(tmp_path / "test.jsonl", '{"s": "a", "y": "-1.0"}\n{"s": "b", "y": null}\n{"s": "c", "y": " -1 "}\n')
    for task in (sst2, stsb):
        fields = ("s",) if task is sst2 else ("s", "s")
        data = DataConfig(task=task.name, text_fields=fields, label_field="y")
        labels = read_table_file(path, data, task, resolve_split(task, "test"))["label"]
        assert labels == [-1, -1, -1] and all(type(v) is (float if task is stsb else int) for v in labels)
