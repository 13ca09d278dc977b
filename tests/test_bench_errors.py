"""Tests of ladc/bench/bench.py's errors: targets that do not fit the task or the graph, unknown baselines and providers,
bad CLI options; each a one-line LadcError (exit code 2 from the CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tests.test_bench as bench_tests
from ladc.bench.bench import run_bench
from ladc.data.tasks import get_task
from ladc.deploy.runners import load_runner
from ladc.deploy.targets import resolve_targets
from ladc.errors import LadcError

# test_bench.py's module-scoped fixture (tiny BERT dirs, their ONNX export, a tiny SST-2 dir) and its BenchConfig builder
dirs, _config = bench_tests.dirs, bench_tests._config


# ----------------------------------------------------------------------------- errors


def _foreign_onnx(path: Path) -> Path:
    """A real ONNX graph whose input is an image tensor, not token ids."""
    import onnx
    from onnx import TensorProto, helper

    pixels = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 4])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixel_values"], ["logits"])], "foreign", [pixels], [logits]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_with_inputs_that_do_not_fit(dirs, tmp_path):
    target_dir = shutil.copytree(dirs.onnx.parent, tmp_path / "foreign")
    _foreign_onnx(target_dir / "model.onnx")
    with pytest.raises(LadcError, match="pixel_values"):
        run_bench(_config([target_dir / "model.onnx"], dirs, tmp_path, skip_accuracy=True))


def test_corrupted_onnx(dirs, tmp_path):
    target_dir = shutil.copytree(dirs.onnx.parent, tmp_path / "broken")
    (target_dir / "model.onnx").write_bytes(dirs.onnx.read_bytes()[:1000])
    with pytest.raises(LadcError, match="not a valid ONNX model"):
        run_bench(_config([target_dir / "model.onnx"], dirs, tmp_path))


def test_label_count_mismatch(dirs, tmp_path):
    with pytest.raises(LadcError, match="3 labels but task sst2 has 2"):
        run_bench(_config([dirs.three_labels], dirs, tmp_path))
    target_dir = shutil.copytree(dirs.onnx.parent, tmp_path / "three-onnx")
    config = json.loads((target_dir / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    config["label2id"] = {"a": 0, "b": 1, "c": 2}
    (target_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(LadcError, match="3 labels but task sst2 has 2"):
        run_bench(_config([target_dir / "model.onnx"], dirs, tmp_path))


def test_tokenizer_larger_than_the_model_vocabulary(dirs, tmp_path, tiny_vocab_file):
    from transformers import BertTokenizerFast

    target_dir = shutil.copytree(dirs.model, tmp_path / "other-tokenizer")
    words = tiny_vocab_file.read_text().splitlines() + [f"extra{i}" for i in range(100)]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(target_dir)
    with pytest.raises(LadcError, match="tokenizer in .* has 199 tokens but the model's vocab_size is 99"):
        load_runner(resolve_targets([str(target_dir)])[0], get_task("sst2"))


def test_missing_target_and_unknown_baseline(dirs, tmp_path):
    with pytest.raises(LadcError, match="does not exist"):
        run_bench(_config([tmp_path / "nope"], dirs, tmp_path))
    with pytest.raises(LadcError, match="--baseline 'teacher'"):
        run_bench(_config([dirs.onnx], dirs, tmp_path, baseline="teacher"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without CUDA")
def test_provider_cuda_without_cuda(dirs, tmp_path):
    with pytest.raises(LadcError, match="--provider cuda: .*use --provider cpu"):
        run_bench(_config([dirs.onnx, dirs.model], dirs, tmp_path, provider="cuda"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/dir"], "does not exist"),
        (["{three}"], "3 labels but task sst2 has 2"),
        (["{onnx}", "--baseline", "x"], "--baseline 'x'"),
        (["{onnx}", "--batch-sizes", "1,a"], "batch_sizes[1]: expected an integer"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(dirs, tmp_path, args, message):
    from typer.testing import CliRunner

    from ladc.cli import app

    args = [a.format(three=dirs.three_labels, onnx=dirs.onnx) for a in args]
    result = CliRunner().invoke(app, ["bench", *args, "--task", "sst2", "--data-dir", str(dirs.glue),
                                      "--output", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
