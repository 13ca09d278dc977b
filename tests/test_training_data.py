"""Tests of ladc/data/training_data.py: the train holdout is cut from the whole train split before --train-limit, is
recorded in ladc.json and checked against the teacher's; under torchrun one process tokenizes, the others read."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ladc.commands.distill import distill
from ladc.commands.teacher import tune_teacher
from ladc.data.data import load_raw
from ladc.data.tasks import get_task
from ladc.data.training_data import holdout_overlap, make_evaluator, prepare_data, row_ids_sha256, split_rows
from ladc.runs.config import DataConfig, DistillConfig, OptimConfig, TuneTeacherConfig
from tests.helpers import write_tiny_base_model, write_tiny_sst2

TRAIN_ROWS = 200  # default holdout: 20 rows


def _idx(dataset) -> list[int]:
    return [int(i) for i in dataset["idx"]]


def _no_model(model, accelerator, loader):
    raise AssertionError("preparing the data runs no model: only the evaluators it returns do")


def _prepare(glue: Path, tokenizer, cache: Path, limit: int | None, **optim):
    data = DataConfig(task="sst2", data_dir=str(glue), train_limit=limit, cache_dir=str(cache))
    return prepare_data(data, OptimConfig(**optim), tokenizer, get_task("sst2"), _no_model)


def test_an_evaluator_scores_what_predict_returns_for_its_loader():
    """The evaluators run the model through the `predict` the command passes (the data layer imports no engine), on
    the loader as the accelerator prepared it, and score the logits with the task's metrics."""
    calls = []

    class Accelerator:
        def prepare(self, loader):
            return ("prepared", loader)

    def predict(model, accelerator, loader):
        calls.append((model, loader))
        return np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.0]]), np.array([1, 0, 0, 0])

    evaluate = make_evaluator(["batches"], get_task("sst2"), predict)
    assert calls == []  # nothing runs until the loop evaluates
    assert evaluate("model", Accelerator()) == {"accuracy": 0.75}
    assert calls == [("model", ("prepared", ["batches"]))]
    assert evaluate("model", None)["accuracy"] == 0.75 and calls[-1] == ("model", ["batches"])


def test_the_holdout_is_the_same_rows_whatever_the_train_limit(tmp_path, tiny_tokenizer):
    """The README's Tour: a teacher at one --train-limit and its student at another select on the same rows, none of
    which either trained on; the limit counts the rows trained on."""
    glue = write_tiny_sst2(tmp_path / "glue", train=TRAIN_ROWS)
    runs = {limit: _prepare(glue, tiny_tokenizer, tmp_path / "cache", limit) for limit in (None, 60, 120)}
    holdouts = {limit: run.holdout for limit, run in runs.items()}
    assert holdouts[60]["sha256"] == holdouts[120]["sha256"] == holdouts[None]["sha256"]
    assert [h["rows"] for h in holdouts.values()] == [20, 20, 20]
    assert [h["train_limit"] for h in holdouts.values()] == [None, 60, 120]
    assert {h["train_rows"] for h in holdouts.values()} == {TRAIN_ROWS}
    assert [len(run.train) for run in runs.values()] == [180, 60, 120]
    held = set(split_rows(TRAIN_ROWS, 20, None)[1])
    assert row_ids_sha256(held) == holdouts[60]["sha256"]  # tiny SST-2's idx is the row number
    for run in runs.values():
        assert not held & set(_idx(run.train))  # no limit trains on a holdout row
        assert run.holdout_examples == run.select_examples == 20
    assert set(_idx(runs[60].train)) < set(_idx(runs[None].train))
    # without a limit: the rows the holdout split always gave (cut from the whole split, as before)
    order = np.random.default_rng(20230201).permutation(TRAIN_ROWS)
    assert _idx(runs[None].train) == sorted(order[20:].tolist()) and held == set(order[:20].tolist())


def test_without_a_holdout_the_limit_draws_the_rows_it_always_drew(tmp_path, tiny_tokenizer):
    glue = write_tiny_sst2(tmp_path / "glue", train=TRAIN_ROWS)
    run = _prepare(glue, tiny_tokenizer, tmp_path / "cache", 60, select_on="last")
    data = DataConfig(task="sst2", data_dir=str(glue), train_limit=60)
    assert _idx(run.train) == _idx(load_raw(data, "train"))  # load_raw's own train_limit subset
    assert run.holdout == {"rows": 0, "sha256": row_ids_sha256([]), "train_rows": TRAIN_ROWS, "train_limit": 60}
    assert run.select_examples == 0
    on_dev = _prepare(glue, tiny_tokenizer, tmp_path / "cache", 60, select_on="dev")
    assert on_dev.select_examples == 32  # the tiny dev split's rows: the margin of checkpoint selection counts them


def test_holdout_overlap_counts_the_rows_another_run_trained_on():
    ids = np.arange(TRAIN_ROWS)
    teacher_trained, teacher_held = split_rows(TRAIN_ROWS, 20, 60)
    record = {"rows": 20, "sha256": row_ids_sha256(teacher_held), "train_rows": TRAIN_ROWS, "train_limit": 60}
    assert holdout_overlap(record, ids, teacher_held) == 0
    student_held = split_rows(TRAIN_ROWS, 40, None)[1]
    expected = len(set(teacher_trained) & set(student_held))
    assert expected > 0 and holdout_overlap(record, ids, student_held) == expected
    assert holdout_overlap({**record, "train_rows": 199}, ids[:199], teacher_held) is None  # another split
    assert holdout_overlap({**record, "sha256": "0" * 64}, ids, teacher_held) is None  # drawn otherwise
    assert holdout_overlap({}, ids, teacher_held) is None  # a teacher of an older ladc records none
    assert holdout_overlap({**record, "rows": TRAIN_ROWS}, ids, teacher_held) is None  # no run could have made it


def test_a_student_is_warned_when_its_teacher_trained_on_its_holdout(tmp_path, tiny_bert_config, tiny_tokenizer,
                                                                      caplog):  # fmt: skip
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=2), tiny_tokenizer)
    glue = write_tiny_sst2(tmp_path / "glue", train=TRAIN_ROWS)
    optim = {"lr": 1e-3, "batch_size": 16, "max_steps": 2, "warmup_ratio": 0.0}

    def data(limit: int) -> DataConfig:
        return DataConfig(task="sst2", data_dir=str(glue), train_limit=limit, cache_dir=str(tmp_path / "cache"))

    teacher = tmp_path / "teacher"
    tune_teacher(TuneTeacherConfig(model=str(base), output=str(teacher), data=data(60), optim=OptimConfig(**optim)))
    recorded = json.loads((teacher / "ladc.json").read_text())["holdout"]
    assert (recorded["rows"], recorded["train_limit"], recorded["train_rows"]) == (20, 60, TRAIN_ROWS)

    def student(name: str, **extra) -> dict:
        caplog.clear()
        cfg = DistillConfig(teacher=str(teacher), output=str(tmp_path / name), student_layers=1, data=data(120),
                            optim=OptimConfig(**optim, **extra))  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="ladc.data.training_data"):
            distill(cfg)
        return json.loads((tmp_path / name / "ladc.json").read_text())["holdout"]

    assert student("same") == {**recorded, "train_limit": 120}  # another limit, the same holdout: nothing to say
    assert not [r for r in caplog.records if r.name == "ladc.data.training_data"]
    assert student("wider", holdout_size=40)["rows"] == 40
    warnings = [r.getMessage() for r in caplog.records if r.name == "ladc.data.training_data"]
    expected = len(set(split_rows(TRAIN_ROWS, 20, 60)[0]) & set(split_rows(TRAIN_ROWS, 40, None)[1]))
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert f"{expected} of the student's 40 holdout rows were trained on by teacher {teacher}" in warnings[0]


TOKENIZE_ONCE = """
import sys, time
from accelerate import PartialState
from transformers import AutoTokenizer
import ladc.data.data
from ladc.runs.config import DataConfig, OptimConfig
from ladc.runs.launch import cpu_process_group
from ladc.data.tasks import get_task
from ladc.data.training_data import prepare_data

glue, cache, tokenizer_dir, log = sys.argv[1:5]
state = PartialState(cpu=cpu_process_group())
real = ladc.data.data.tokenize

def tokenize(*args, **kwargs):
    with open(log, "a") as handle:
        handle.write(f"{state.process_index}\\n")
    time.sleep(1)  # both processes would be in here at once, unless one waits for the other
    return real(*args, **kwargs)

ladc.data.data.tokenize = tokenize
state.wait_for_everyone()  # start together, with a cold cache
data = DataConfig(task="sst2", data_dir=glue, cache_dir=cache)
no_model = None  # the evaluators are never called here
run = prepare_data(data, OptimConfig(), AutoTokenizer.from_pretrained(tokenizer_dir), get_task("sst2"), no_model)
print(state.process_index, len(run.train), run.holdout["sha256"], flush=True)
"""


def test_under_torchrun_the_main_process_tokenizes_and_the_other_reads_its_cache(tmp_path, tiny_tokenizer):
    glue = write_tiny_sst2(tmp_path / "glue", train=TRAIN_ROWS)
    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")
    log = tmp_path / "tokenized.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    script = tmp_path / "prepare.py"
    script.write_text(TOKENIZE_ONCE)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(glue), str(tmp_path / "cache"), str(tmp_path / "tokenizer"), str(log)]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert log.read_text().split() == ["0", "0"]  # train and dev, each tokenized once, by the main process
    lines = sorted(proc.stdout.split("\n"))[-2:]
    assert [line.split()[0] for line in lines] == ["0", "1"] and len({line.split(" ", 1)[1] for line in lines}) == 1
