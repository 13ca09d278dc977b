"""What tune-teacher and distill hand the training loop: the tokenized train set, an epoch -> DataLoader factory, the
evaluator that picks the kept checkpoint and the dev evaluator that scores it (kept out of both commands so neither
imports the other).

Model selection does not peek at dev by default (`select_on: train-holdout`): a seeded slice of train is held out of
training and picks the checkpoint; dev is scored once, after training, for the kept and the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ladc.config import DataConfig, OptimConfig
from ladc.errors import LadcError

__all__ = ["HOLDOUT_SEED", "TrainingData", "default_holdout_size", "make_evaluator", "prepare_data", "split_holdout"]

# The holdout is the same slice of train whatever the run's seed: a teacher and all its students (every seed of a
# comparison) leave the same rows out, so no stage has trained on the rows that pick another stage's checkpoint.
HOLDOUT_SEED = 20230201
HOLDOUT_FRACTION, HOLDOUT_MAX = 0.1, 2000


@dataclass(frozen=True)
class TrainingData:
    """The data side of one training run.

    Attributes:
        train: tokenized rows trained on (train minus the holdout, if any).
        make_loader: epoch -> the deterministic train DataLoader of that epoch.
        select: (model, accelerator) -> metrics on the selection split, or None (`select_on: last`: keep the last).
        select_split: that split's name in the history and metrics.json: `holdout` or `dev`.
        score_dev: (model, accelerator) -> dev metrics, run after training; None when selection is on dev itself.
        holdout_examples: rows held out of train (0 unless `select_on: train-holdout`).
    """

    train: object
    make_loader: Callable[[int], object]
    select: Callable | None
    select_split: str
    score_dev: Callable | None
    holdout_examples: int = 0


def _evaluator(loader, task) -> Callable:
    from ladc.metrics import metrics_from_logits
    from ladc.runners import TorchRunner, predict_logits

    def evaluate(model, accelerator) -> dict[str, float]:
        prepared = accelerator.prepare(loader) if accelerator is not None else loader
        logits, labels = predict_logits(TorchRunner(model, accelerator=accelerator), prepared)
        return metrics_from_logits(task, logits, labels)

    return evaluate


def make_evaluator(data: DataConfig, tokenizer, task, batch_size: int) -> Callable:
    """(model, accelerator) -> dev metrics on the task's first dev split, tokenized once."""
    from ladc.data import dev_loader

    return _evaluator(dev_loader(data, tokenizer, task, batch_size), task)


def default_holdout_size(train_rows: int) -> int:
    """10 % of train, at least 1 row and at most 2,000 (a selection pass must stay cheap next to training)."""
    return max(1, min(HOLDOUT_MAX, round(HOLDOUT_FRACTION * train_rows)))


def split_holdout(train, size: int | None):
    """(rows to train on, held-out rows): a seeded random slice of `train` (HOLDOUT_SEED), both in file order.

    Raises:
        LadcError: the holdout would leave no row to train on.
    """
    import numpy as np

    rows = len(train)
    size = default_holdout_size(rows) if size is None else size
    if rows < 2 or size >= rows:
        raise LadcError(
            f"holdout_size {size} leaves nothing to train on: the train split has {rows} rows; pass a smaller "
            "--holdout-size, or --select-on dev or last"
        )
    order = np.random.default_rng(HOLDOUT_SEED).permutation(rows)
    return train.select(np.sort(order[size:])), train.select(np.sort(order[:size]))


def prepare_data(data: DataConfig, optim: OptimConfig, tokenizer, task) -> TrainingData:
    """Tokenize train and dev once, hold out the selection rows, and build the loaders and evaluators."""
    from ladc.data import load_tokenized, make_collator, make_dataloader

    train = load_tokenized(data, tokenizer, "train")
    collator = make_collator(tokenizer, task)
    dev = make_evaluator(data, tokenizer, task, optim.eval_batch_size)
    holdout_rows = 0
    if optim.select_on == "train-holdout":
        train, holdout = split_holdout(train, optim.holdout_size)
        holdout_rows = len(holdout)
        loader = make_dataloader(holdout, collator, optim.eval_batch_size, shuffle=False)
        select, select_split, score_dev = _evaluator(loader, task), "holdout", dev
    elif optim.select_on == "dev":
        select, select_split, score_dev = dev, "dev", None
    else:  # last
        select, select_split, score_dev = None, "dev", dev

    def make_loader(epoch: int):
        return make_dataloader(
            train, collator, optim.batch_size, shuffle=True, seed=optim.seed, epoch=epoch,
            group_by_length=optim.group_by_length, num_workers=optim.num_workers,
        )  # fmt: skip

    return TrainingData(train, make_loader, select, select_split, score_dev, holdout_rows)
