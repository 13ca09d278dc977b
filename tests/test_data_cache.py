"""Tests for ladc/data/data.py's on-disk cache of tokenized splits: its key, its marker, its limits; the real GLUE dev sets."""

from __future__ import annotations

import json
import os
from collections import Counter

import datasets
import pytest
from transformers import BertTokenizerFast

from ladc.data.data import (
    dev_loader,
    load_raw,
    load_tokenized,
    tokenized_cache_dir,
)
from ladc.data.sources import raw_features
from ladc.data.tasks import get_task
from ladc.errors import LadcError
from ladc.runs.config import DataConfig
from tests.helpers import _sst2_dir
from tests.test_data import write_glue_task


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
