"""Tests for `ladc evaluate` (ladc/commands/evaluate.py) and the one-line CLI errors of the training commands."""

from __future__ import annotations

import json
import random

import pytest
import torch
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

from ladc.cli import app
from tests.helpers import sst2_rows, train_tiny_classifier, write_tiny_sst2


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory, tiny_vocab_file):
    """A briefly trained tiny classifier (predicts both classes), its dir, and a GLUE dir with dev and test sets.

    Dev has a few labels flipped, so accuracy is neither 0.5 nor 1.0 and any misalignment of predictions and labels
    shows; test.tsv holds 40 unlabelled sentences. Trained once per module: the tests only read the model and data
    (evaluate's outputs land in files each test reads right after writing them).
    """
    from transformers import BertConfig, BertTokenizerFast

    from tests.conftest import TINY_VOCAB

    tmp_path = tmp_path_factory.mktemp("evaluate")
    tiny_tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, pad_token_id=0, num_labels=2, id2label={0: "negative", 1: "positive"},
    )  # fmt: skip
    model = train_tiny_classifier(config, tiny_tokenizer)
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    glue = write_tiny_sst2(tmp_path / "glue", dev=40)
    dev_file = glue / "SST-2" / "dev.tsv"
    header, *rows = dev_file.read_text().splitlines()
    rows = [_flip_label(row) if i % 7 == 3 else row for i, row in enumerate(rows)]
    dev_file.write_text("\n".join([header, *rows]) + "\n")
    test_rows = [line.split("\t")[0] for line in sst2_rows(40, random.Random(5))]
    (glue / "SST-2" / "test.tsv").write_text(
        "index\tsentence\n" + "".join(f"{i}\t{text}\n" for i, text in enumerate(test_rows))
    )
    return tmp_path / "model", glue, model, tiny_tokenizer


def _flip_label(row: str) -> str:
    text, label = row.split("\t")
    return f"{text}\t{1 - int(label)}"


def _argmax_per_sentence(model, tokenizer, sentences: list[str]) -> list[int]:
    """Independent of ladc: one sentence at a time, no padding, no collator, no dataloader."""
    with torch.no_grad():
        return [int(model(**tokenizer(text, return_tensors="pt")).logits.argmax(-1)) for text in sentences]


def test_evaluate_metrics_equal_sklearn_on_the_same_predictions(tiny_classifier, tmp_path):
    model_dir, glue, model, tokenizer = tiny_classifier
    result = CliRunner().invoke(app, ["evaluate", str(model_dir), "--task", "sst2", "--data-dir", str(glue)])
    assert result.exit_code == 0, result.output
    written = json.loads((model_dir / "eval-validation.json").read_text())
    # recompute independently: raw TSV -> tokenizer -> model -> argmax -> scikit-learn
    rows = [line.split("\t") for line in (glue / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    predictions = _argmax_per_sentence(model, tokenizer, [text for text, _ in rows])
    labels = [int(label) for _, label in rows]
    assert 0 < sum(predictions) < len(predictions)  # the trained model predicts both classes
    expected = accuracy_score(labels, predictions)
    assert 0.6 <= expected < 1.0  # trained, and the flipped labels keep it below 1
    assert written["metrics"]["accuracy"] == pytest.approx(expected)
    assert written["examples"] == 40


def test_predict_test_writes_glue_submission_tsv(tiny_classifier):
    model_dir, glue, model, tokenizer = tiny_classifier
    result = CliRunner().invoke(
        app, ["evaluate", str(model_dir), "--task", "sst2", "--data-dir", str(glue), "--predict", "test"]
    )
    assert result.exit_code == 0, result.output
    lines = (model_dir / "predictions" / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction"
    test_rows = [line.split("\t") for line in (glue / "SST-2" / "test.tsv").read_text().splitlines()[1:]]
    predictions = _argmax_per_sentence(model, tokenizer, [text for _, text in test_rows])
    assert 0 < sum(predictions) < len(predictions)
    # one row per test sentence, in order, with the task's label name of the model's argmax
    expected = [f"{index}\t{['negative', 'positive'][p]}" for (index, _), p in zip(test_rows, predictions)]
    assert lines[1:] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune-teacher", "--task", "sst3", "--model", "x"], "unknown task 'sst3' (did you mean 'sst2'?)"),
        (["tune-teacher", "--task", "rte", "--model", "minilm", "--data-dir", "/nonexistent/glue"], "/nonexistent"),
        (["evaluate", "/nonexistent/model", "--task", "sst2"], "does not exist"),
        (["distill", "--task", "sst2", "--teacher", "/nonexistent/t"], "teacher dir /nonexistent/t does not exist"),
        (["distill", "--task", "sst2", "--teacher", "/tmp", "--method", "lda"], "--method 'lda' is unknown"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output dirs (runs/...) land here
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "runs").exists()  # bad input never leaves a half-made run dir behind


def test_label_count_mismatch_is_a_user_error(tiny_classifier, tiny_bert_config, tmp_path):
    from transformers import BertForSequenceClassification

    _, glue, _, tokenizer = tiny_classifier
    three = tiny_bert_config(num_layers=2, num_labels=3)
    three.architectures = ["BertForSequenceClassification"]
    BertForSequenceClassification(three).save_pretrained(tmp_path / "three")
    tokenizer.save_pretrained(tmp_path / "three")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "three"), "--task", "sst2", "--data-dir", str(glue)])
    assert result.exit_code == 2
    assert "has 3 labels but task sst2 has 2" in result.output
