"""Tests for ladc/runs/card.py: the model cards a real tiny tune-teacher -> distill -> export writes, parsed back with
huggingface_hub's own card parser, every figure checked against metrics.json / export.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from ladc.runs.card import metric
from ladc.runs.config import DataConfig, DistillConfig, ExportConfig, OptimConfig, TuneTeacherConfig
from tests.helpers import write_tiny_base_model, write_tiny_sst2

BASE_CARD = "---\nlicense: mit\nlanguage: en\n---\n# tiny base\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vocab_file) -> dict[str, Path]:
    """A real teacher, its 2-layer LAD student and the student's export (with --select fastest), all tiny."""
    from transformers import BertConfig, BertTokenizerFast

    from ladc.commands.distill import distill
    from ladc.commands.teacher import tune_teacher
    from ladc.deploy.export import export_onnx

    root = tmp_path_factory.mktemp("card")
    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)  # fmt: skip
    base = write_tiny_base_model(root / "base", config, tokenizer)
    (base / "README.md").write_text(BASE_CARD)  # the source model's own card: its license must carry over
    glue = write_tiny_sst2(root / "glue", train=48, dev=24)
    data = DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(root / "cache"))
    optim = OptimConfig(lr=1e-3, batch_size=16, max_steps=4, eval_steps=2, warmup_ratio=0.0, log_steps=1)
    tune_teacher(TuneTeacherConfig(model=str(base), output=str(root / "teacher"), data=data, optim=optim))
    distill(DistillConfig(teacher=str(root / "teacher"), output=str(root / "student"), student_layers=2, data=data,
                          optim=optim))  # fmt: skip
    export_onnx(ExportConfig(model=str(root / "student"), output=str(root / "onnx"), data_dir=str(glue),
                             cache_dir=str(root / "cache"), quantize="dynamic", backends=("onnxruntime",),
                             select="fastest", select_iterations=2, threads=1))  # fmt: skip
    return {"base": base, "teacher": root / "teacher", "student": root / "student", "onnx": root / "onnx"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _table_row(card: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row whose first cell is `first_cell`."""
    for line in card.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in the card")


def _index_value(card: ModelCard) -> tuple[str, float]:
    (result,) = card.data.eval_results
    return result.metric_type, result.metric_value


def test_teacher_card_metadata_and_figures_equal_metrics_json(runs):
    teacher = runs["teacher"]
    card = ModelCard.load(teacher / "README.md")
    metrics = _json(teacher / "metrics.json")
    assert card.data.base_model == str(runs["base"]) and card.data.license == "mit"
    assert card.data.library_name == "transformers" and card.data.datasets == ["nyu-mll/glue"]
    assert "text-classification" in card.data.tags and "distillation" not in card.data.tags
    assert card.data.metrics == ["accuracy"]
    assert _index_value(card) == ("accuracy", metrics["dev"]["accuracy"])  # exact, not rounded
    assert _table_row(card.text, "kept checkpoint")[1] == metric(metrics["dev"]["accuracy"])
    assert _table_row(card.text, "last checkpoint")[1] == metric(metrics["dev_last"]["accuracy"])
    assert _table_row(card.text, "train examples")[1] == str(metrics["train_examples"])
    assert _table_row(card.text, "learning rate")[1] == f"{metrics['lr']} (given)"
    assert f"**{metrics['selection']['on']}** ({metrics['selection']['examples']} held-out" in card.text
    assert (teacher / "config.yaml").read_text().strip() in card.text  # the config that made it, verbatim
    assert "AutoModelForSequenceClassification.from_pretrained" in card.text


def test_student_card_names_the_teacher_and_its_retention(runs):
    student = runs["student"]
    card = ModelCard.load(student / "README.md")
    metrics, manifest = _json(student / "metrics.json"), _json(student / "ladc.json")
    teacher_metrics = _json(runs["teacher"] / "metrics.json")
    assert card.data.base_model == str(runs["teacher"]) and card.data.license == "mit"
    assert {"text-classification", "distillation", "lad"} <= set(card.data.tags)
    assert _index_value(card) == ("accuracy", metrics["dev"]["accuracy"])
    assert _table_row(card.text, "teacher")[1] == metric(teacher_metrics["dev"]["accuracy"])
    assert _table_row(card.text, "kept checkpoint")[1] == metric(metrics["dev"]["accuracy"])
    assert _table_row(card.text, "layer map")[1] == str(manifest["layer_map"])
    assert _table_row(card.text, "mu")[1] == str(manifest["config"]["mu"])
    if metrics["retention"] is not None:
        assert f"keeps {metrics['retention']:.2%} of the teacher's accuracy" in card.text


def test_export_card_tables_equal_export_json(runs):
    export = runs["onnx"]
    card = ModelCard.load(export / "README.md")
    manifest = _json(export / "export.json")
    chosen = manifest["selection"]["chosen"]
    entries = {entry["name"]: entry for entry in manifest["artifacts"]}
    assert card.data.library_name == "onnx" and card.data.license == "mit"
    assert {"onnx", "int8", "distillation", "lad"} <= set(card.data.tags)
    assert ("openvino" in card.data.tags) == any(entry["engine"] == "openvino" for entry in entries.values())
    assert card.data.base_model == manifest["source_model"]
    assert _index_value(card) == ("accuracy", entries[chosen]["parity"]["metrics"]["accuracy"])
    assert f"**{chosen}**" in card.text
    for name, entry in entries.items():
        parity = entry["parity"]
        row = _table_row(card.text, f"`{name}`")
        precision = entry["precision"] + (f": {entry['inference_precision']}" if "inference_precision" in entry else "")
        assert row[1:5] == [f"`{entry['path']}`", entry["engine"], precision, str(entry["size_mb"])]
        assert row[5] == metric(parity["metrics"]["accuracy"])
        assert float(row[6]) == pytest.approx(parity["label_agreement_pct"], abs=0.005)
        assert float(row[7]) == pytest.approx(parity["max_abs_diff"], rel=1e-2, abs=1e-12)
        assert row[8] == ("passed" if parity["accepted"] else f"failed ({parity['reason']})")
    shapes = list(manifest["selection"]["ranking"])
    for name, score in manifest["selection"]["geomean_slowdown"].items():
        # the latency table is the second table with a row per artifact: read it after its heading
        latency = card.text[card.text.index("## Latency") :]
        cells = _table_row(latency, f"`{name}`")
        expected = [str(next(r["p50_ms"] for r in manifest["selection"]["ranking"][s] if r["name"] == name))
                    for s in shapes]  # fmt: skip
        assert cells[1:] == [*expected, str(score)]
    assert manifest["selection"]["machine"]["cpu"] in card.text
    assert re.search(r'file_name="model_int8\.onnx"', card.text)


def test_verify_rewrites_the_export_card(runs, tmp_path):
    import shutil

    from ladc.deploy.export import verify_export

    copy = tmp_path / "onnx-copy"
    shutil.copytree(runs["onnx"], copy)
    (copy / "README.md").unlink()
    verify_export(copy)
    card = ModelCard.load(copy / "README.md")
    assert card.data.eval_results and "# onnx-copy" in card.text
