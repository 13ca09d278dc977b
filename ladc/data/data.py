"""GLUE data: load from the hub, a GLUE TSV dir or CSV/JSONL files, tokenize once (cached), pad per batch.

Every source yields the same columns as `nyu-mll/glue` on the hub: the task's text fields (`sentence`, or a pair
such as `premise`/`hypothesis`), `label` (int64 id in the hub's label order, float32 for STS-B, -1 for unlabelled
test rows) and `idx` (int64 row order in the source file). The per-format readers live in `ladc/data/sources.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

from ladc.data.sources import (
    HUB_DATASET,
    load_hub,
    raw_features,
    read_glue_tsv,
    read_table_file,
    resolve_split,
    source_of,
)
from ladc.data.tasks import TaskSpec, get_task
from ladc.errors import LadcError
from ladc.runs.config import DataConfig
from ladc.runs.io import atomic_dir

__all__ = [
    "HUB_DATASET",
    "TRAIN_SUBSET_SEED",
    "resolve_split",
    "load_raw",
    "tokenize",
    "load_tokenized",
    "tokenized_cache_dir",
    "PaddingCollator",
    "make_collator",
    "SeededSampler",
    "epoch_seed",
    "make_dataloader",
    "dev_loader",
]

# train_limit draws its subset with this fixed seed, so every run with the same limit sees the same examples
TRAIN_SUBSET_SEED = 0
# bump when the on-disk layout of tokenized datasets changes, so old caches are never read
_CACHE_FORMAT = 1


def load_raw(data: DataConfig, split: str) -> datasets.Dataset:
    """Load one split of `data.task` as untokenized hub-style columns.

    Args:
        data: where the examples come from (hub, `data_dir` in GLUE TSV layout, or `*_file` CSV/JSONL).
        split: `train`, `dev` (the task's first dev split), any name in `task.dev_splits` or `task.test_splits`,
            `test`, or a GLUE TSV stem such as `dev_mismatched`.

    Returns:
        A Dataset with the task's text fields, `label` and `idx`. `data.train_limit` keeps a random subset of
        train (seed `TRAIN_SUBSET_SEED`, original order kept); `data.dev_limit` keeps the first N dev rows.

    Raises:
        LadcError: missing dir/file/column, malformed row, unknown label, unknown split, hub unreachable.
    """
    task = get_task(data.task)
    for name in ("train_limit", "dev_limit"):
        limit = getattr(data, name)
        if limit is not None and limit < 1:
            raise LadcError(f"data.{name} must be a positive number of examples, got {limit}")
    resolved = resolve_split(task, split)
    kind, path = source_of(data, task, resolved)
    if kind == "hub":
        raw = load_hub(task, resolved)
    else:
        columns = read_glue_tsv(path, task, resolved) if kind == "tsv" else read_table_file(path, data, task, resolved)
        raw = datasets.Dataset.from_dict(columns, features=raw_features(task))
    if resolved.kind == "train" and data.train_limit is not None and data.train_limit < len(raw):
        rng = np.random.default_rng(TRAIN_SUBSET_SEED)
        raw = raw.select(np.sort(rng.choice(len(raw), size=data.train_limit, replace=False)))
    if resolved.kind == "dev" and data.dev_limit is not None and data.dev_limit < len(raw):
        raw = raw.select(range(data.dev_limit))
    return raw


# ----------------------------------------------------------------------------- tokenization and cache


def tokenize(raw: datasets.Dataset, tokenizer, task: TaskSpec, max_seq_len: int) -> datasets.Dataset:
    """Tokenize the text field(s) without padding (the collator pads each batch to its longest row).

    Pairs are truncated `longest_first`, so both segments stay present up to `max_seq_len` tokens in total.

    Returns:
        A Dataset with `input_ids` (int32 lists), `attention_mask` and, if the tokenizer makes them,
        `token_type_ids` (int8 lists), `labels` (the raw `label`) and `idx`.
    """
    if max_seq_len < len(task.text_fields) + 2:
        raise LadcError(
            f"max_seq_len {max_seq_len} is too short for {task.name}: special tokens alone need "
            f"{len(task.text_fields) + 1}"
        )
    fields = list(task.text_fields)
    # what a call returns: input_ids, plus attention_mask and token_type_ids if the tokenizer's model takes them
    names = ["input_ids"] + [
        name for name in ("attention_mask", "token_type_ids") if name in tokenizer.model_input_names
    ]
    features = datasets.Features(
        {
            **{name: datasets.List(datasets.Value("int32" if name == "input_ids" else "int8")) for name in names},
            "labels": raw.features["label"],
            "idx": raw.features["idx"],
        }
    )

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(*[batch[name] for name in fields], truncation=True, max_length=max_seq_len)
        return {**{name: encoded[name] for name in names}, "labels": batch["label"], "idx": batch["idx"]}

    # keep_in_memory: load_tokenized writes the one cache we want; no second copy in the HF cache
    return raw.map(
        encode,
        batched=True,
        remove_columns=raw.column_names,
        features=features,
        keep_in_memory=True,
        desc=f"tokenize {task.name}",
    )


def _tokenizer_fingerprint(tokenizer) -> dict:
    """What decides the token ids and columns: name, class, vocab size, a hash of the vocab (plus normalizer etc.),
    truncation side and the model input names."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        # the backend's truncation/padding state changes with each call; it is not part of the tokenizer's identity
        spec.pop("truncation", None)
        spec.pop("padding", None)
        blob = json.dumps(spec, sort_keys=True)
    else:
        blob = json.dumps(sorted(tokenizer.get_vocab().items())) + str(getattr(tokenizer, "do_lower_case", None))
    return {
        "name_or_path": str(tokenizer.name_or_path),
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "vocab_sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "truncation_side": tokenizer.truncation_side,
        # which columns `tokenize` makes (a tokenizer without token type ids makes none)
        "model_input_names": list(tokenizer.model_input_names),
    }


def _cache_description(data: DataConfig, tokenizer, split: str) -> dict:
    task = get_task(data.task)
    resolved = resolve_split(task, split)
    kind, path = source_of(data, task, resolved)
    if kind == "hub":
        source = {"hub": HUB_DATASET, "config": task.name}
    else:
        stat = path.stat()
        source = {"kind": kind, "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if kind == "file":
            source.update(text_fields=list(data.text_fields or task.text_fields), label_field=data.label_field)
    return {
        "format": _CACHE_FORMAT,
        "task": task.name,
        "split": resolved.name,
        "source": source,
        "train_limit": data.train_limit if resolved.kind == "train" else None,
        "train_subset_seed": TRAIN_SUBSET_SEED,
        "dev_limit": data.dev_limit if resolved.kind == "dev" else None,
        "tokenizer": _tokenizer_fingerprint(tokenizer),
        "max_seq_len": data.max_seq_len,
    }


def tokenized_cache_dir(data: DataConfig, tokenizer, split: str) -> Path:
    """Where `load_tokenized` keeps this split: `<cache_dir or ~/.cache/ladc>/tokenized/<task>-<split>-<hash>`."""
    return _cache_dir_of(data, _cache_description(data, tokenizer, split))


def _cache_dir_of(data: DataConfig, description: dict) -> Path:
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]
    root = Path(data.cache_dir).expanduser() if data.cache_dir else Path.home() / ".cache" / "ladc"
    return root / "tokenized" / f"{description['task']}-{description['split']}-{digest}"


def load_tokenized(data: DataConfig, tokenizer, split: str) -> datasets.Dataset:
    """`load_raw` + `tokenize`, cached with `save_to_disk`: a second call with the same inputs reads the cache.

    The cache key covers the source (file path + size + mtime, or the hub name), split, limits, tokenizer
    (name, class, vocab size, vocab hash, truncation side, model input names) and `max_seq_len`; the directory is
    written atomically.
    """
    description = _cache_description(data, tokenizer, split)  # once: the key and the marker describe the same inputs
    target = _cache_dir_of(data, description)
    marker = target / "ladc_cache.json"
    if marker.is_file():
        try:
            return datasets.load_from_disk(str(target))
        except (OSError, ValueError):  # damaged cache (e.g. a file deleted by hand): rebuilt and swapped in below
            pass
    tokenized = tokenize(load_raw(data, split), tokenizer, get_task(data.task), data.max_seq_len)
    if len(tokenized) == 0:  # nothing to cache, and datasets cannot load an empty saved split back (IndexError)
        return tokenized
    with atomic_dir(target) as tmp:
        tokenized.save_to_disk(str(tmp))
        # written last: a directory with this file is complete
        marker_tmp = tmp / marker.name
        marker_tmp.write_text(json.dumps(description, indent=2) + "\n")
    return datasets.load_from_disk(str(target))


# ----------------------------------------------------------------------------- batching


@dataclass(frozen=True)
class PaddingCollator:
    """Pads `input_ids`/`attention_mask`/`token_type_ids` to the longest row of the batch.

    Returns `{input_ids, attention_mask, token_type_ids: (B, S) long, labels: (B,) long or float32}`, all model
    inputs. `idx` is dropped unless `keep_idx` (then `idx: (B,) long` is added and must be popped before
    `model(**batch)`). Holds no tokenizer, so it pickles cheaply into DataLoader workers.
    """

    pad_token_id: int
    pad_token_type_id: int = 0
    padding_side: str = "right"
    regression: bool = False
    keep_idx: bool = False
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_values = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": self.pad_token_type_id}
        batch: dict[str, torch.Tensor] = {}
        for name, pad_value in pad_values.items():
            if name not in rows[0]:
                continue
            padded = torch.full((len(rows), width), pad_value, dtype=torch.long)
            for i, row in enumerate(rows):
                values = torch.as_tensor(row[name], dtype=torch.long)
                if self.padding_side == "left":
                    padded[i, width - len(values) :] = values
                else:
                    padded[i, : len(values)] = values
            batch[name] = padded
        label_key = "labels" if "labels" in rows[0] else "label" if "label" in rows[0] else None
        if label_key is not None:
            dtype = torch.float32 if self.regression else torch.long
            batch["labels"] = torch.tensor(
                [float(r[label_key]) if self.regression else int(r[label_key]) for r in rows], dtype=dtype
            )
        if self.keep_idx and "idx" in rows[0]:
            batch["idx"] = torch.tensor([int(r["idx"]) for r in rows], dtype=torch.long)
        return batch


def make_collator(
    tokenizer, task: TaskSpec, *, keep_idx: bool = False, pad_to_multiple_of: int | None = None
) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """Dynamic-padding collator for `task` (labels long for classification, float32 for STS-B); see PaddingCollator.

    Raises:
        LadcError: the tokenizer has no pad token.
    """
    if tokenizer.pad_token_id is None:
        raise LadcError(f"tokenizer {tokenizer.name_or_path!r} has no pad token; set one first")
    return PaddingCollator(
        pad_token_id=int(tokenizer.pad_token_id),
        pad_token_type_id=int(tokenizer.pad_token_type_id),
        padding_side=tokenizer.padding_side,
        regression=task.is_regression,
        keep_idx=keep_idx,
        pad_to_multiple_of=pad_to_multiple_of,
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch's order: (seed, epoch) mixed by numpy's SeedSequence (64 bits)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])


class SeededSampler(torch.utils.data.Sampler[int]):
    """A shuffled order that depends only on (`seed`, `epoch`), so a resumed run can replay and skip it.

    The two are mixed by numpy's SeedSequence, not added: with `seed + epoch`, seed 43's first epoch replayed seed
    42's second, so runs meant as independent seeds shared most of their data orders.

    Each `__iter__` rebuilds its generator, so iterating twice gives the same order. With `lengths` it yields
    length-grouped batches (transformers' `get_length_grouped_indices`: random mega-batches sorted by length).
    `set_epoch` (called by accelerate's DataLoader wrapper, if used) moves to another epoch's order.
    """

    def __init__(
        self, num_rows: int, *, seed: int = 0, epoch: int = 0, lengths: list[int] | None = None, batch_size: int = 1
    ):
        self.num_rows = num_rows
        self.seed = seed
        self.epoch = epoch
        self.lengths = lengths
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.lengths is None:
            return iter(torch.randperm(self.num_rows, generator=generator).tolist())
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _row_lengths(dataset) -> list[int]:
    """Token count per row, read from Arrow without materialising the token lists in Python."""
    if isinstance(dataset, datasets.Dataset):
        import pyarrow.compute as pc

        table = dataset.select_columns(["input_ids"]).with_format("arrow")[:]
        return pc.list_value_length(table["input_ids"]).to_pylist()
    return [len(row["input_ids"]) for row in dataset]


def make_dataloader(
    dataset,
    collator,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    group_by_length: bool = False,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """A DataLoader whose order is a pure function of (seed, epoch) when shuffling, and dataset order otherwise.

    Args:
        dataset: rows with `input_ids` (e.g. from `load_tokenized`).
        collator: e.g. `make_collator(tokenizer, task)`.
        batch_size: rows per batch; the last batch may be smaller.
        shuffle: random order seeded by `epoch_seed(seed, epoch)`; False keeps dataset order.
        group_by_length: with shuffle, batches of similar length (less padding); ignored without shuffle.
        num_workers: DataLoader worker processes.
    """
    sampler = None  # DataLoader's default: dataset order
    if shuffle:
        lengths = _row_lengths(dataset) if group_by_length else None
        sampler = SeededSampler(len(dataset), seed=seed, epoch=epoch, lengths=lengths, batch_size=batch_size)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collator, num_workers=num_workers
    )


def dev_loader(
    data: DataConfig, tokenizer, task: TaskSpec, batch_size: int, split: str = "dev"
) -> torch.utils.data.DataLoader:
    """The one evaluation loader (evaluate, training eval, parity, bench): `split` tokenized once (cached), padded
    per batch, in file order, so logits line up with the split's rows.

    Args:
        data: where the examples come from; `dev_limit` keeps the first N dev rows.
        tokenizer: the model's tokenizer.
        task: the TaskSpec (label dtype of the collator).
        batch_size: rows per batch; the last may be smaller.
        split: `dev` (the task's first dev split), another dev split name, or a test split.

    Raises:
        LadcError: the split has no rows.
    """
    dataset = load_tokenized(data, tokenizer, split)
    if len(dataset) == 0:
        raise LadcError(
            f"the {task.name} {task.dev_split(split)} split is empty; evaluation needs at least one example"
        )
    return make_dataloader(dataset, make_collator(tokenizer, task), batch_size, shuffle=False)
