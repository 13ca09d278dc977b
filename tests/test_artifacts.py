"""Tests for ladc/deploy/artifacts.py (the table every engine's rows make up) and every engine end to end on a tiny
trained BERT (real optimum, onnxruntime, OpenVINO and NNCF): its artifacts, their parity, `--select fastest` over
all of them, and bench on the export dir."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import tests.test_export as export_tests
from ladc.errors import LadcError
from ladc.runs.config import BenchConfig, DataConfig, ExportConfig
from tests.helpers import add_artifact_row, export_config

# the same module-scoped fixtures as test_export.py: a tiny SST-2 dir and a tiny BERT trained on it
tiny_data, tiny_model = export_tests.tiny_data, export_tests.tiny_model

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="openvino/nncf not installed (pip install 'ladc[openvino]'; .ci/run installs it)"
)


def _torch_logits(model_dir: Path, batch: dict) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()


@pytest.fixture(scope="module")
def every_backend(tmp_path_factory, tiny_model, tiny_data) -> tuple[Path, dict]:
    """One export with every backend and precision this machine has, and the fastest ranked."""
    from ladc.deploy.export import export_onnx

    if not HAS_OPENVINO:
        pytest.skip("openvino/nncf not installed (pip install 'ladc[openvino]'; .ci/run installs it)")
    out = tmp_path_factory.mktemp("export") / "all"
    cfg = export_config(tiny_model, out, tiny_data, backends=("onnxruntime", "openvino", "torch"), optimize=True,
                        quantize="dynamic", select="fastest", calibration_samples=24)  # fmt: skip
    return out, export_onnx(cfg)


# ----------------------------------------------------------------------------- the artifact table


def test_wanted_artifacts_follow_backends_and_flags():
    from ladc.deploy.artifacts import wanted_artifacts

    names = lambda **kw: [row.name for row in wanted_artifacts(ExportConfig(**kw))]  # noqa: E731
    assert names() == ["fp32"]
    assert names(optimize=True, quantize="dynamic") == ["fp32", "fused", "int8", "fused_int8"]
    assert names(backends=("openvino",)) == ["fp32", "openvino", "openvino_f32", "openvino_int8"]
    assert names(backends=("torch",)) == ["fp32", "torch_bf16"]


def test_a_new_artifact_row_needs_no_edit_of_export_parity_or_bench(tmp_path, tiny_model, tiny_data, monkeypatch):
    """A dummy builder (a copy of model.onnx with another name) added to the table is built, parity-checked and
    benchmarked with no other change."""
    from ladc.bench.bench import run_bench
    from ladc.deploy.export import export_onnx
    from ladc.engines.base import Artifact

    def build_copy(ctx) -> dict:
        shutil.copy(ctx.build / "model.onnx", ctx.build / "model_copy.onnx")
        return {"note": "copied"}

    add_artifact_row(monkeypatch, Artifact("copy", "onnxruntime", "model_copy.onnx", "fp32", build_copy))
    out = tmp_path / "onnx"
    manifest = export_onnx(export_config(tiny_model, out, tiny_data))
    copy = next(a for a in manifest["artifacts"] if a["name"] == "copy")
    assert copy["note"] == "copied" and copy["parity"]["within_tolerance"] and copy["parity"]["max_abs_diff"] <= 1e-4
    report = run_bench(BenchConfig(targets=(str(out),), data=DataConfig(task="sst2", data_dir=str(tiny_data),
                       cache_dir=str(tiny_data / "cache")), output=str(tmp_path / "bench"), batch_sizes=(1,),
                       seq_lens=(16,), warmup=1, iterations=2, skip_accuracy=True))  # fmt: skip
    assert [t["name"] for t in report["targets"]] == ["onnx/fp32", "onnx/copy"]


# ----------------------------------------------------------------------------- every backend, end to end


def test_export_config_errors_are_one_line(tmp_path, tiny_model, tiny_data):
    from ladc.deploy.export import export_onnx

    with pytest.raises(LadcError, match="--select 'slowest' is not supported"):
        export_onnx(export_config(tiny_model, tmp_path / "o", tiny_data, select="slowest"))
    with pytest.raises(LadcError, match="--backend 'onnxruntime,tvm'"):
        export_onnx(export_config(tiny_model, tmp_path / "o", tiny_data, backends=("onnxruntime", "tvm")))
    assert not (tmp_path / "o").exists()


@needs_openvino
def test_openvino_and_torch_artifacts_match_pytorch(every_backend, tiny_model, tiny_tokenizer):
    out, manifest = every_backend
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert {"openvino", "openvino_f32", "openvino_int8", "torch_bf16", "fused_int8"} <= set(by_name)
    # the layout optimum-intel's OVModelForSequenceClassification and OpenVINO's own tools read
    for name in ("openvino_model.xml", "openvino_model.bin", "openvino_model_int8.xml", "config.json"):
        assert (out / name).is_file(), name
    assert by_name["openvino_f32"]["parity"]["max_abs_diff"] <= 1e-4  # fp32 bound, like the ONNX graphs
    assert by_name["openvino"]["inference_precision"] in ("fp32", "bf16", "fp16")
    assert by_name["openvino_int8"]["quantization"]["calibration_samples"] == 24
    assert by_name["torch_bf16"]["engine"] == "torch" and (out / "model.safetensors").is_file()
    for entry in by_name.values():
        assert entry["parity"]["examples"] == 48

    from ladc.deploy.runners import open_artifact

    batch = dict(tiny_tokenizer(["the film was very charming .", "bad"], padding=True, return_tensors="np"))
    expected = _torch_logits(tiny_model, batch)
    ov_f32 = open_artifact(out, by_name["openvino_f32"], threads=1)
    assert ov_f32.inference_precision == "fp32"
    np.testing.assert_allclose(ov_f32(batch), expected, atol=1e-4)
    bf16 = open_artifact(out, by_name["torch_bf16"])(batch)
    assert not np.array_equal(bf16, expected) and (bf16.argmax(-1) == expected.argmax(-1)).all()


@needs_openvino
def test_select_fastest_ranks_every_passing_artifact(every_backend):
    out, manifest = every_backend
    selection = json.loads((out / "export.json").read_text())["selection"]
    accepted = {a["name"] for a in manifest["artifacts"] if a["parity"]["accepted"] and
                a["provider"] == "CPUExecutionProvider"}  # fmt: skip
    ranked = set(selection["geomean_slowdown"])
    identical = {d["name"] for d in selection["dropped"] if d["reason"].startswith("identical")}
    assert ranked == accepted - identical and selection["chosen"] in ranked
    assert list(selection["ranking"]) == ["b1_s128", "b32_s128", "dev_b1", "dev_b32"]
    for shape, rows in selection["ranking"].items():
        assert [r["p50_ms"] for r in rows] == sorted(r["p50_ms"] for r in rows)
        assert selection["fastest"][shape] == rows[0]["name"] and all(r["runs"] >= 3 for r in rows)
    scores, intervals = selection["geomean_slowdown"], selection["geomean_slowdown_interval"]
    leader = selection["fastest_overall"]
    assert scores[leader] == min(scores.values()) and all(r["rounds"] >= 3 for rows in selection["ranking"].values()
                                                          for r in rows)  # fmt: skip
    low, high = intervals[leader]
    tied = [name for name in scores if name != leader and intervals[name][0] <= high and low <= intervals[name][1]]
    assert selection["chosen"] in [leader, *tied] and selection["reason"].startswith(selection["chosen"] + ":")
    assert sorted(selection["near_ties"]) == sorted(n for n in [leader, *tied] if n != selection["chosen"])
    assert all(name in selection["reason"] for name in tied)
    assert selection["timing"]["isolation"] == "interleaved" and "cpu_flags" in selection["machine"]
    assert (out / selection["chosen_path"]).is_file()


@needs_openvino
def test_bench_times_openvino_and_torch_artifacts_of_an_export_dir(every_backend, tiny_data, tmp_path):
    from ladc.bench.bench import run_bench

    out, _ = every_backend
    cfg = BenchConfig(targets=(str(out),), data=DataConfig(task="sst2", data_dir=str(tiny_data),
                      cache_dir=str(tiny_data / "cache")), output=str(tmp_path / "bench"), batch_sizes=(2,),
                      seq_lens=(16,), warmup=1, iterations=2)  # fmt: skip
    report = run_bench(cfg)
    kinds = {t["name"].split("/")[1]: t for t in report["targets"]}
    assert kinds["openvino_f32"]["settings"]["inference_precision"] == "fp32"
    assert kinds["torch_bf16"]["precision"] == "bf16-autocast"
    assert report["runtime"]["isolation"]["mode"] == "isolated"
    reference = kinds["fp32"]["metrics"]["accuracy"]
    assert kinds["openvino_f32"]["metrics"]["accuracy"] == reference
    interleaved = run_bench(dataclasses.replace(cfg, isolation="interleaved", output=str(tmp_path / "b2"),
                                                skip_accuracy=True))  # fmt: skip
    onnx_settings = next(t for t in interleaved["targets"] if t["name"].endswith("/fp32"))["settings"]
    assert onnx_settings["intra_op_spinning"] is False


def test_openvino_prefix_targets_and_isolation_option_errors(tmp_path):
    from ladc.bench.bench import run_bench
    from ladc.deploy.targets import resolve_targets

    with pytest.raises(LadcError, match="expected openvino:FILE with an existing .onnx or .xml file"):
        resolve_targets([f"openvino:{tmp_path / 'missing.onnx'}"])
    (tmp_path / "model.onnx").write_bytes(b"not a graph")
    (target,) = resolve_targets([f"openvino:{tmp_path / 'model.onnx'}"])
    assert (target.engine, target.precision, target.name) == ("openvino", "auto", f"{tmp_path.name}/model@openvino")
    with pytest.raises(LadcError, match="--isolation 'parallel' is not one of: isolated, interleaved"):
        run_bench(BenchConfig(targets=(str(tmp_path / "model.onnx"),), isolation="parallel"))


def test_bench_infers_the_task_from_the_targets_manifests(tmp_path):
    from ladc.deploy.targets import infer_task

    qnli, sst2, bare = tmp_path / "onnx-qnli", tmp_path / "student-sst2", tmp_path / "bare"
    for folder in (qnli, sst2, bare):
        folder.mkdir()
    (qnli / "export.json").write_text(json.dumps({"task": "qnli", "artifacts": []}))
    (sst2 / "ladc.json").write_text(json.dumps({"task": "sst2"}))
    assert infer_task([str(qnli), f"openvino:{qnli / 'model.onnx'}", str(bare)]) == "qnli"
    assert infer_task([str(bare)]) is None
    with pytest.raises(LadcError, match="different tasks .*onnx-qnli: qnli.*student-sst2: sst2.*pass --task"):
        infer_task([str(qnli), str(sst2)])
