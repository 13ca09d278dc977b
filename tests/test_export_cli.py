"""Tests for `ladc export` (ladc/deploy/export.py through the CLI): bad options and model dirs, the default output dir,
and the task and data dir taken from the run's ladc.json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import tests.test_export as export_tests
from ladc.errors import LadcError
from ladc.runs.config import ExportConfig

# the same module-scoped fixtures as test_export.py: a tiny SST-2 dir and a tiny BERT trained on it
tiny_data, tiny_model = export_tests.tiny_data, export_tests.tiny_model


def test_task_and_data_dir_default_from_ladc_json(tmp_path, tiny_model, tiny_data):
    import shutil

    from ladc.deploy.export import export_onnx

    model = tmp_path / "run"
    shutil.copytree(tiny_model, model)
    out = tmp_path / "onnx"
    with pytest.raises(LadcError, match="pass --task"):
        export_onnx(ExportConfig(model=str(model), output=str(out), cache_dir=str(tmp_path / "cache")))
    (model / "ladc.json").write_text(json.dumps({"task": "sst2", "data": {"task": "sst2", "data_dir": str(tiny_data)}}))
    manifest = export_onnx(ExportConfig(model=str(model), output=str(out), cache_dir=str(tmp_path / "cache")))
    assert manifest["task"] == "sst2" and manifest["parity_set"]["data_dir"] == str(tiny_data)


def _run_cli(*args: str):
    from ladc.cli import app

    return CliRunner().invoke(app, ["export", *args])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--opset", "13"], "--opset 13 is not supported"),
        (["--opset", "21"], "--opset 21 is not supported"),
        (["--fp16"], "--fp16 needs a CUDA GPU"),
        (["--device", "cuda"], "--device cuda needs a CUDA GPU"),
        (["--quantize", "static"], "--quantize 'static' is not supported"),
        (["--keep-head-fp32"], "need --quantize dynamic"),
        (["--parity-samples", "0"], "--parity-samples must be positive"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(tmp_path, tiny_model, tiny_data, extra, message):
    result = _run_cli(str(tiny_model), "--onnx", "-o", str(tmp_path / "o"), "--task", "sst2", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_cli_bad_model_dirs_exit_2(tmp_path, tiny_vocab_file):
    from transformers import BertConfig, BertModel

    result = _run_cli(str(tmp_path / "nope"), "--onnx", "-o", str(tmp_path / "o"), "--task", "sst2")
    assert result.exit_code == 2 and "model dir" in result.output and "does not exist" in result.output
    encoder = tmp_path / "encoder"
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(encoder)
    result = _run_cli(str(encoder), "--onnx", "-o", str(tmp_path / "o"), "--task", "sst2")
    assert result.exit_code == 2 and "is not a sequence classifier" in result.output
    assert result.output.count("\n") == 1
    result = _run_cli(str(encoder), "-o", str(tmp_path / "o"), "--task", "sst2")  # --onnx is implied
    assert result.exit_code == 2 and "is not a sequence classifier" in result.output
    result = _run_cli(str(encoder), "-o", str(tmp_path / "o"), "--backend", "tensorrt")
    assert result.exit_code == 2 and "--backend 'tensorrt'" in result.output and "openvino" in result.output


def test_cli_export_writes_the_output_dir(tmp_path, tiny_model, tiny_data):
    out = tmp_path / "onnx"
    result = _run_cli(
        str(tiny_model), "--onnx", "--optimize", "--quantize", "dynamic", "--per-channel", "--output", str(out),
        "--task", "sst2", "--data-dir", str(tiny_data), "--parity-samples", "16", "--exclude-nodes", "*classifier*",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["config"]["per_channel"] is True and manifest["parity_set"]["examples"] == 16
    assert manifest["config"]["exclude_nodes"] == ["*classifier*"]
    assert "ONNX parity vs PyTorch fp32" in result.output
    again = _run_cli(str(tiny_model), "--onnx", "--output", str(out), "--task", "sst2")
    assert again.exit_code == 2 and "already exists" in again.output


def test_cli_default_output_is_a_sibling_of_the_model_dir(tmp_path, tiny_model, tiny_data):
    import shutil

    model = shutil.copytree(tiny_model, tmp_path / "student")
    result = _run_cli(str(model), "--onnx", "--task", "sst2", "--data-dir", str(tiny_data), "--parity-samples", "8")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "onnx-student" / "export.json").read_text())["artifacts"][0]["name"] == "fp32"
