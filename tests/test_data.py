"""Tests for ladc/data/data.py's load_raw: every GLUE TSV quirk, CSV/JSONL files, limits (tokenization, collator and
dataloader: test_data_collator.py; the tokenized cache: test_data_cache.py)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from ladc.data.data import (
    dev_loader,
    load_raw,
    resolve_split,
)
from ladc.data.tasks import get_task
from ladc.errors import LadcError
from ladc.runs.config import DataConfig
from tests.helpers import _sst2_dir, write_tsv

MNLI_TRAIN_COLUMNS = (
    "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse "
    "sentence1 sentence2 label1 gold_label"
).split()


def mnli_row(i, premise, hypothesis, *labels) -> str:
    return "|".join([str(i), "31193", f"{i}n", "government", "( x )", "( y )", "(ROOT x)", "(ROOT y)", premise,
                     hypothesis, *labels])  # fmt: skip


def stsb_row(i, s1, s2, *score) -> str:
    return "|".join([str(i), "main-captions", "MSRvid", "2012test", f"000{i}", "none", "none", s1, s2, *score])


MNLI_TRAIN_HEADER = "|".join(MNLI_TRAIN_COLUMNS)
MNLI_DEV_HEADER = "|".join(MNLI_TRAIN_COLUMNS[:-2] + ["label1", "label2", "label3", "label4", "label5", "gold_label"])
MNLI_TEST_HEADER = "|".join(MNLI_TRAIN_COLUMNS[:-2])
STSB_HEADER = "index|genre|filename|year|old_index|source1|source2|sentence1|sentence2|score"
QQP_HEADER = "id|qid1|qid2|question1|question2|is_duplicate"
MRPC_HEADER = "\ufeffQuality|#1 ID|#2 ID|#1 String|#2 String"  # GLUE's MRPC train/dev start with a byte-order mark

# Real GLUE layouts, `|` standing for a tab: file stem -> rows, the first one the header unless the task has none
# (CoLA train/dev). Texts keep GLUE's oddities: stray double quotes, trailing spaces, tokenized punctuation.
GLUE_FILES = {
    "cola": {
        "train": ["gj04|1||Our friends won't buy this analysis.", 'gj04|0|*|The more "books" I read.'],
        "dev": ["bc01|1||The sailors rode the breeze clear of the rocks."],
        "test": ["index|sentence", "0|Bill whistled past the house."],
    },
    "sst2": {
        "train": ["sentence|label", "hide new secretions |0", "the greatest musicians |1"],
        "dev": ["sentence|label", "it 's a charming journey . |1"],
        "test": ["index|sentence", "0|uneasy mishmash of styles . "],
    },
    "mrpc": {
        "train": [MRPC_HEADER, '1|702876|702977|He called " the witness " .|Referring to him as " the witness " .',
                  "0|2108705|2108831|Yucaipa owned Dominick 's .|Yucaipa bought Dominick 's in 1995 ."],
        "dev": [MRPC_HEADER, "1|1|2|He said .|He says ."],
        "test": ["index|#1 ID|#2 ID|#1 String|#2 String", "0|1089874|1089925|PCCW 's .|PCCW ."],
    },
    "stsb": {
        "train": [STSB_HEADER, stsb_row(0, "A plane is taking off.", "An air plane is taking off.", "5.000"),
                  stsb_row(1, "A man plays a flute.", "A man plays a large flute.", "3.800")],
        "dev": [STSB_HEADER, stsb_row(0, "A man is singing.", "A dog runs.", "0.250")],
        "test": [STSB_HEADER.rsplit("|", 1)[0], stsb_row(0, "A girl is styling her hair.", "A girl brushes her hair.")],
    },
    "qqp": {
        "train": [QQP_HEADER, "133273|213221|213222|How is the life of a math student?|Which level is enough?|0",
                  "402555|536040|536041|How do I control my emotions?|How do you control them?|1"],
        "dev": [QQP_HEADER, "1|2|3|Why?|Why not?|1"],
        "test": ["id|question1|question2", "0|Is it safe to invest?|Is it genuine?"],
    },
    "mnli": {
        "train": [MNLI_TRAIN_HEADER, mnli_row(0, "Cream skimming.", "Product and geography.", "neutral", "neutral"),
                  mnli_row(1, "you know during the season", "You lose the things.", "entailment", "entailment"),
                  mnli_row(2, "One of our number will", "A member will.", "contradiction", "contradiction")],
        "dev_matched": [MNLI_DEV_HEADER, mnli_row(0, "The rights are nice.", "All hate them.", *["contradiction"] * 6)],
        "dev_mismatched": [MNLI_DEV_HEADER, mnli_row(0, "Your contribution helped.", "It helped.", *["entailment"] * 6),
                           mnli_row(1, "The answer is maybe.", "It is known.", *["neutral"] * 6)],
        "test_matched": [MNLI_TEST_HEADER, mnli_row(0, "Hierbas, ans seco.", "Hierbas is a name.")],
        "test_mismatched": [MNLI_TEST_HEADER, mnli_row(0, "What have you decided?", "You decided.")],
    },
    "qnli": {
        "train": ["index|question|sentence|label", "0|When did it start?|It started in 1990.|entailment",
                  "1|Who won?|Nobody knows the weather.|not_entailment"],
        "dev": ["index|question|sentence|label", "0|What is it?|It is a cat.|entailment"],
        "test": ["index|question|sentence", "0|Where is it?|It is here."],
    },
    "rte": {
        "train": ["index|sentence1|sentence2|label", "0|No weapons found.|Weapons found.|not_entailment",
                  "1|A place of sorrow.|A place.|entailment"],
        "dev": ["index|sentence1|sentence2|label", "0|Dana Reeve died.|Reeve had an accident.|not_entailment"],
        "test": ["index|sentence1|sentence2", "0|Mangla was a city.|Mangla is a city."],
    },
    "wnli": {
        "train": ["index|sentence1|sentence2|label", "0|I stuck a pin.|The pin stuck.|1",
                  "1|John saw Bill.|Bill saw John.|0"],
        "dev": ["index|sentence1|sentence2|label", "0|The drain is clogged.|The hair is clogged.|0"],
        "test": ["index|sentence1|sentence2", "0|Maude and Dora.|Dora had seen."],
    },
}  # fmt: skip

# split -> [(text fields..., label)] in hub label order, typed by hand from GLUE_FILES
EXPECTED = {
    "cola": {
        "train": [("Our friends won't buy this analysis.", 1), ('The more "books" I read.', 0)],
        "dev": [("The sailors rode the breeze clear of the rocks.", 1)],
        "test": [("Bill whistled past the house.", -1)],
    },
    "sst2": {
        "train": [("hide new secretions ", 0), ("the greatest musicians ", 1)],
        "dev": [("it 's a charming journey . ", 1)],
        "test": [("uneasy mishmash of styles . ", -1)],
    },
    "mrpc": {
        "train": [('He called " the witness " .', 'Referring to him as " the witness " .', 1),
                  ("Yucaipa owned Dominick 's .", "Yucaipa bought Dominick 's in 1995 .", 0)],
        "dev": [("He said .", "He says .", 1)],
        "test": [("PCCW 's .", "PCCW .", -1)],
    },
    "stsb": {
        "train": [("A plane is taking off.", "An air plane is taking off.", 5.0),
                  ("A man plays a flute.", "A man plays a large flute.", 3.8)],
        "dev": [("A man is singing.", "A dog runs.", 0.25)],
        "test": [("A girl is styling her hair.", "A girl brushes her hair.", -1.0)],
    },
    "qqp": {
        "train": [("How is the life of a math student?", "Which level is enough?", 0),
                  ("How do I control my emotions?", "How do you control them?", 1)],
        "dev": [("Why?", "Why not?", 1)],
        "test": [("Is it safe to invest?", "Is it genuine?", -1)],
    },
    "mnli": {
        # hub order: entailment 0, neutral 1, contradiction 2 (the TSV processors' index order differs)
        "train": [("Cream skimming.", "Product and geography.", 1),
                  ("you know during the season", "You lose the things.", 0),
                  ("One of our number will", "A member will.", 2)],
        "validation_matched": [("The rights are nice.", "All hate them.", 2)],
        "validation_mismatched": [("Your contribution helped.", "It helped.", 0),
                                  ("The answer is maybe.", "It is known.", 1)],
        "test_matched": [("Hierbas, ans seco.", "Hierbas is a name.", -1)],
        "test_mismatched": [("What have you decided?", "You decided.", -1)],
    },
    "qnli": {
        "train": [("When did it start?", "It started in 1990.", 0), ("Who won?", "Nobody knows the weather.", 1)],
        "dev": [("What is it?", "It is a cat.", 0)],
        "test": [("Where is it?", "It is here.", -1)],
    },
    "rte": {
        "train": [("No weapons found.", "Weapons found.", 1), ("A place of sorrow.", "A place.", 0)],
        "dev": [("Dana Reeve died.", "Reeve had an accident.", 1)],
        "test": [("Mangla was a city.", "Mangla is a city.", -1)],
    },
    "wnli": {
        "train": [("I stuck a pin.", "The pin stuck.", 1), ("John saw Bill.", "Bill saw John.", 0)],
        "dev": [("The drain is clogged.", "The hair is clogged.", 0)],
        "test": [("Maude and Dora.", "Dora had seen.", -1)],
    },
}  # fmt: skip


def write_glue_task(root: Path, task_name: str) -> Path:
    task = get_task(task_name)
    for stem, rows in GLUE_FILES[task_name].items():
        write_tsv(root / task.glue_dir / f"{stem}.tsv", rows)
    return root


def rows_of(dataset, task) -> list[tuple]:
    return [tuple(row[f] for f in task.text_fields) + (row["label"],) for row in dataset]


@pytest.mark.parametrize("task_name", sorted(GLUE_FILES))
def test_glue_tsv_layout_parses_every_split_exactly(tmp_path, task_name):
    task = get_task(task_name)
    data = DataConfig(task=task_name, data_dir=str(write_glue_task(tmp_path, task_name)))
    for split, expected in EXPECTED[task_name].items():
        raw = load_raw(data, split)
        parsed = rows_of(raw, task)
        assert [row[:-1] for row in parsed] == [row[:-1] for row in expected]
        assert [row[-1] for row in parsed] == pytest.approx([row[-1] for row in expected])  # float32 scores
        assert raw["idx"] == list(range(len(expected)))
        assert raw.features["label"].dtype == ("float32" if task.is_regression else "int64")


def test_mnli_dev_aliases_and_label_names_in_hub_order(tmp_path):
    data = DataConfig(task="mnli", data_dir=str(write_glue_task(tmp_path, "mnli")))
    assert load_raw(data, "dev")["premise"] == ["The rights are nice."]  # dev = matched
    mismatched = load_raw(data, "dev_mismatched")
    assert mismatched["premise"] == load_raw(data, "validation_mismatched")["premise"]
    names = get_task("mnli").label_names
    assert [names[i] for i in mismatched["label"]] == ["entailment", "neutral"]
    assert resolve_split(get_task("mnli"), "test").name == "test_matched"


def test_a_one_row_dev_split_is_enough_to_evaluate(tmp_path, tiny_tokenizer):
    data = DataConfig(task="mnli", data_dir=str(write_glue_task(tmp_path / "glue", "mnli")), cache_dir=str(tmp_path))
    (batch,) = list(dev_loader(data, tiny_tokenizer, get_task("mnli"), 8))  # dev = matched: one row
    assert batch["labels"].tolist() == [2] and batch["input_ids"].shape[0] == 1


def test_wrong_column_count_names_file_and_line(tmp_path):
    rows = GLUE_FILES["rte"]["dev"] + ["1|only two|columns", "2|a|b|entailment"]
    path = write_tsv(tmp_path / "RTE" / "dev.tsv", rows)
    with pytest.raises(LadcError, match=rf"^{path} line 3: expected 4 tab-separated columns, got 3$"):
        load_raw(DataConfig(task="rte", data_dir=str(tmp_path)), "dev")


def test_headerless_cola_wrong_column_count(tmp_path):
    path = write_tsv(tmp_path / "CoLA" / "train.tsv", ["gj04|1||Fine.", "gj04|1|Broken."])
    with pytest.raises(LadcError, match=rf"{path} line 2: expected 4 tab-separated columns, got 3"):
        load_raw(DataConfig(task="cola", data_dir=str(tmp_path)), "train")


@pytest.mark.parametrize(("task_name", "label", "expected"), [
    ("rte", "maybe", "unknown label 'maybe' for rte; expected one of entailment, not_entailment"),
    ("rte", "2", "unknown label '2' for rte"),
    ("stsb", "high", "label 'high' for stsb is not a number"),
    ("stsb", "nan", "label 'nan' for stsb is not a number"),
])  # fmt: skip
def test_bad_label_names_file_line_and_choices(tmp_path, task_name, label, expected):
    task = get_task(task_name)
    rows = list(GLUE_FILES[task_name]["dev"])
    rows[1] = rows[1].rsplit("|", 1)[0] + "|" + label
    path = write_tsv(tmp_path / task.glue_dir / "dev.tsv", rows)
    with pytest.raises(LadcError, match=f"{path} line 2: {expected}"):
        load_raw(DataConfig(task=task_name, data_dir=str(tmp_path)), "dev")


def test_missing_dir_file_header_column_and_split(tmp_path):
    with pytest.raises(LadcError, match=r"data dir .*nowhere does not exist"):
        load_raw(DataConfig(task="qnli", data_dir=str(tmp_path / "nowhere")), "train")
    expected = f"data dir {tmp_path} has no QNLI/train.tsv (expected GLUE TSV layout: <dir>/QNLI/train.tsv)"
    with pytest.raises(LadcError) as error:
        load_raw(DataConfig(task="qnli", data_dir=str(tmp_path)), "train")
    assert str(error.value) == expected
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["text|label", "good|1"])
    with pytest.raises(LadcError, match=r"train.tsv: missing column 'sentence'.*columns: text, label"):
        load_raw(DataConfig(task="sst2", data_dir=str(tmp_path)), "train")
    with pytest.raises(LadcError, match=r"unknown split 'validation_mismatched' for sst2"):
        load_raw(DataConfig(task="sst2", data_dir=str(tmp_path)), "validation_mismatched")


def test_hub_unreachable_is_one_line_error(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying the network
    with pytest.raises(LadcError, match=r"cannot load GLUE task rte from the hub \(.*\); pass --data-dir DIR") as error:
        load_raw(DataConfig(task="rte"), "dev")
    assert "\n" not in str(error.value)


def test_train_limit_is_a_seeded_subset_and_dev_limit_the_head(tmp_path):
    data = DataConfig(task="sst2", data_dir=str(_sst2_dir(tmp_path, 50)), train_limit=10, dev_limit=7)
    subset = load_raw(data, "train")
    assert len(subset) == 10 and subset["idx"] == sorted(subset["idx"])
    assert subset["sentence"] == [f"row {i}" for i in subset["idx"]]
    assert subset["idx"] != list(range(10))  # random, not the head
    assert load_raw(data, "train")["idx"] == subset["idx"]  # same subset every time
    assert load_raw(data, "dev")["idx"] == list(range(7))
    with pytest.raises(LadcError, match=r"data.train_limit must be a positive number of examples, got 0"):
        load_raw(DataConfig(task="sst2", data_dir=str(tmp_path), train_limit=0), "train")


def test_csv_with_custom_columns_and_label_names_or_ids(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('premise_text,hyp,gold\n"A man, tall",NA,entailment\nx,-,1\n007,"He said ""hi""",0\n')
    data = DataConfig(task="rte", train_file=str(path), text_fields=("premise_text", "hyp"), label_field="gold")
    raw = load_raw(data, "train")
    assert raw.column_names == ["sentence1", "sentence2", "label", "idx"]
    assert rows_of(raw, get_task("rte")) == [("A man, tall", "NA", 0), ("x", "-", 1), ("007", 'He said "hi"', 0)]


def test_jsonl_and_tsv_files_and_unlabelled_test(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "y": y}) + "\n" for t, y in [("good", 1), ("bad", "negative")]))
    test = tmp_path / "test.tsv"
    test.write_text('text\nit is "fine\n')  # stray quote, as in GLUE
    data = DataConfig(task="sst2", train_file=str(train), test_file=str(test), text_fields=("text",), label_field="y")
    assert rows_of(load_raw(data, "train"), get_task("sst2")) == [("good", 1), ("bad", 0)]
    assert rows_of(load_raw(data, "test"), get_task("sst2")) == [('it is "fine', -1)]
    test.write_text("text\ty\na\t-1\nb\t\nc\tpositive\n")  # labelled test files may mark unknowns -1 or ''
    assert load_raw(data, "test")["label"] == [-1, -1, 1]


def test_generic_file_replaces_only_its_own_split(tmp_path):
    root = write_glue_task(tmp_path / "glue", "rte")
    train = tmp_path / "train.csv"
    train.write_text("sentence1,sentence2,label\nfrom csv,yes,entailment\n")
    data = DataConfig(task="rte", data_dir=str(root), train_file=str(train))
    assert load_raw(data, "train")["sentence1"] == ["from csv"]
    assert load_raw(data, "validation")["sentence1"] == ["Dana Reeve died."]  # still the GLUE TSV dir


def test_generic_file_errors_name_file_column_and_choices(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sentence,labels\nhello,1\n")
    with pytest.raises(
        LadcError,
        match=r"train.csv: missing label column 'label' \(did you mean 'labels'\?\); "
        r"columns: sentence, labels",
    ):
        load_raw(DataConfig(task="sst2", train_file=str(path)), "train")
    with pytest.raises(LadcError, match=r"train.csv: missing text column 'premise'.*columns: sentence, labels"):
        load_raw(DataConfig(task="sst2", train_file=str(path), text_fields=("premise",)), "train")
    with pytest.raises(LadcError, match=r"rte needs 2 text column"):
        load_raw(DataConfig(task="rte", train_file=str(path), text_fields=("sentence",)), "train")
    path.write_text("sentence,label\nhello,maybe\n")
    with pytest.raises(LadcError, match=r"train.csv line 2: unknown label 'maybe' for sst2"):
        load_raw(DataConfig(task="sst2", train_file=str(path)), "train")
    with pytest.raises(LadcError, match=r"train file .*missing.csv does not exist"):
        load_raw(DataConfig(task="sst2", train_file=str(tmp_path / "missing.csv")), "train")


def test_limits_of_one_row_and_of_all_but_one_row(tmp_path):
    root = _sst2_dir(tmp_path, 10)
    one = DataConfig(task="sst2", data_dir=str(root), train_limit=1, dev_limit=1)
    assert len(load_raw(one, "train")) == 1 and load_raw(one, "dev")["idx"] == [0]
    # a subset drawn without replacement: nine different rows, in file order
    nine = load_raw(DataConfig(task="sst2", data_dir=str(root), train_limit=9), "train")["idx"]
    assert len(set(nine)) == 9 and nine == sorted(nine)
    with pytest.raises(LadcError) as caught:
        load_raw(DataConfig(task="sst2", data_dir=str(root), dev_limit=-3), "dev")
    assert str(caught.value) == "data.dev_limit must be a positive number of examples, got -3"
