"""Tests for ladc/data/data.py: every GLUE TSV quirk, CSV/JSONL files, tokenization, cache, collator and dataloader."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import BertTokenizerFast

from ladc.data.data import (
    SeededSampler,
    dev_loader,
    epoch_seed,
    load_raw,
    load_tokenized,
    make_collator,
    make_dataloader,
    resolve_split,
    tokenize,
    tokenized_cache_dir,
)
from ladc.data.sources import raw_features
from ladc.data.tasks import get_task
from ladc.errors import LadcError
from ladc.runs.config import DataConfig

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


def write_tsv(path: Path, rows: list[str]) -> Path:
    """Write rows given with `|` for each tab."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(row.replace("|", "\t") + "\n" for row in rows), encoding="utf-8")
    return path


def write_glue_task(root: Path, task_name: str) -> Path:
    task = get_task(task_name)
    for stem, rows in GLUE_FILES[task_name].items():
        write_tsv(root / task.glue_dir / f"{stem}.tsv", rows)
    return root


def _sst2_dir(root: Path, num_rows: int) -> Path:
    rows = ["sentence|label"] + [f"row {i}|{i % 2}" for i in range(num_rows)]
    for stem in ("train", "dev"):
        write_tsv(root / "SST-2" / f"{stem}.tsv", rows)
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


def test_pair_truncation_keeps_both_segments(tiny_tokenizer):
    task = get_task("rte")
    long_text = " ".join(["the good movie"] * 20)
    raw = datasets.Dataset.from_dict(
        {"sentence1": [long_text, "a dog"], "sentence2": [long_text, "a cat"], "label": [0, 1], "idx": [0, 1]}
    )
    tokenized = tokenize(raw, tiny_tokenizer, task, max_seq_len=16)
    long_row, short_row = tokenized[0], tokenized[1]
    assert len(long_row["input_ids"]) == 16
    assert long_row["input_ids"].count(tiny_tokenizer.sep_token_id) == 2
    assert long_row["token_type_ids"].count(1) >= 6 and long_row["token_type_ids"].count(0) >= 6  # longest_first
    assert long_row["input_ids"] == tiny_tokenizer(long_text, long_text, truncation=True, max_length=16)["input_ids"]
    assert tiny_tokenizer.decode(short_row["input_ids"]) == "[CLS] a dog [SEP] a cat [SEP]"  # unpadded
    assert tokenized["labels"] == [0, 1] and tokenized["idx"] == [0, 1]


def test_collator_pads_to_longest_in_batch(tiny_tokenizer):
    rows = [
        {"input_ids": [2, 13, 41, 3], "attention_mask": [1] * 4, "token_type_ids": [0] * 4, "labels": 1, "idx": 7},
        {"input_ids": [2, 13, 3], "attention_mask": [1] * 3, "token_type_ids": [0] * 3, "labels": 0, "idx": 3},
    ]
    batch = make_collator(tiny_tokenizer, get_task("sst2"))(rows)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}  # idx dropped by default
    assert torch.equal(batch["input_ids"], torch.tensor([[2, 13, 41, 3], [2, 13, 3, 0]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]
    regression = make_collator(tiny_tokenizer, get_task("stsb"), keep_idx=True, pad_to_multiple_of=8)
    batch = regression([{**rows[0], "labels": 3.8}, {**rows[1], "labels": 0.5}])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["labels"].dtype == torch.float32
    assert torch.allclose(batch["labels"], torch.tensor([3.8, 0.5]))
    assert batch["idx"].tolist() == [7, 3]


def test_collator_pads_left_reads_raw_labels_and_keeps_only_what_rows_have(tiny_tokenizer):
    from ladc.data.data import PaddingCollator

    rows = [{"input_ids": [2, 13, 3], "attention_mask": [1] * 3, "label": "1", "idx": 7},  # raw `label`, as text
            {"input_ids": [2, 3], "attention_mask": [1] * 2, "label": 0, "idx": 3}]  # fmt: skip
    left = PaddingCollator(pad_token_id=9, padding_side="left", keep_idx=True)
    batch = left(rows)
    assert torch.equal(batch["input_ids"], torch.tensor([[2, 13, 3], [9, 2, 3]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1], [0, 1, 1]]))
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.long
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert "token_type_ids" not in batch and batch["idx"].tolist() == [7, 3]
    unlabelled = PaddingCollator(pad_token_id=0)([{"input_ids": [2, 3], "attention_mask": [1, 1]}])
    assert set(unlabelled) == {"input_ids", "attention_mask"}  # a test split: no labels to batch
    # a float id from a JSON file is still a class id; keep_idx with rows that carry one
    floats = PaddingCollator(pad_token_id=0, keep_idx=True)([{"input_ids": [2], "labels": 1.0, "idx": 4.0}])
    assert floats["labels"].dtype == torch.long and floats["idx"].dtype == torch.long and floats["idx"].tolist() == [4]


def test_a_tokenizer_without_a_pad_token_is_refused_by_name(tiny_tokenizer):
    tiny_tokenizer.padding_side, tiny_tokenizer._pad_token_type_id = "left", 1  # read from the tokenizer
    collator = make_collator(tiny_tokenizer, get_task("sst2"))
    assert (collator.padding_side, collator.pad_token_type_id, collator.pad_token_id) == (
        "left", 1, tiny_tokenizer.pad_token_id,
    )  # fmt: skip
    tiny_tokenizer.pad_token = None
    tiny_tokenizer.name_or_path = "some/tokenizer"
    with pytest.raises(LadcError) as caught:
        make_collator(tiny_tokenizer, get_task("sst2"))
    assert str(caught.value) == f"tokenizer {tiny_tokenizer.name_or_path!r} has no pad token; set one first"


def _toy_tokenized(num_rows: int, seed: int = 0) -> datasets.Dataset:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(num_rows)]
    return datasets.Dataset.from_dict(
        {
            "input_ids": [[2] + [13] * (n - 2) + [3] for n in lengths],
            "attention_mask": [[1] * n for n in lengths],
            "labels": [i % 2 for i in range(num_rows)],
            "idx": list(range(num_rows)),
        }
    )


def _order(loader) -> list[int]:
    return [i for batch in loader for i in batch["idx"].tolist()]


def test_dataloader_order_depends_only_on_seed_and_epoch(tiny_tokenizer):
    dataset = _toy_tokenized(200)
    collator = make_collator(tiny_tokenizer, get_task("sst2"), keep_idx=True)
    first = make_dataloader(dataset, collator, 8, shuffle=True, seed=3, epoch=1)
    order = _order(first)
    assert sorted(order) == list(range(200)) and order != list(range(200))
    assert _order(first) == order  # re-iterating replays the same order
    assert _order(make_dataloader(dataset, collator, 8, shuffle=True, seed=3, epoch=1)) == order
    assert _order(make_dataloader(dataset, collator, 8, shuffle=True, seed=3, epoch=2)) != order
    first.sampler.set_epoch(2)
    assert _order(first) == _order(make_dataloader(dataset, collator, 8, shuffle=True, seed=3, epoch=2))
    assert _order(make_dataloader(dataset, collator, 8, shuffle=False)) == list(range(200))


def test_seeds_and_epochs_never_share_an_order():
    # with `seed + epoch`, seed 43's first epoch was seed 42's second: "independent" seeds shared data orders
    orders = {(s, e): list(SeededSampler(50, seed=s, epoch=e)) for s in range(40, 46) for e in range(4)}
    assert orders[(43, 0)] != orders[(42, 1)]
    assert len({tuple(order) for order in orders.values()}) == len(orders)
    assert all(sorted(order) == list(range(50)) for order in orders.values())
    # the defaults: seed 0, epoch 0, batches of 1 for length grouping
    assert list(SeededSampler(50)) == list(SeededSampler(50, seed=0, epoch=0))
    lengths = [random.Random(i).randint(3, 60) for i in range(1000)]
    assert list(SeededSampler(1000, lengths=lengths)) == list(SeededSampler(1000, lengths=lengths, batch_size=1))
    assert list(SeededSampler(1000, lengths=lengths)) != list(SeededSampler(1000, lengths=lengths, batch_size=2))
    assert epoch_seed(42, 1) == int(np.random.SeedSequence([42, 1]).generate_state(1, np.uint64)[0])


def test_group_by_length_is_deterministic_and_pads_less(tiny_tokenizer):
    dataset = _toy_tokenized(400)
    collator = make_collator(tiny_tokenizer, get_task("sst2"), keep_idx=True)

    def padded_tokens(loader) -> int:
        return sum(batch["input_ids"].numel() for batch in loader)

    grouped = make_dataloader(dataset, collator, 8, shuffle=True, seed=0, group_by_length=True)
    plain = make_dataloader(dataset, collator, 8, shuffle=True, seed=0)
    assert sorted(_order(grouped)) == list(range(400))
    assert _order(grouped) == _order(make_dataloader(dataset, collator, 8, shuffle=True, seed=0, group_by_length=True))
    assert padded_tokens(grouped) < 0.8 * padded_tokens(plain)
    # the loader's order is exactly SeededSampler's for its seed, epoch and batch size
    lengths = [len(ids) for ids in dataset["input_ids"]]
    loader = make_dataloader(dataset, collator, 8, shuffle=True, seed=3, epoch=2, group_by_length=True)
    expected = list(SeededSampler(400, seed=3, epoch=2, lengths=lengths, batch_size=8))
    assert list(loader.sampler) == expected != list(SeededSampler(400, seed=0, epoch=2, lengths=lengths, batch_size=8))
    assert expected != list(SeededSampler(400, seed=3, epoch=2, lengths=lengths, batch_size=1))


class CountingTokenizer(BertTokenizerFast):
    """A real BertTokenizerFast that counts how often it is asked to encode."""

    calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return super().__call__(*args, **kwargs)


def test_load_tokenized_caches_on_disk(tmp_path, tiny_vocab_file):
    tokenizer = CountingTokenizer(vocab_file=str(tiny_vocab_file), do_lower_case=True)
    data = DataConfig(
        task="rte", data_dir=str(write_glue_task(tmp_path / "glue", "rte")), cache_dir=str(tmp_path / "c")
    )
    first = load_tokenized(data, tokenizer, "train")
    calls_after_first = tokenizer.calls
    assert calls_after_first > 0
    cache = tokenized_cache_dir(data, tokenizer, "train")
    assert cache.parent == tmp_path / "c" / "tokenized" and (cache / "ladc_cache.json").is_file()
    second = load_tokenized(DataConfig(**vars(data)), tokenizer, "train")
    assert tokenizer.calls == calls_after_first  # cache hit: no tokenization
    assert second.to_dict() == first.to_dict() and len(second) == 2
    longer = DataConfig(**{**vars(data), "max_seq_len": 64})
    assert tokenized_cache_dir(longer, tokenizer, "train") != cache
    train_file = tmp_path / "glue" / "RTE" / "train.tsv"
    train_file.write_text(train_file.read_text() + "2\tOne more.\tMore.\tentailment\n")
    os.utime(train_file, ns=(train_file.stat().st_atime_ns, train_file.stat().st_mtime_ns + 10**9))
    assert len(load_tokenized(data, tokenizer, "train")) == 3  # source changed: re-tokenized
    assert tokenizer.calls > calls_after_first
    # the marker says what the cache holds (readable JSON); a damaged cache is rebuilt, not an error
    from ladc.data.data import _cache_description

    cache = tokenized_cache_dir(data, tokenizer, "train")
    marker = (cache / "ladc_cache.json").read_text()
    assert marker == json.dumps(_cache_description(data, tokenizer, "train"), indent=2) + "\n"
    for arrow in cache.glob("*.arrow"):
        arrow.unlink()
    calls_before_rebuild = tokenizer.calls
    assert len(load_tokenized(data, tokenizer, "train")) == 3 and tokenizer.calls > calls_before_rebuild


@pytest.mark.integration
def test_real_glue_dev_sets(glue_dir, minilm_dir, tmp_path):
    from transformers import AutoTokenizer

    sst2 = load_raw(DataConfig(task="sst2", data_dir=str(glue_dir)), "dev")
    rte = load_raw(DataConfig(task="rte", data_dir=str(glue_dir)), "dev")
    assert len(sst2) == 872 and len(rte) == 277
    for raw in (sst2, rte):
        counts = Counter(raw["label"])
        assert set(counts) == {0, 1} and 0.4 < counts[1] / len(raw) < 0.6
    assert Counter(sst2["label"]) == {1: 444, 0: 428} and Counter(rte["label"]) == {0: 146, 1: 131}
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    data = DataConfig(task="rte", data_dir=str(glue_dir), cache_dir=str(tmp_path), max_seq_len=128)
    tokenized = load_tokenized(data, tokenizer, "dev")
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    assert max(lengths) == 128 and min(lengths) < 128  # long RTE premises get truncated, short ones are not padded
    assert all(ids.count(tokenizer.sep_token_id) == 2 for ids in tokenized["input_ids"])


def test_cache_key_follows_what_decides_the_token_ids(tmp_path, tiny_vocab_file):
    """The tokenized cache is keyed by the tokenizer's identity: vocab, lower-casing, class, truncation side, path.
    A changed vocab or normalizer must miss the cache (else stale ids are trained on); a call's own truncation and
    padding state must not (else every command re-tokenizes)."""
    from transformers import BertTokenizer

    data = DataConfig(task="sst2", data_dir=str(write_glue_task(tmp_path / "glue", "sst2")), cache_dir=str(tmp_path))
    fast = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True)
    key = tokenized_cache_dir(data, fast, "train")
    fast("a b", truncation=True, max_length=4, padding="max_length")  # leaves truncation/padding set on the backend
    assert tokenized_cache_dir(data, fast, "train") == key
    assert (
        tokenized_cache_dir(data, BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True), "train")
        == key
    )

    cased = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=False)
    assert tokenized_cache_dir(data, cased, "train") != key
    left = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, truncation_side="left")
    assert tokenized_cache_dir(data, left, "train") != key
    renamed = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, name_or_path="other/model")
    assert tokenized_cache_dir(data, renamed, "train") != key
    # the same ids without token type ids: other columns, so another cache (it once read this one's, with them)
    no_types = BertTokenizerFast(
        vocab_file=str(tiny_vocab_file), do_lower_case=True, model_input_names=["input_ids", "attention_mask"]
    )
    assert tokenized_cache_dir(data, no_types, "train") != key
    assert load_tokenized(data, fast, "train").column_names == [
        "input_ids", "attention_mask", "token_type_ids", "labels", "idx",
    ]  # fmt: skip
    assert "token_type_ids" not in load_tokenized(data, no_types, "train").column_names
    bigger_vocab = tmp_path / "vocab2.txt"
    bigger_vocab.write_text(tiny_vocab_file.read_text() + "zebra\n")
    assert tokenized_cache_dir(data, BertTokenizerFast(vocab_file=str(bigger_vocab)), "train") != key
    same_size_vocab = tmp_path / "vocab3.txt"  # same size, one token spelled differently: only the hash can tell
    words = tiny_vocab_file.read_text().splitlines()
    same_size_vocab.write_text("\n".join(words[:-1] + [words[-1] + "x"]) + "\n")
    assert tokenized_cache_dir(data, BertTokenizerFast(vocab_file=str(same_size_vocab)), "train") != key
    # same vocab and do_lower_case, only the fast backend's normalizer differs (it keeps accents, so "fílm" is no
    # longer "film"): the backend's own spec must be in the key, not just the vocab and the Python-side flags
    accents = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, strip_accents=False)
    assert accents("fílm")["input_ids"] != fast("fílm")["input_ids"]
    assert tokenized_cache_dir(data, accents, "train") != key

    slow = BertTokenizer(vocab_file=str(tiny_vocab_file), do_lower_case=True)  # no backend: vocab + lower-casing
    slow_key = tokenized_cache_dir(data, slow, "train")
    assert slow_key != key
    assert (
        tokenized_cache_dir(data, BertTokenizer(vocab_file=str(tiny_vocab_file), do_lower_case=False), "train")
        != slow_key
    )
    assert (
        tokenized_cache_dir(data, BertTokenizer(vocab_file=str(tiny_vocab_file), do_lower_case=True), "train")
        == slow_key
    )
    assert tokenized_cache_dir(data, BertTokenizer(vocab_file=str(same_size_vocab)), "train") != slow_key
    assert tokenized_cache_dir(data, fast, "dev") != key  # and the split


def test_tokenize_needs_room_for_one_token_per_segment_and_stores_compact_ids(tiny_tokenizer):
    single = datasets.Dataset.from_dict({"sentence": ["a dog"], "label": [1], "idx": [5]})
    sst2 = get_task("sst2")
    with pytest.raises(LadcError, match=r"^max_seq_len 2 is too short for sst2: special tokens alone need 2$"):
        tokenize(single, tiny_tokenizer, sst2, max_seq_len=2)
    tokenized = tokenize(single, tiny_tokenizer, sst2, max_seq_len=3)  # [CLS] one token [SEP]
    assert tiny_tokenizer.decode(tokenized[0]["input_ids"]) == "[CLS] a [SEP]"
    assert tokenized.features["input_ids"].feature.dtype == "int32"
    assert tokenized.features["attention_mask"].feature.dtype == "int8"
    assert tokenized.features["token_type_ids"].feature.dtype == "int8"
    assert tokenized[0]["labels"] == 1 and tokenized[0]["idx"] == 5 and set(tokenized.column_names) == {
        "input_ids", "attention_mask", "token_type_ids", "labels", "idx"}  # fmt: skip
    pair = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [0], "idx": [0]})
    with pytest.raises(LadcError, match=r"^max_seq_len 3 is too short for rte: special tokens alone need 3$"):
        tokenize(pair, tiny_tokenizer, get_task("rte"), max_seq_len=3)
    assert len(tokenize(pair, tiny_tokenizer, get_task("rte"), max_seq_len=4)[0]["input_ids"]) == 4


def test_cache_key_follows_the_source_file_and_its_columns(tmp_path, tiny_vocab_file):
    """Two files with the same bytes and mtime in two places are two caches; so are other text or label columns of
    one file; a GLUE directory and the hub each have their own key."""
    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True)
    text = "s,y\na good film,1\n"
    first, second = tmp_path / "a" / "train.csv", tmp_path / "b" / "train.csv"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text(text)
        os.utime(path, ns=(10**18, 10**18))

    def key(**overrides):
        values = {"task": "sst2", "train_file": str(first), "text_fields": ("s",), "label_field": "y",
                  "cache_dir": str(tmp_path / "c")}  # fmt: skip
        return tokenized_cache_dir(DataConfig(**{**values, **overrides}), tokenizer, "train")

    assert key() != key(train_file=str(second))
    second.write_text("s,z\na good film,1\n")
    os.utime(second, ns=(10**18, 10**18))
    assert key(train_file=str(second), label_field="z") != key(train_file=str(second), label_field="y")
    assert key(train_file=str(second), label_field="z", text_fields=("z",)) != key(
        train_file=str(second), label_field="z"
    )
    hub = DataConfig(task="sst2", cache_dir=str(tmp_path / "c"))  # no data dir: the hub, keyed offline
    assert tokenized_cache_dir(hub, tokenizer, "train") != key()
    assert tokenized_cache_dir(hub, tokenizer, "train") != tokenized_cache_dir(
        DataConfig(task="qnli", cache_dir=str(tmp_path / "c")), tokenizer, "train"
    )


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


def test_the_cache_marker_names_everything_the_key_covers(tmp_path, tiny_vocab_file, monkeypatch):
    """ladc_cache.json is the readable record of what a cached split holds; its fields are pinned here."""
    import re

    from ladc.data.data import _cache_description

    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, name_or_path="tiny/bert")
    root = _sst2_dir(tmp_path / "glue", 6)
    data = DataConfig(task="sst2", data_dir=str(root), train_limit=4, cache_dir=str(tmp_path / "c"), max_seq_len=32)
    load_tokenized(data, tokenizer, "train")
    cache = tokenized_cache_dir(data, tokenizer, "train")
    assert re.fullmatch(r"sst2-train-[0-9a-f]{20}", cache.name)
    marker = json.loads((cache / "ladc_cache.json").read_text())
    stat = (root / "SST-2" / "train.tsv").stat()
    fingerprint = marker["tokenizer"]
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint.pop("vocab_sha256"))
    assert fingerprint == {"name_or_path": "tiny/bert", "class": "BertTokenizerFast", "vocab_size": len(tokenizer),
                           "truncation_side": "right",
                           "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}  # fmt: skip
    assert marker == {
        "format": 1, "task": "sst2", "split": "train",
        "source": {"kind": "tsv", "path": str((root / "SST-2" / "train.tsv").resolve()), "size": stat.st_size,
                   "mtime_ns": stat.st_mtime_ns},
        "train_limit": 4, "train_subset_seed": 0, "dev_limit": None, "tokenizer": fingerprint, "max_seq_len": 32,
    }  # fmt: skip
    # a CSV/JSONL file adds the columns it was read with; the hub is named by dataset and config
    csv = tmp_path / "train.csv"
    csv.write_text("s,y\na good film,1\n")
    from_file = DataConfig(task="sst2", train_file=str(csv), text_fields=("s",), label_field="y")
    assert _cache_description(from_file, tokenizer, "train")["source"] == {
        "kind": "file", "path": str(csv.resolve()), "size": csv.stat().st_size, "mtime_ns": csv.stat().st_mtime_ns,
        "text_fields": ["s"], "label_field": "y",
    }  # fmt: skip
    hub = _cache_description(DataConfig(task="sst2", dev_limit=5), tokenizer, "dev")
    assert hub["source"] == {"hub": "nyu-mll/glue", "config": "sst2"}
    assert (hub["split"], hub["train_limit"], hub["dev_limit"]) == ("validation", None, 5)
    # without cache_dir the cache lives under ~/.cache/ladc
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tokenized_cache_dir(DataConfig(task="sst2", data_dir=str(root)), tokenizer, "train")
    assert default.parent == tmp_path / "home" / ".cache" / "ladc" / "tokenized"


def test_a_split_cache_follows_its_own_limit_only(tmp_path, tiny_tokenizer):
    root = _sst2_dir(tmp_path / "glue", 6)

    def data(**limits) -> DataConfig:
        return DataConfig(task="sst2", data_dir=str(root), cache_dir=str(tmp_path / "c"), **limits)

    assert len(load_tokenized(data(train_limit=2), tiny_tokenizer, "train")) == 2
    assert len(load_tokenized(data(train_limit=4), tiny_tokenizer, "train")) == 4  # not the 2-row cache
    assert len(load_tokenized(data(dev_limit=3), tiny_tokenizer, "dev")) == 3
    assert len(load_tokenized(data(dev_limit=5), tiny_tokenizer, "dev")) == 5
    # another split's limit does not re-tokenize this one
    assert tokenized_cache_dir(data(train_limit=2), tiny_tokenizer, "dev") == tokenized_cache_dir(
        data(train_limit=4), tiny_tokenizer, "dev"
    )
    assert tokenized_cache_dir(data(dev_limit=3), tiny_tokenizer, "train") == tokenized_cache_dir(
        data(dev_limit=5), tiny_tokenizer, "train"
    )


def test_tokenize_keeps_the_label_type_of_the_task(tiny_tokenizer):
    stsb = datasets.Dataset.from_dict(
        {"sentence1": ["a"], "sentence2": ["b"], "label": [3.8], "idx": [0]}, features=raw_features(get_task("stsb"))
    )
    tokenized = tokenize(stsb, tiny_tokenizer, get_task("stsb"), max_seq_len=8)
    assert tokenized.features["labels"].dtype == "float32" and tokenized.features["idx"].dtype == "int64"


def test_collator_pads_token_types_of_rows_without_an_attention_mask():
    from ladc.data.data import PaddingCollator

    rows = [{"input_ids": [2, 13, 3], "token_type_ids": [0, 0, 0]}, {"input_ids": [2, 3], "token_type_ids": [1, 1]}]
    batch = PaddingCollator(pad_token_id=0, pad_token_type_id=5)(rows)
    assert set(batch) == {"input_ids", "token_type_ids"}
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [1, 1, 5]]


def test_dataloader_defaults_and_workers(tiny_tokenizer):
    dataset = _toy_tokenized(30)
    collator = make_collator(tiny_tokenizer, get_task("sst2"), keep_idx=True)
    shuffled = make_dataloader(dataset, collator, 4, shuffle=True)  # seed 0, epoch 0, no workers
    assert list(shuffled.sampler) == list(SeededSampler(30, seed=0, epoch=0)) and shuffled.num_workers == 0
    assert make_dataloader(dataset, collator, 4, shuffle=False, num_workers=1).num_workers == 1


def test_an_empty_dev_split_is_refused_by_name(tmp_path, tiny_tokenizer, monkeypatch):
    """Local sources refuse an empty file themselves; an empty hub split reaches dev_loader's own check. The hub is
    not reachable offline: `datasets.load_dataset` answers with an empty Dataset built by datasets itself."""
    task = get_task("mnli")

    def empty(path, name=None, split=None):
        return datasets.Dataset.from_dict({name: [] for name in raw_features(task)}, features=raw_features(task))

    monkeypatch.setattr(datasets, "load_dataset", empty)
    data = DataConfig(task="mnli", cache_dir=str(tmp_path / "c"))
    with pytest.raises(LadcError) as caught:
        dev_loader(data, tiny_tokenizer, task, 8, split="dev_mismatched")
    assert str(caught.value) == "the mnli dev_mismatched split is empty; evaluation needs at least one example"
