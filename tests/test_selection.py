"""Model selection that does not peek at dev, the `--lr auto` default, and PKD's layer choice (issue 12), on tiny
random BERTs through the real `tune_teacher` and `distill`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import ladc.deploy.runners
from ladc.commands.distill import distill
from ladc.commands.teacher import tune_teacher
from ladc.data.training_data import HOLDOUT_MAX, default_holdout_size, split_rows
from ladc.errors import LadcError
from ladc.runs.config import DataConfig, DistillConfig, OptimConfig, TuneTeacherConfig, parse_lr
from ladc.training.checkpoints import kept_index
from ladc.training.lad import last_layers_map, layer_map
from ladc.training.lr import STUDENT_LR, auto_lr, resolve_lr
from ladc.training.methods import METHODS
from tests.helpers import sst2_dev_accuracy, sst2_rows, write_tiny_base_model, write_tiny_sst2

DEV_MARKER = "journey"  # in the tiny vocab, in every dev sentence here and in no train sentence (helpers.sst2_rows)
TRAIN_ROWS, DEV_ROWS = 96, 24


@pytest.fixture
def marked_glue(tmp_path) -> Path:
    """Tiny SST-2 whose dev sentences all carry DEV_MARKER, so any row a model reads says which split it came from."""
    root = write_tiny_sst2(tmp_path / "glue", train=TRAIN_ROWS)
    rng = random.Random(5)
    dev = [f"the {DEV_MARKER} was{row.split(' was', 1)[1]}" for row in sst2_rows(DEV_ROWS, rng)]
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(dev) + "\n")
    return root


@pytest.fixture
def reads(monkeypatch, tiny_tokenizer) -> list[tuple[int, int]]:
    """Every evaluation pass in order, as (rows read, rows carrying the dev marker), counted on the token ids the
    model actually receives (a wrapper around the one inference loop, ladc.deploy.runners.predict_logits)."""
    marker = tiny_tokenizer.convert_tokens_to_ids(DEV_MARKER)
    passes: list[tuple[int, int]] = []
    real = ladc.deploy.runners.predict_logits

    def counting(runner, loader):
        rows = marked = 0

        def batches():
            nonlocal rows, marked
            for batch in loader:
                ids = batch["input_ids"]
                rows += ids.shape[0]
                marked += int((ids == marker).any(dim=1).sum())
                yield batch

        result = real(runner, batches())
        passes.append((rows, marked))
        return result

    monkeypatch.setattr(ladc.deploy.runners, "predict_logits", counting)
    return passes


def _teacher_config(base, glue, output, **optim) -> TuneTeacherConfig:
    values = {"lr": 3e-3, "batch_size": 16, "epochs": 3, "warmup_ratio": 0.0, "log_steps": 1, "seed": 7}
    values.update(optim)
    return TuneTeacherConfig(
        model=str(base), output=str(output),
        data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(Path(output).parent / "cache")),
        optim=OptimConfig(**values),
    )  # fmt: skip


def test_holdout_selection_reads_no_dev_example_before_the_final_score(
    tmp_path, tiny_bert_config, tiny_tokenizer, marked_glue, reads
):
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=2), tiny_tokenizer)
    metrics = tune_teacher(_teacher_config(base, marked_glue, tmp_path / "teacher"))  # select_on: the default
    holdout = default_holdout_size(TRAIN_ROWS)
    assert metrics["selection"]["on"] == "train-holdout" and metrics["selection"]["examples"] == holdout == 10
    assert metrics["train_examples"] == TRAIN_ROWS - holdout  # the holdout is never trained on
    # one selection pass per epoch, each over the holdout rows only, then dev once for the last model and once for
    # the kept one (once in all when the last is the kept one)
    final = 1 if metrics["best_step"] == metrics["final_step"] else 2
    assert len(reads) == 3 + final, reads
    assert reads[:3] == [(holdout, 0)] * 3  # no dev row before training ends
    assert reads[3:] == [(DEV_ROWS, DEV_ROWS)] * final
    assert [h["step"] for h in metrics["history"] if "holdout" in h] == [6, 12, 18]
    assert not any("dev" in h for h in metrics["history"])
    # the reported dev score is that of the kept model, recomputed here outside ladc
    assert metrics["dev"]["accuracy"] == pytest.approx(sst2_dev_accuracy(tmp_path / "teacher", marked_glue))
    evals = [h for h in metrics["history"] if "holdout" in h]
    best = evals[kept_index([h["holdout"]["accuracy"] for h in evals], holdout)]  # the rule is tested on its own
    assert (metrics["best_step"], metrics["selection"]["best"]) == (best["step"], best["holdout"])
    manifest = json.loads((tmp_path / "teacher" / "ladc.json").read_text())
    assert manifest["dev"] == metrics["dev"]
    if final == 1:
        assert metrics["dev_last"] == metrics["dev"]


def test_select_on_dev_and_last_keep_the_old_and_the_plain_behaviour(
    tmp_path, tiny_bert_config, tiny_tokenizer, marked_glue, reads
):
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=2), tiny_tokenizer)
    on_dev = tune_teacher(_teacher_config(base, marked_glue, tmp_path / "dev", select_on="dev"))
    assert reads == [(DEV_ROWS, DEV_ROWS)] * 3  # papers' way: dev picks the checkpoint, and is not scored again
    evals = [h for h in on_dev["history"] if "dev" in h]
    assert on_dev["dev"] == max(evals, key=lambda h: h["dev"]["accuracy"])["dev"]
    assert on_dev["dev_last"] == evals[-1]["dev"] and on_dev["train_examples"] == TRAIN_ROWS
    assert on_dev["selection"] == {"on": "dev", "examples": 0, "best": on_dev["dev"]}
    reads.clear()
    last = tune_teacher(_teacher_config(base, marked_glue, tmp_path / "last", select_on="last"))
    assert reads == [(DEV_ROWS, DEV_ROWS)]  # nothing during training; the last model is scored once
    assert last["best_step"] == last["final_step"] == 18 and last["dev"] == last["dev_last"]
    assert last["dev"]["accuracy"] == pytest.approx(sst2_dev_accuracy(tmp_path / "last", marked_glue))
    # same seed and data: the last model of the dev-selected run is this one, so its dev score is the same
    assert last["dev"] == on_dev["dev_last"]


def test_split_rows_is_seeded_disjoint_and_checked():
    rest, held = split_rows(50, 7, None)
    assert len(held) == 7 and len(rest) == 43
    assert sorted([*rest, *held]) == list(range(50))  # disjoint, nothing lost
    assert list(held) == sorted(held) and list(held) != list(range(7))  # random rows, in file order
    assert list(split_rows(50, 7, None)[1]) == list(held)  # the same slice every time
    assert [default_holdout_size(n) for n in (1, 9, 96, 10_000, 67_349)] == [1, 1, 10, 1000, HOLDOUT_MAX]
    with pytest.raises(LadcError, match="holdout_size 50 leaves nothing to train on: the train split has 50 rows"):
        split_rows(50, 50, None)


def test_auto_lr_follows_width_and_role():
    assert [auto_lr(h, "teacher")[0] for h in (1024, 768, 512, 384, 32)] == [1e-5, 2e-5, 5e-5, 1e-4, 1e-4]
    assert auto_lr(767, "teacher")[0] == 5e-5 and auto_lr(1023, "teacher")[0] == 2e-5  # the edges of the rows
    assert auto_lr(384, "student")[0] == auto_lr(768, "student")[0] == STUDENT_LR == 1e-4
    assert resolve_lr("auto", 768, "teacher") == (2e-5, "auto: fine-tuning default 2e-05 for hidden size 768 (>= 768)")
    assert resolve_lr(3e-4, 768, "teacher") == (3e-4, "given") and resolve_lr("5e-5", 32, "student")[0] == 5e-5
    assert parse_lr("AUTO") == "auto" and parse_lr(None) is None
    for bad, message in (("fast", "'fast' is not a learning rate"), (0, "positive"), ("-1e-4", "positive")):
        with pytest.raises(LadcError, match=message):
            parse_lr(bad)


def test_auto_lr_and_auto_precision_are_used_and_recorded(tmp_path, tiny_bert_config, tiny_tokenizer):
    from ladc.runs.hardware import resolve_mixed_precision

    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=2), tiny_tokenizer)
    glue = write_tiny_sst2(tmp_path / "glue")
    cfg = _teacher_config(
        base, glue, tmp_path / "teacher", lr="auto", max_steps=4, select_on="last", mixed_precision="auto"
    )
    metrics = tune_teacher(cfg)
    expected, why = auto_lr(32, "teacher")
    assert (metrics["lr"], metrics["lr_source"]) == (expected, why) and expected == 1e-4
    manifest = json.loads((tmp_path / "teacher" / "ladc.json").read_text())
    assert (manifest["lr"], manifest["lr_source"]) == (expected, why) and manifest["config"]["optim"]["lr"] == "auto"
    # `auto` is resolved for this machine (bf16 where the CPU has it natively, else no) and the result is recorded
    precision = resolve_mixed_precision("auto")
    assert precision in ("no", "bf16") and metrics["mixed_precision"] == manifest["mixed_precision"] == precision
    # no warm-up, linear decay over 4 steps: the optimizer ran at the chosen lr
    logged = [h["lr"] for h in metrics["history"] if "lr" in h]
    assert logged == pytest.approx([expected * (4 - s) / 4 for s in range(1, 5)])


def test_a_bad_lr_fails_before_training(tmp_path):
    with pytest.raises(LadcError, match="lr 'quick' is not a learning rate"):
        tune_teacher(TuneTeacherConfig(model="minilm", output=str(tmp_path / "t"), optim=OptimConfig(lr="quick")))
    with pytest.raises(LadcError, match="select_on 'best' is not one of: train-holdout, dev, last"):
        tune_teacher(TuneTeacherConfig(model="minilm", output=str(tmp_path / "t"), optim=OptimConfig(select_on="best")))


# ----------------------------------------------------------------------------- PKD's layer choice


def test_pkd_layer_choices_are_skip_and_last():
    assert last_layers_map(12, 3) == (10, 11, 12) and last_layers_map(6, 3) == (4, 5, 6)
    assert layer_map(12, 3) == (4, 8, 12)
    pkd = METHODS["pkd"]
    assert pkd.layer_choice(None) == "skip" and pkd.loss_layer_map("last", 12, 6) == (7, 8, 9, 10, 11, 12)
    with pytest.raises(LadcError, match="'first' is not offered by method 'pkd'; expected one of skip, last"):
        pkd.layer_choice("first")
    with pytest.raises(LadcError, match="method 'kd' matches no layers"):
        METHODS["kd"].layer_choice("skip")
    with pytest.raises(LadcError, match="not offered by method 'lad'"):
        METHODS["lad"].layer_choice("last")


def test_pkd_last_reads_the_top_teacher_layers(tmp_path, tiny_bert_config, tiny_tokenizer):
    """4 -> 2: skip matches student layer 1 with teacher layer 2, last with teacher layer 3; the first step's patient
    loss is recomputed here from the two models' hidden states (no dropout, one batch holding every train row)."""
    from transformers import AutoTokenizer

    from ladc.data.tasks import get_task
    from ladc.training.lad import pkd_loss
    from ladc.training.models import build_student, load_classifier
    from tests.helpers import write_tiny_classifier

    quiet = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=4, **quiet), tiny_tokenizer, seed=1)
    config = tiny_bert_config(num_layers=4, id2label={0: "negative", 1: "positive"}, **quiet)
    teacher_dir = write_tiny_classifier(
        tmp_path / "teacher", config, tiny_tokenizer, {"task": "sst2", "base_model": str(base)}, seed=2
    )
    glue = write_tiny_sst2(tmp_path / "glue")
    losses = {}
    for choice in ("skip", "last"):
        cfg = DistillConfig(
            teacher=str(teacher_dir), output=str(tmp_path / choice), method="pkd", student_layers=2,
            layer_choice=choice, student_init="even", data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(tmp_path / "cache")),
            optim=OptimConfig(lr=1e-3, batch_size=96, max_steps=1, warmup_ratio=0.0, log_steps=1, select_on="last"),
        )  # fmt: skip
        metrics = distill(cfg)
        losses[choice] = next(h["patient"] for h in metrics["history"] if "patient" in h)
        manifest = json.loads((tmp_path / choice / "ladc.json").read_text())
        assert manifest["layer_map"] == {"skip": [2, 4], "last": [3, 4]}[choice]
    teacher = load_classifier(str(teacher_dir), get_task("sst2")).eval()
    student = build_student(teacher, 2, init="even", init_from=str(base), mapping=(2, 4)).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    sentences = [line.split("\t")[0] for line in (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]]
    trained = list(split_rows(len(sentences), default_holdout_size(len(sentences)), None)[0])
    batch = tokenizer([sentences[i] for i in trained], padding=True, return_tensors="pt")
    with torch.no_grad():
        s_hidden = student(**batch, output_hidden_states=True).hidden_states[1:]
        t_hidden = teacher(**batch, output_hidden_states=True).hidden_states[1:]
    for choice, teacher_layer in (("skip", 2), ("last", 3)):
        expected = pkd_loss([s_hidden[0]], [t_hidden[teacher_layer - 1]], [1.0])
        assert losses[choice] == pytest.approx(float(expected), rel=1e-4), choice
    assert losses["skip"] != pytest.approx(losses["last"], rel=1e-3)
