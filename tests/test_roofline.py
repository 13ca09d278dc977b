"""Tests for ladc/bench/roofline.py and ladc/bench/profiling.py (`ladc bench --roofline --profile`) on a tiny random BERT."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from ladc.runs.config import BenchConfig, DataConfig
from tests.helpers import write_tiny_sst2


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_vocab_file):
    """A tiny random 2-label BERT, its optimum ONNX export and a tiny SST-2 dir."""
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    root = tmp_path_factory.mktemp("roofline")
    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    main_export(str(root / "tiny"), root / "onnx", task="text-classification", opset=17, atol=1e-4)
    return SimpleNamespace(root=root, model=root / "tiny", onnx=root / "onnx" / "model.onnx", config=config,
                           glue=write_tiny_sst2(root / "glue", train=8, dev=16), tokenizer=tokenizer)  # fmt: skip


def test_gemm_shapes_are_one_bert_layer():
    from ladc.bench.roofline import gemm_shapes

    config = SimpleNamespace(hidden_size=384, intermediate_size=1536)
    assert gemm_shapes(config, 32, 128) == [(4096, 384, 384)] * 4 + [(4096, 384, 1536), (4096, 1536, 384)]


def test_roof_key_maps_each_precision_to_its_roof():
    from ladc.bench.roofline import roof_key

    assert [roof_key(p, {}) for p in ("fp32", "int8", "bf16", "bf16-autocast", "fp16")] == [
        "fp32", "int8", "bf16", "bf16", None]  # fmt: skip
    assert roof_key("auto", {"inference_precision": "bf16"}) == "bf16"  # OpenVINO's choice decides


def test_measure_roofs_gives_positive_rates(exported):
    from ladc.bench.roofline import measure_roofs

    roofs = measure_roofs(exported.config, batch_size=2, seq_len=8, threads=1, repeats=1)
    assert all(roofs[key] > 0 for key in ("fp32", "bf16", "int8"))
    assert roofs["shapes"] == [[16, 32, 32], [16, 32, 64], [16, 64, 32]] and roofs["threads"] == 1


def test_summarise_ops_groups_sorts_and_folds_the_tail():
    from ladc.bench.profiling import summarise_ops

    samples = [("MatMul", 300.0), ("MatMul", 100.0), ("Add", 50.0), ("Softmax", 30.0), ("Gelu", 20.0)]
    rows = summarise_ops(samples, runs=2, top=2)
    assert [row["op"] for row in rows] == ["MatMul", "Add", "other"]
    assert rows[0] == {"op": "MatMul", "ms_per_run": 0.2, "share": 0.8, "calls_per_run": 1.0}
    assert rows[2]["ms_per_run"] == pytest.approx(0.025) and rows[2]["share"] == pytest.approx(0.1)


def test_bench_roofline_and_profile_end_to_end(exported, tmp_path):
    from ladc.bench.bench import run_bench

    targets = [str(exported.model), str(exported.onnx)]
    if importlib.util.find_spec("openvino") is not None:
        targets.append(f"openvino:{exported.onnx}")
    cfg = BenchConfig(targets=tuple(targets), data=DataConfig(task="sst2", data_dir=str(exported.glue),
                      cache_dir=str(tmp_path / "cache")), output=str(tmp_path / "out"), batch_sizes=(2,),
                      seq_lens=(8,), warmup=1, iterations=3, threads=1, roofline=True, profile=True,
                      skip_accuracy=True)  # fmt: skip
    report = run_bench(cfg)
    roofs = report["roofline"]
    assert roofs["batch_size"] == 2 and roofs["seq_len"] == 8
    settings = {t["name"]: t["settings"] for t in report["targets"]}
    for row in report["timings"]:
        # PyTorch and ORT compute in fp32; OpenVINO in what its plugin chose on this CPU (bf16 with native bf16)
        expected = settings[row["target"]].get("inference_precision", "fp32")
        assert expected in ("fp32", "bf16") and row["roof"] == expected
        assert row["roof_fraction"] == pytest.approx(row["gflops_per_s"] / roofs[expected], rel=1e-3, abs=1e-4)
    profiles = {t["name"]: t["profile"] for t in report["targets"]}
    assert "skipped" in profiles["tiny"]
    onnx_ops = {row["op"] for row in profiles["onnx/model"]["top_ops"]}
    assert "MatMul" in onnx_ops and profiles["onnx/model"]["shape"] == [1, 8]
    assert sum(row["share"] for row in profiles["onnx/model"]["top_ops"]) == pytest.approx(1.0, abs=0.01)
    if len(targets) == 3:
        assert profiles["onnx/model@openvino"]["engine"] == "openvino" and profiles["onnx/model@openvino"]["top_ops"]
    assert "roofline (this machine" in (tmp_path / "out" / "bench.md").read_text()
