"""What tune-teacher and distill hand the training loop: the tokenized train set, an epoch -> DataLoader factory, the
evaluator that picks the kept checkpoint and the dev evaluator that scores it (kept out of both commands so neither
imports the other).

Model selection does not peek at dev by default (`select_on: train-holdout`): a seeded slice of train is held out of
training and picks the checkpoint; dev is scored once, after training, for the kept and the last checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ladc.errors import LadcError
from ladc.runs.config import DataConfig, OptimConfig

__all__ = ["HOLDOUT_SEED", "Predict", "TrainingData", "default_holdout_size", "holdout_overlap", "make_evaluator",
           "prepare_data", "row_ids_sha256", "split_rows"]  # fmt: skip

_log = logging.getLogger(__name__)

# The holdout is the same slice of the full train split whatever the run's seed and --train-limit: a teacher and all
# its students (every seed and every limit of a comparison) leave the same rows out, so no stage has trained on the
# rows that pick another stage's checkpoint.
HOLDOUT_SEED = 20230201
HOLDOUT_FRACTION, HOLDOUT_MAX = 0.1, 2000

# (model, accelerator or None, prepared loader) -> (logits (N, C), labels (N,)): how the commands run a model over a
# loader (ladc.deploy.runners' predict_logits over the torch engine's TorchRunner), passed in so the data layer imports no engine
Predict = Callable[[object, object, object], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class TrainingData:
    """The data side of one training run.

    Attributes:
        train: tokenized rows trained on (train minus the holdout, then --train-limit of the rest).
        make_loader: epoch -> the deterministic train DataLoader of that epoch.
        select: (model, accelerator) -> metrics on the selection split, or None (`select_on: last`: keep the last).
        select_split: that split's name in the history and metrics.json: `holdout` or `dev`.
        score_dev: (model, accelerator) -> dev metrics, run after training; None when selection is on dev itself.
        holdout_examples: rows held out of train (0 unless `select_on: train-holdout`).
        select_examples: rows of the selection split (the holdout's, or dev's; 0 for `select_on: last`).
        holdout: what ladc.json records of the holdout: rows, sha256 of their `idx`, the full split's rows, the limit.
    """

    train: object
    make_loader: Callable[[int], object]
    select: Callable | None
    select_split: str
    score_dev: Callable | None
    holdout_examples: int = 0
    select_examples: int = 0
    holdout: dict = field(default_factory=dict)


def make_evaluator(loader, task, predict: Predict) -> Callable:
    """(model, accelerator) -> the task's metrics on every row of `loader` (run through `predict`)."""
    from ladc.data.metrics import metrics_from_logits

    def evaluate(model, accelerator) -> dict[str, float]:
        prepared = accelerator.prepare(loader) if accelerator is not None else loader
        logits, labels = predict(model, accelerator, prepared)
        return metrics_from_logits(task, logits, labels)

    return evaluate


def default_holdout_size(train_rows: int) -> int:
    """10 % of train, at least 1 row and at most 2,000 (a selection pass must stay cheap next to training)."""
    return max(1, min(HOLDOUT_MAX, round(HOLDOUT_FRACTION * train_rows)))


def split_rows(rows: int, holdout_size: int, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(positions to train on, held-out positions) in a train split of `rows` rows, both in file order.

    The holdout is the first `holdout_size` rows of one seeded permutation (HOLDOUT_SEED) of the whole split, so it
    does not depend on `limit`; the limit then draws (seed `TRAIN_SUBSET_SEED`) from the other rows. Without a
    holdout this is the subset `load_raw` draws for `train_limit`; without a limit, all rows but the holdout.

    Raises:
        LadcError: the holdout would leave no row to train on.
    """
    from ladc.data.data import TRAIN_SUBSET_SEED

    if holdout_size and (rows < 2 or holdout_size >= rows):
        raise LadcError(
            f"holdout_size {holdout_size} leaves nothing to train on: the train split has {rows} rows; pass a smaller "
            "--holdout-size, or --select-on dev or last"
        )
    order = np.random.default_rng(HOLDOUT_SEED).permutation(rows) if holdout_size else np.arange(rows)
    held, rest = np.sort(order[:holdout_size]), np.sort(order[holdout_size:])
    if limit is not None and limit < len(rest):
        rest = rest[np.sort(np.random.default_rng(TRAIN_SUBSET_SEED).choice(len(rest), size=limit, replace=False))]
    return rest, held


def row_ids_sha256(ids) -> str:
    """sha256 of row ids (the `idx` column) as sorted decimal numbers joined by commas."""
    return hashlib.sha256(",".join(str(int(i)) for i in sorted(ids)).encode()).hexdigest()


def holdout_overlap(recorded: dict, row_ids: np.ndarray, holdout_rows: np.ndarray) -> int | None:
    """How many of `holdout_rows` (positions) a run with the holdout record `recorded` trained on, or None when the
    record does not describe this train split (another source, or a holdout drawn otherwise).

    Args:
        recorded: another run's ladc.json `holdout` (rows, sha256, train_rows, train_limit).
        row_ids: the `idx` of every row of this run's full train split.
        holdout_rows: this run's held-out positions.
    """
    if recorded.get("train_rows") != len(row_ids) or not isinstance(recorded.get("rows"), int):
        return None
    try:
        trained, held = split_rows(len(row_ids), recorded["rows"], recorded.get("train_limit"))
    except (LadcError, TypeError, ValueError):  # a record no run could have written (edited by hand)
        return None
    if row_ids_sha256(row_ids[held]) != recorded.get("sha256"):
        return None
    return int(np.intersect1d(trained, holdout_rows).size)


def _warn_teacher_overlap(teacher: str, row_ids: np.ndarray, holdout_rows: np.ndarray) -> None:
    """One warning when the teacher trained on rows of the student's holdout (its selection score is then optimistic).

    Teachers not made by `ladc tune-teacher` record no holdout and are not checked.
    """
    from ladc.runs.manifest import read_manifest
    from ladc.runs.runlock import launcher_rank

    manifest = read_manifest(teacher)
    if manifest is None or manifest.kind != "teacher" or launcher_rank() != 0:
        return
    recorded = manifest.holdout if isinstance(manifest.holdout, dict) else {}
    overlap = holdout_overlap(recorded, row_ids, holdout_rows)
    if overlap == 0:
        return
    fix = "tune the teacher with the same --holdout-size (any --train-limit), or pass --select-on last"
    if overlap is None:
        _log.warning("ladc: teacher %s records no holdout of this train split (older ladc, or other data), so it may "
                     "have trained on the student's %d holdout rows and their selection score be optimistic; %s",
                     teacher, len(holdout_rows), fix)  # fmt: skip
    else:
        _log.warning("ladc: %d of the student's %d holdout rows were trained on by teacher %s (its holdout: %d rows, "
                     "train_limit %s), so their selection score is optimistic; %s", overlap, len(holdout_rows),
                     teacher, recorded["rows"], recorded.get("train_limit"), fix)  # fmt: skip


def prepare_data(
    data: DataConfig, optim: OptimConfig, tokenizer, task, predict: Predict, teacher: str | Path | None = None
) -> TrainingData:
    """Tokenize train and dev once, hold out the selection rows, and build the loaders and evaluators (which run the
    model through `predict`).

    The whole train split is tokenized (and cached) once; the holdout and then `train_limit` are drawn from it by
    `split_rows`. A student (`teacher` given) is warned when its teacher trained on its holdout rows.
    """
    from ladc.data.data import dev_loader, load_tokenized, make_collator, make_dataloader
    from ladc.runs.launch import main_process_first

    with main_process_first():  # under torchrun, one process tokenizes into the cache and the others read it
        full = load_tokenized(replace(data, train_limit=None), tokenizer, "train")
        dev_rows = dev_loader(data, tokenizer, task, optim.eval_batch_size)
    holdout_size = 0
    if optim.select_on == "train-holdout":
        holdout_size = default_holdout_size(len(full)) if optim.holdout_size is None else optim.holdout_size
    train_rows, holdout_rows = split_rows(len(full), holdout_size, data.train_limit)
    train = full if len(train_rows) == len(full) else full.select(train_rows)
    row_ids = np.asarray(full.with_format("numpy", columns=["idx"])["idx"])
    record = {"rows": len(holdout_rows), "sha256": row_ids_sha256(row_ids[holdout_rows]), "train_rows": len(full),
              "train_limit": data.train_limit}  # fmt: skip
    collator = make_collator(tokenizer, task)
    dev = make_evaluator(dev_rows, task, predict)
    if holdout_size:
        loader = make_dataloader(full.select(holdout_rows), collator, optim.eval_batch_size, shuffle=False)
        select = make_evaluator(loader, task, predict)
        select_split, score_dev, select_examples = "holdout", dev, len(holdout_rows)
        if teacher is not None:
            _warn_teacher_overlap(str(teacher), row_ids, holdout_rows)
    elif optim.select_on == "dev":
        select, select_split, score_dev, select_examples = dev, "dev", None, len(dev_rows.dataset)
    else:  # last
        select, select_split, score_dev, select_examples = None, "dev", dev, 0

    def make_loader(epoch: int):
        return make_dataloader(
            train, collator, optim.batch_size, shuffle=True, seed=optim.seed, epoch=epoch,
            group_by_length=optim.group_by_length, num_workers=optim.num_workers,
        )  # fmt: skip

    return TrainingData(train, make_loader, select, select_split, score_dev, len(holdout_rows), select_examples, record)
