"""A student narrower than its teacher, end to end on tiny random BERTs: `ladc distill --student-hidden` prunes it
from the teacher, trains LAD (or PKD) through a width projection, records its shape, and the result is a plain HF
BERT that every export backend, parity and `--select fastest` take unchanged."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ladc.commands.distill import distill
from ladc.errors import LadcError
from ladc.runs.config import DataConfig, DistillConfig, ExportConfig, OptimConfig
from tests.helpers import tiny_config, tiny_tokenizer_of, write_tiny_teacher

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, tiny_vocab_file):
    """A 4-layer teacher with 4 heads of 8 (hidden 32, FFN 64), so a 16-wide student keeps whole heads."""

    def config(num_layers=2, num_labels=2, **overrides):
        return tiny_config(num_layers, num_labels, **{"num_attention_heads": 4, **overrides})

    return write_tiny_teacher(tmp_path_factory.mktemp("narrow"), config, tiny_tokenizer_of(tiny_vocab_file))


def _config(teacher, glue, output, method="lad", **fields) -> DistillConfig:
    values = {"student_layers": 2, "student_hidden": 16, "prune_samples": 32, "projection_lr": 1e-2, "gate_lr": 1e-3}
    return DistillConfig(
        teacher=str(teacher), output=str(output), method=method,
        data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(Path(output).parent / "cache")),
        optim=OptimConfig(lr=1e-3, batch_size=16, max_steps=6, warmup_ratio=0.0, log_steps=1, eval_steps=6),
        **{**values, **fields},
    )  # fmt: skip


@pytest.fixture(scope="module")
def narrow_student(tiny_teacher) -> tuple[Path, dict]:
    teacher, glue, tmp = tiny_teacher
    metrics = distill(_config(teacher, glue, tmp / "student"))
    return tmp / "student", metrics


def test_narrow_lad_student_is_pruned_plain_hf_and_records_its_shape(narrow_student, tiny_teacher):
    from transformers import AutoModelForSequenceClassification

    student_dir, metrics = narrow_student
    student = AutoModelForSequenceClassification.from_pretrained(student_dir)  # no ladc code needed
    config = student.config
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (2, 16, 32)
    assert config.num_attention_heads == 2  # the teacher's head size 8 at width 16
    manifest = json.loads((student_dir / "ladc.json").read_text())
    assert manifest["student_init"] == "prune"  # the default for a narrower student
    assert manifest["student_shape"] == {"num_layers": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2}
    assert manifest["teacher_shape"] == {"num_layers": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4}
    assert manifest["layer_map"] == [2, 4] and "hidden" in metrics["history"][0]


def test_the_projection_is_created_trained_saved_and_not_part_of_the_model(narrow_student):
    from safetensors.torch import load_file

    student_dir, _ = narrow_student
    projection = load_file(student_dir / "projection.safetensors")
    assert sorted(projection) == ["maps.0.bias", "maps.0.weight", "maps.1.bias", "maps.1.weight"]
    assert projection["maps.0.weight"].shape == (32, 16)
    # it started as the selection of the kept channels (one 1 per column, zeros elsewhere): training moved it
    weight = projection["maps.1.weight"]
    assert not torch.all((weight == 0) | (weight == 1)) and projection["maps.1.bias"].abs().sum() > 0
    model_keys = load_file(student_dir / "model.safetensors")
    assert not any(k.startswith(("maps.", "gates.")) for k in model_keys)
    assert (student_dir / "gates.safetensors").is_file()


def test_pkd_and_random_init_take_a_narrower_student_and_layer_copy_inits_refuse(tiny_teacher):
    from safetensors.torch import load_file

    teacher, glue, tmp = tiny_teacher
    distill(_config(teacher, glue, tmp / "pkd", method="pkd"))
    projection = load_file(tmp / "pkd" / "projection.safetensors")
    assert projection["maps.0.weight"].shape == (32, 16)
    metrics = distill(_config(teacher, glue, tmp / "random", method="kd", student_init="random"))
    assert json.loads((tmp / "random" / "ladc.json").read_text())["student_init"] == "random"
    assert not (tmp / "random" / "projection.safetensors").exists()  # kd matches no hidden states
    assert metrics["dev"]
    with pytest.raises(LadcError, match="--student-init even copies whole teacher layers"):
        distill(_config(teacher, glue, tmp / "even", student_init="even"))
    assert not (tmp / "even").exists()


def test_equal_width_builds_no_projection(tiny_teacher):
    teacher, glue, tmp = tiny_teacher
    distill(_config(teacher, glue, tmp / "wide", student_hidden=None))
    manifest = json.loads((tmp / "wide" / "ladc.json").read_text())
    assert manifest["student_init"] == "teacher" and manifest["student_shape"]["hidden_size"] == 32
    assert not (tmp / "wide" / "projection.safetensors").exists()


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino/nncf not installed (pip install 'ladc[openvino]')")
def test_a_narrow_student_exports_on_every_backend_and_passes_parity(narrow_student, tiny_teacher, tiny_vocab_file):
    from ladc.deploy.export import export_onnx
    from ladc.deploy.runners import open_artifact

    student_dir, _ = narrow_student
    _, glue, tmp = tiny_teacher
    out = tmp / "onnx"
    cfg = ExportConfig(
        model=str(student_dir), output=str(out), task="sst2", data_dir=str(glue), cache_dir=str(tmp / "cache"),
        backends=("onnxruntime", "openvino", "torch"), optimize=True, quantize="dynamic", select="fastest",
        calibration_samples=24, select_iterations=2,
    )  # fmt: skip
    manifest = export_onnx(cfg)
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert {"fp32", "fused", "int8", "fused_int8", "openvino_f32", "openvino_int8", "torch_bf16"} <= set(by_name)
    assert (
        by_name["fp32"]["parity"]["max_abs_diff"] <= 1e-4 and by_name["openvino_f32"]["parity"]["max_abs_diff"] <= 1e-4
    )
    assert manifest["selection"]["chosen"] in by_name

    tokenizer = tiny_tokenizer_of(tiny_vocab_file)
    batch = dict(tokenizer(["a very charming film .", "bad"], padding=True, return_tensors="np"))
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    for name in ("fp32", "openvino_f32"):
        runner = open_artifact(out, by_name[name], threads=1)
        logits = runner.to_numpy(runner.run(runner.prepare(batch)))
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_a_fixed_projection_compares_the_kept_channels_and_trains_nothing(tiny_teacher):
    teacher, glue, tmp = tiny_teacher
    metrics = distill(_config(teacher, glue, tmp / "fixed", projection="fixed"))
    assert not (tmp / "fixed" / "projection.safetensors").exists()  # nothing trained, nothing saved
    assert metrics["history"][0]["hidden"] > 0
    with pytest.raises(
        LadcError,
        match="--projection fixed compares the channels a pruned student kept; --student-init random keeps none",
    ):
        distill(_config(teacher, glue, tmp / "fixed-random", projection="fixed", student_init="random"))
