"""Tests for ladc/commands/predict.py and ladc/commands/predict_io.py: `ladc predict` on a tiny trained BERT, through the real CLI, for
every installed engine (PyTorch, onnxruntime, OpenVINO), against `ladc evaluate`'s argmax on the same rows."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ladc.cli import app
from ladc.errors import LadcError
from tests.helpers import sst2_rows, train_tiny_classifier, write_tiny_sst2

OPENVINO = __import__("importlib").util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> Path:
    """Tiny GLUE SST-2 whose test.tsv holds the dev sentences, so `evaluate --predict test` labels the dev rows."""
    root = write_tiny_sst2(tmp_path_factory.mktemp("glue"), train=64, dev=40, seed=3)
    dev = [line.split("\t") for line in (root / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    test = ["index\tsentence", *(f"{i}\t{text}" for i, (text, _) in enumerate(dev))]
    (root / "SST-2" / "test.tsv").write_text("\n".join(test) + "\n")
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_vocab_file, glue) -> Path:
    """A briefly trained 2-layer classifier dir with a ladc.json naming its task and data (as tune-teacher writes)."""
    from transformers import BertConfig, BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})  # fmt: skip
    model = train_tiny_classifier(config, tokenizer, steps=60)
    path = tmp_path_factory.mktemp("model") / "student"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    data = {"task": "sst2", "data_dir": str(glue), "max_seq_len": 64}
    (path / "ladc.json").write_text(json.dumps({"kind": "student", "task": "sst2", "data": data}))
    return path


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, model_dir, glue) -> Path:
    """A real `ladc export` dir with onnxruntime fp32 + INT8 and, where installed, OpenVINO artifacts."""
    from ladc.deploy.export import export_onnx
    from ladc.runs.config import ExportConfig

    out = tmp_path_factory.mktemp("export") / "onnx"
    backends = ("onnxruntime", "openvino") if OPENVINO else ("onnxruntime",)
    export_onnx(ExportConfig(model=str(model_dir), output=str(out), data_dir=str(glue), cache_dir=str(glue / "cache"),
                             quantize="dynamic", backends=backends, calibration_samples=16))  # fmt: skip
    return out


def _invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def evaluate_labels(model_dir, glue) -> list[str]:
    """`ladc evaluate --predict test` on the dev sentences: the label names of PyTorch's argmax, row by row."""
    result = _invoke("evaluate", str(model_dir), "--data-dir", str(glue), "--predict", "test", "--batch-size", "64")
    assert result.exit_code == 0, result.output
    lines = (model_dir / "predictions" / "SST-2.tsv").read_text().splitlines()[1:]
    return [line.split("\t")[1] for line in lines]


def _engines(model_dir: Path, export_dir: Path) -> list[tuple[str, list[str]]]:
    engines = [("torch", [str(model_dir)]), ("onnxruntime", [str(export_dir), "--artifact", "fp32"])]
    if OPENVINO:
        engines.append(("openvino", [str(export_dir), "--artifact", "openvino_f32"]))
        engines.append(("openvino-xml", [str(export_dir / "openvino_model.xml")]))
    engines.append(("onnx-file", [str(export_dir / "model.onnx")]))
    return engines


def test_predict_labels_equal_evaluate_argmax_for_every_engine(tmp_path, model_dir, export_dir, glue, evaluate_labels):
    dev = glue / "SST-2" / "dev.tsv"
    assert len(set(evaluate_labels)) == 2, "the model must predict both classes for the comparison to mean anything"
    for name, target in _engines(model_dir, export_dir):
        out = tmp_path / f"{name}.jsonl"
        result = _invoke("predict", *target, "--input", str(dev), "--output", str(out), "--batch-size", "4")
        assert result.exit_code == 0, f"{name}: {result.output}"
        rows = _read_jsonl(out)
        assert [row["label"] for row in rows] == evaluate_labels, name
        assert [row["id"] for row in rows] == list(range(len(evaluate_labels))), name  # row numbers: no id column
        for row in rows:
            assert set(row["probabilities"]) == {"negative", "positive"}
            assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
            assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)


def test_int8_artifacts_agree_with_evaluate_on_most_rows(tmp_path, export_dir, glue, evaluate_labels):
    """Reduced precision is held to parity's own bound (>= 97 % agreement), not to equality."""
    artifacts = ["int8"] + (["openvino_int8"] if OPENVINO else [])
    for artifact in artifacts:
        out = tmp_path / f"{artifact}.jsonl"
        result = _invoke("predict", str(export_dir), "--artifact", artifact, "-i", str(glue / "SST-2" / "dev.tsv"),
                         "-o", str(out), "--no-progress")  # fmt: skip
        assert result.exit_code == 0, result.output
        labels = [row["label"] for row in _read_jsonl(out)]
        agreement = np.mean([a == b for a, b in zip(labels, evaluate_labels, strict=True)])
        assert agreement >= 0.97, (artifact, agreement)


def test_order_is_restored_after_length_sorting(tmp_path, model_dir):
    """Rows of very different lengths, in chunks of 5 and batches of 2: every output row is its own input's, equal to
    running that row alone."""
    from ladc.commands.predict import open_predictor

    rng = random.Random(7)
    texts = [line.split("\t")[0] for line in sst2_rows(23, rng)]
    texts = [" ".join([text] * rng.randint(1, 4)) for text in texts]  # 10 to 60 tokens, shuffled lengths
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "sentence": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    result = _invoke("predict", str(model_dir), "-i", str(source), "-o", str(out), "--batch-size", "2",
                     "--chunk-rows", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = _read_jsonl(out)
    assert [row["id"] for row in rows] == [f"r{i}" for i in range(len(texts))]
    predictor = open_predictor(str(model_dir))
    alone = np.concatenate([predictor.logits([(text,)], batch_size=1) for text in texts])
    probabilities = np.exp(alone) / np.exp(alone).sum(axis=1, keepdims=True)
    got = np.array([[row["probabilities"]["negative"], row["probabilities"]["positive"]] for row in rows])
    np.testing.assert_allclose(got, probabilities, atol=1e-5)


def test_rows_are_streamed_in_chunks_not_read_whole(model_dir):
    """predict_examples pulls one chunk at a time: an endless input still yields its first predictions."""
    from itertools import count, islice

    from ladc.commands.predict import open_predictor, predict_examples
    from ladc.commands.predict_io import Example

    predictor = open_predictor(str(model_dir))
    pulled = []

    def endless():
        for i in count():
            pulled.append(i)
            yield Example(i, i, ("the movie was good .",))

    first = list(islice(predict_examples(predictor, endless(), batch_size=4, chunk_rows=8), 10))
    assert [row.id for row, _ in first] == list(range(10))
    assert len(pulled) == 16  # two chunks of 8, no more


def test_csv_output_and_pair_text_fields(tmp_path, model_dir):
    source = tmp_path / "in.csv"
    source.write_text('review,idx\n"good, very good .",a\nbad .,b\n')
    out = tmp_path / "out.csv"
    result = _invoke("predict", str(model_dir), "-i", str(source), "-o", str(out), "--text-fields", "review",
                     "--id-field", "idx")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["a", "b"]
    assert list(rows[0]) == ["id", "label", "prob_negative", "prob_positive"]
    for row in rows:
        p_neg, p_pos = float(row["prob_negative"]), float(row["prob_positive"])
        assert row["label"] == ("positive" if p_pos > p_neg else "negative")
    bad = _invoke("predict", str(model_dir), "-i", str(source), "-o", str(out), "--text-fields", "a,b")
    assert bad.exit_code == 2 and "sst2 needs 1 text field(s) (sentence)" in bad.output


def test_stdin_to_stdout(model_dir):
    lines = "".join(json.dumps({"sentence": s}) + "\n" for s in ["good .", "bad ."])
    result = _invoke("predict", str(model_dir), "-i", "-", "-o", "-", "--no-progress", input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["id"] for row in rows] == [0, 1] and all(row["label"] in ("negative", "positive") for row in rows)


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str, int]]:
    """name -> (file, the first bad row's `FILE line N: reason` fragment, number of bad rows)."""
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("sentence,id\ngood .,1\nbad .,2,extra\n\nfunny .,4\n")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_bytes(b'{"sentence": "good ."}\n{"sentence": "bad ."\n{"sentence": ["x"]}\n'
                      b'{"text": "fun"}\n{"sentence": "caf\xe9"}\n{"sentence": "ok ."}\n')  # fmt: skip
    return {
        "csv": (csv_file, f"{csv_file} line 3: expected 2 comma-separated columns, got 3", 1),
        "jsonl": (jsonl, f"{jsonl} line 2: invalid JSON", 4),
    }


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_bad_row_is_a_one_line_error_naming_file_and_line(tmp_path, model_dir, kind):
    source, message, _ = _bad_inputs(tmp_path)[kind]
    out = tmp_path / "out.jsonl"
    result = _invoke("predict", str(model_dir), "-i", str(source), "-o", str(out), "--no-progress")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}") and "--skip-bad" in errors[0], errors
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*")), "nothing half-written"


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_skip_bad_skips_and_reports_the_count(tmp_path, model_dir, kind):
    source, _, bad = _bad_inputs(tmp_path)[kind]
    out = tmp_path / "out.jsonl"
    result = _invoke("predict", str(model_dir), "-i", str(source), "-o", str(out), "--skip-bad", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"skipped {bad} bad row(s) of {source}" in result.stderr
    rows = _read_jsonl(out)
    assert len(rows) == 2
    if kind == "csv":
        assert [row["id"] for row in rows] == ["1", "4"]
    else:
        assert [row["id"] for row in rows] == [0, 5]  # row numbers count the skipped rows: ids stay stable


def test_each_bad_jsonl_row_names_its_reason(tmp_path):
    from ladc.commands.predict_io import BadRow, read_examples

    source, _, _ = _bad_inputs(tmp_path)["jsonl"]
    reasons = [row.reason for row in read_examples(str(source), "jsonl", ("sentence",)) if isinstance(row, BadRow)]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1:] == ["text field 'sentence' is list; expected a string", "no text field 'sentence'",
                           "text field 'sentence' is not UTF-8 (byte 0xe9); ladc reads UTF-8 only"]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("text\nhello\n", [], "missing text column 'sentence'"),
        ("", [], "has no data rows"),
        ('sentence\n"never closed\n', [], "line 2: a quoted field is never closed"),
        ("sentence\nok\n", ["--artifact", "int8"], "--artifact needs an export dir"),
        ("sentence\nok\n", ["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_unreadable_inputs_and_options_fail_in_one_line(tmp_path, model_dir, content, args, message):
    source = tmp_path / "in.csv"
    source.write_text(content)
    result = _invoke("predict", str(model_dir), "-i", str(source), "-o", str(tmp_path / "o.jsonl"), *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_target_without_a_task_asks_for_one(tmp_path, export_dir):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.onnx").write_bytes((export_dir / "model.onnx").read_bytes())
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (export_dir / name).is_file():
            (bare / name).write_bytes((export_dir / name).read_bytes())
    source = tmp_path / "in.jsonl"
    source.write_text('{"sentence": "good ."}\n')
    result = _invoke("predict", str(bare / "model.onnx"), "-i", str(source), "-o", str(tmp_path / "o.jsonl"))
    assert result.exit_code == 2 and "pass --task" in result.stderr
    result = _invoke("predict", str(bare / "model.onnx"), "-i", str(source), "-o", str(tmp_path / "o.jsonl"),
                     "--task", "sst2")  # fmt: skip
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- which artifact


def test_the_chosen_artifact_is_the_default():
    from ladc.commands.predict import choose_artifact
    from ladc.runs.export_manifest import ExportManifest

    artifacts = [{"name": "fp32", "parity": {"accepted": True}}, {"name": "int8", "parity": {"accepted": True}},
                 {"name": "fused_int8", "parity": {"accepted": False}}]  # fmt: skip
    assert (
        choose_artifact(ExportManifest.from_dict({"artifacts": artifacts, "selection": {"chosen": "int8"}}), None, "x")[
            "name"
        ]
        == "int8"
    )
    assert (
        choose_artifact(ExportManifest.from_dict({"artifacts": artifacts}), None, "x")["name"] == "fp32"
    )  # exported without --select
    assert choose_artifact(ExportManifest.from_dict({"artifacts": artifacts}), "int8", "x")["name"] == "int8"
    with pytest.raises(LadcError, match=r"no artifact 'int9' \(did you mean 'int8'\?\)"):
        choose_artifact(ExportManifest.from_dict({"artifacts": artifacts}), "int9", "x")
    with pytest.raises(LadcError, match="failed its parity check .*: fp32, int8$"):
        choose_artifact(ExportManifest.from_dict({"artifacts": artifacts}), "fused_int8", "x")


def test_export_dir_default_runs_the_chosen_artifact(tmp_path, export_dir, glue):
    """With a selection block the export dir runs what it names (here int8), reported on the summary line."""
    import shutil

    copy = tmp_path / "onnx"
    shutil.copytree(export_dir, copy)
    manifest = json.loads((copy / "export.json").read_text())
    manifest["selection"] = {"chosen": "int8"}
    (copy / "export.json").write_text(json.dumps(manifest))
    out = tmp_path / "out.jsonl"
    result = _invoke("predict", str(copy), "-i", str(glue / "SST-2" / "dev.tsv"), "-o", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "(int8, onnxruntime" in result.stdout
