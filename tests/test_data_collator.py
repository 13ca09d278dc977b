"""Tests for ladc/data/data.py's tokenization, padding collator and seeded dataloader."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch

from ladc.data.data import (
    SeededSampler,
    epoch_seed,
    make_collator,
    make_dataloader,
    tokenize,
)
from ladc.data.sources import raw_features
from ladc.data.tasks import get_task
from ladc.errors import LadcError


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
