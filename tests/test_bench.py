"""Tests of ladc/bench/bench.py and ladc/deploy/runners.py: targets, runners, timing loop, FLOPs, memory, the CLI
(errors: test_bench_errors.py)."""

from __future__ import annotations

import json
import mmap
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ladc.bench.bench import flops_per_token, run_bench
from ladc.bench.memory import PeakRss
from ladc.data.tasks import get_task
from ladc.deploy.runners import load_runner, predict_logits
from ladc.deploy.targets import resolve_baseline, resolve_targets
from ladc.engines.torch_engine import TorchRunner
from ladc.errors import LadcError
from ladc.measure import synthetic_batch, time_interleaved
from ladc.runs.config import BenchConfig, DataConfig
from tests.helpers import write_tiny_sst2

SEQ = 16  # short synthetic sequences keep the timing tests fast


def _tiny_config(num_labels: int, vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, pad_token_id=0, num_labels=num_labels,
    )  # fmt: skip


def _save_model(path: Path, tokenizer, num_labels: int = 2, seed: int = 0) -> Path:
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    BertForSequenceClassification(_tiny_config(num_labels, len(tokenizer))).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, tiny_vocab_file):
    """A tiny random 2-label BERT dir, its optimum ONNX export, a 3-label dir and a tiny SST-2 GLUE dir."""
    from optimum.exporters.onnx import main_export
    from transformers import BertTokenizerFast

    root = tmp_path_factory.mktemp("bench")
    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)
    model_dir = _save_model(root / "tiny", tokenizer)
    main_export(str(model_dir), root / "onnx", task="text-classification", opset=17, atol=1e-4)
    return SimpleNamespace(
        root=root,
        model=model_dir,
        onnx=root / "onnx" / "model.onnx",
        three_labels=_save_model(root / "three", tokenizer, num_labels=3),
        glue=write_tiny_sst2(root / "glue", train=8, dev=24),
        tokenizer=tokenizer,
    )


def _config(targets, dirs, tmp_path, **overrides) -> BenchConfig:
    values = {
        "targets": tuple(str(t) for t in targets),
        "data": DataConfig(task="sst2", data_dir=str(dirs.glue), cache_dir=str(tmp_path / "cache")),
        "output": str(tmp_path / "out"),
        "batch_sizes": (1,),
        "seq_lens": (SEQ,),
        "warmup": 1,
        "iterations": 10,
        "threads": 1,
    }
    return BenchConfig(**{**values, **overrides})


# ----------------------------------------------------------------------------- pure parts


def test_flops_per_token_hand_computed():
    from transformers import BertConfig

    config = BertConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=2, num_attention_heads=1)
    # per layer: QKV+O 4*4*4*2 = 128, FFN 2*4*8*2 = 128, attention 2*2*S*H = 2*2*3*4 = 48 -> 304; 2 layers -> 608
    assert flops_per_token(config, seq_len=3) == 608.0


def test_flops_matches_the_encoder_linear_weights():
    """Without the attention term the formula is 2 FLOPs per weight of the encoder's Linear layers."""
    from transformers import BertModel

    model = BertModel(_tiny_config(2, 100))
    linear = sum(m.weight.numel() for m in model.encoder.modules() if isinstance(m, torch.nn.Linear))
    assert flops_per_token(model.config, seq_len=0) == 2 * linear


def test_time_interleaved_runs_targets_round_robin_in_blocks():
    calls = []
    latencies = time_interleaved(
        [lambda k: calls.append(("a", k)), lambda k: calls.append(("b", k))], warmup=1, iterations=5, block=2
    )
    warm = [("a", 0), ("b", 0)]
    timed = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 2), ("b", 3), ("a", 4), ("b", 4)]
    assert calls == warm + timed
    assert [len(lat) for lat in latencies] == [5, 5]


def test_synthetic_batch_uses_real_vocabulary_ids(tiny_tokenizer):
    batch = synthetic_batch(tiny_tokenizer, batch_size=4, seq_len=SEQ, seed=3)
    ids = batch["input_ids"]
    assert ids.shape == (4, SEQ) and ids.dtype == np.int64
    assert (ids[:, 0] == tiny_tokenizer.cls_token_id).all() and (ids[:, -1] == tiny_tokenizer.sep_token_id).all()
    inner = ids[:, 1:-1]
    assert not np.isin(inner, tiny_tokenizer.all_special_ids).any() and inner.max() < len(tiny_tokenizer)
    assert batch["attention_mask"].all() and not batch["token_type_ids"].any()
    np.testing.assert_array_equal(ids, synthetic_batch(tiny_tokenizer, 4, SEQ, seed=3)["input_ids"])


def test_peak_rss_sees_a_temporary_allocation():
    # Fresh pages straight from the kernel: a 60 MB np.ones can reuse pages the allocator kept resident from an
    # earlier test (then RSS really does not grow, and CI once measured 0.0 here), an anonymous mmap cannot.
    with PeakRss() as rss:
        pages = mmap.mmap(-1, 60_000_000)
        view = np.frombuffer(pages, dtype=np.uint8)
        view.fill(1)  # touched
        del view
        pages.close()
    assert 55.0 <= rss.delta_mb < 90.0


def test_resolve_baseline():
    names = ["a/model", "b", "c"]
    assert resolve_baseline(None, names) == 0
    assert resolve_baseline("b", names) == 1
    assert resolve_baseline("2", names) == 2
    with pytest.raises(LadcError, match="did you mean 'b'"):
        resolve_baseline("bb", names)
    with pytest.raises(LadcError, match="index 0..2"):
        resolve_baseline("7", names)


# ----------------------------------------------------------------------------- targets and runners


def test_targets_from_dirs_files_and_manifest(dirs, tmp_path):
    export = tmp_path / "onnx-tiny"
    shutil.copytree(dirs.onnx.parent, export)
    manifest = {"source_model": str(dirs.model), "task": "sst2", "artifacts": [
        {"name": "model", "path": "model.onnx", "size_mb": 0.1, "precision": "fp32", "optimized": False,
         "quantized": False, "parity": {}},
    ]}  # fmt: skip
    (export / "export.json").write_text(json.dumps(manifest))
    targets = resolve_targets([str(export), str(dirs.model), str(dirs.onnx), str(dirs.onnx)], torch_bf16=True)
    names = [t.name for t in targets]
    assert names == ["onnx-tiny/model", "tiny", "tiny+bf16", "onnx/model", "onnx/model#2"]
    assert [t.engine for t in targets] == ["onnxruntime", "torch", "torch", "onnxruntime", "onnxruntime"]
    assert targets[2].precision == "bf16-autocast" and targets[3].precision == "fp32"
    assert targets[0].size_mb == pytest.approx(dirs.onnx.stat().st_size / 1e6, abs=1e-3)
    assert [t.name for t in resolve_targets([str(dirs.onnx.parent)])] == ["onnx/model"]  # optimum dir, no manifest

    manifest["artifacts"][0]["path"] = "gone.onnx"
    (export / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(LadcError, match="gone.onnx"):
        resolve_targets([str(export)])


def test_runners_agree_and_predict_logits_is_provider_agnostic(dirs):
    from ladc.data.data import load_tokenized, make_collator, make_dataloader

    task = get_task("sst2")
    onnx_runner, tokenizer, _, settings = load_runner(resolve_targets([str(dirs.onnx)])[0], task, threads=1)
    torch_runner, *_ = load_runner(resolve_targets([str(dirs.model)])[0], task)
    assert settings["providers"] == ["CPUExecutionProvider"] and settings["intra_op_threads"] == 1
    dev = load_tokenized(
        DataConfig(task="sst2", data_dir=str(dirs.glue), cache_dir=str(dirs.root / "cache")), tokenizer, "validation"
    )
    loader = make_dataloader(dev, make_collator(tokenizer, task), 8, shuffle=False)
    (onnx_logits, _), (torch_logits, _) = predict_logits(onnx_runner, loader), predict_logits(torch_runner, loader)
    assert onnx_logits.shape == (len(dev), 2)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    np.testing.assert_allclose(predict_logits(TorchRunner(torch_runner.model), loader)[0], torch_logits, atol=1e-6)


def test_bf16_runner_is_close_to_fp32(dirs):
    task = get_task("sst2")
    fp32, bf16 = (load_runner(t, task)[0] for t in resolve_targets([str(dirs.model)], torch_bf16=True))
    batch = synthetic_batch(dirs.tokenizer, 4, SEQ)
    reference, reduced = fp32(batch), bf16(batch)
    assert not np.array_equal(reference, reduced)  # autocast really ran in bf16
    np.testing.assert_allclose(reduced, reference, atol=0.05)


# ----------------------------------------------------------------------------- run_bench end to end


def test_same_onnx_twice_times_within_noise(dirs, tmp_path):
    report = run_bench(_config([dirs.onnx, dirs.onnx], dirs, tmp_path, skip_accuracy=True, iterations=30))
    first, second = report["timings"]
    assert (first["target"], second["target"]) == ("onnx/model", "onnx/model#2")
    assert first["speedup"] == 1.0 and second["speedup"] == pytest.approx(first["p50_ms"] / second["p50_ms"], rel=1e-3)
    assert "metrics" not in report["targets"][0]


def test_report_accuracy_memory_and_flops(dirs, tmp_path):
    from optimum.exporters.onnx import main_export
    from transformers import BertForSequenceClassification

    from ladc.data.data import load_tokenized
    from ladc.data.metrics import compute_metrics
    from tests.helpers import train_tiny_classifier

    # a briefly trained model that predicts both classes: a random one predicts one class everywhere, so accuracy
    # could not tell a dev order shuffled against its labels from the right one
    trained = train_tiny_classifier(_tiny_config(2, len(dirs.tokenizer)), dirs.tokenizer)
    trained.save_pretrained(tmp_path / "tiny")
    dirs.tokenizer.save_pretrained(tmp_path / "tiny")
    main_export(str(tmp_path / "tiny"), tmp_path / "onnx", task="text-classification", opset=17, atol=1e-4)
    model_dir, onnx_file = tmp_path / "tiny", tmp_path / "onnx" / "model.onnx"
    report = run_bench(_config([model_dir, onnx_file], dirs, tmp_path, real=True, peak_gflops=100.0))
    out = Path(report["output"])
    saved = json.loads((out / "bench.json").read_text())
    assert {"task", "baseline", "config", "machine", "runtime", "targets", "timings", "warnings"} <= set(saved)
    assert {"cpu", "physical_cores", "logical_cores", "ram_gb", "versions", "command", "date"} <= set(saved["machine"])
    assert saved["runtime"]["ort_graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert saved["runtime"]["ort_intra_op_threads"] == 1

    # accuracy: the same numbers as running the model by hand over the whole dev set
    dev = load_tokenized(
        DataConfig(task="sst2", data_dir=str(dirs.glue), cache_dir=str(tmp_path / "c2")), dirs.tokenizer, "validation"
    )
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        logits = torch.cat([model(input_ids=torch.tensor([row])).logits for row in dev["input_ids"]]).numpy()
    predictions = logits.argmax(-1)
    assert 0 < predictions.mean() < 1  # both classes predicted
    assert (predictions == np.asarray(dev["labels"])).mean() >= 0.75  # trained: well above chance
    expected = compute_metrics(get_task("sst2"), predictions, np.asarray(dev["labels"]))
    for target in saved["targets"]:
        assert target["metrics"] == pytest.approx(expected) and target["dev_examples"] == 24
        assert target["flops_per_token"][str(SEQ)] == flops_per_token(model.config, SEQ)

    rows = {(r["target"], r["mode"]): r for r in saved["timings"]}
    assert set(rows) == {("tiny", "synthetic"), ("tiny", "dev"), ("onnx/model", "synthetic"), ("onnx/model", "dev")}
    synthetic = rows[("onnx/model", "synthetic")]
    expected_gflops = flops_per_token(model.config, SEQ) * SEQ / (synthetic["mean_ms"] / 1000) / 1e9
    assert synthetic["gflops_per_s"] == pytest.approx(expected_gflops, rel=1e-2)
    assert synthetic["peak_fraction"] == pytest.approx(synthetic["gflops_per_s"] / 100.0, abs=1e-4)
    assert synthetic["samples_per_s"] == pytest.approx(1000.0 / synthetic["mean_ms"], rel=1e-3)
    assert len(synthetic["latencies_ms"]) == 10
    dev_row = rows[("tiny", "dev")]
    assert dev_row["mean_seq_len"] < SEQ and dev_row["iterations"] == 10  # real sentences are short

    assert (out / "bench.md").read_text().splitlines()[2].startswith("| target | precision | size MB |")
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from ladc.runs.config import from_dict, load_yaml

    assert from_dict(BenchConfig, load_yaml(out / "config.yaml"), "") == _config(
        [model_dir, onnx_file], dirs, tmp_path, real=True, peak_gflops=100.0
    )  # the run can be repeated from its own config
    with pytest.raises(LadcError, match="--overwrite"):
        run_bench(_config([model_dir], dirs, tmp_path, skip_accuracy=True))


def _export_dir_with_selection(dirs, path: Path, cpu: str, threads: int = 1) -> Path:
    """A copy of the tiny optimum export with an export.json whose selection timed `fp32` at b1_s16 (scripted ms,
    impossible to measure by chance) and dropped `fp32_copy` as identical to it."""
    shutil.copytree(dirs.onnx.parent, path)
    artifact = {"path": "model.onnx", "engine": "onnxruntime", "precision": "fp32"}
    selection = {
        "chosen": "fp32", "machine": {"cpu": cpu}, "timing": {"threads": threads},
        "dropped": [{"name": "fp32_copy", "reason": "identical to fp32 here (fp32)", "same_as": "fp32"}],
        "ranking": {"b1_s16": [{"name": "fp32", "p50_ms": 8.0, "latencies_ms": [7.0, 8.0, 9.0]}]},
    }  # fmt: skip
    manifest = {"task": "sst2", "artifacts": [{"name": "fp32", **artifact}, {"name": "fp32_copy", **artifact}],
                "selection": selection}  # fmt: skip
    (path / "export.json").write_text(json.dumps(manifest))
    return path


def test_bench_reuses_the_export_selections_timings_instead_of_timing_again(dirs, tmp_path, monkeypatch):
    import ladc.bench.bench
    from ladc.deploy.select import selection_latencies
    from ladc.runs.hardware import cpu_model

    export_dir = _export_dir_with_selection(dirs, tmp_path / "onnx-x", cpu_model())
    timed: list[int] = []  # how many targets each timing call runs: the real timer, counted

    def counting(calls, *args, **kwargs):
        timed.append(len(calls))
        return real_time_targets(calls, *args, **kwargs)

    real_time_targets = ladc.bench.bench.time_targets
    monkeypatch.setattr(ladc.bench.bench, "time_targets", counting)
    cfg = _config([dirs.model, export_dir], dirs, tmp_path, batch_sizes=(1, 2), iterations=4, skip_accuracy=True)
    report = run_bench(cfg)
    rows = {(r["target"], r["batch_size"]): r for r in report["timings"]}
    assert timed == [1, 3]  # batch 1: only the PyTorch dir; batch 2 (never selected at): all three
    for name in ("onnx-x/fp32", "onnx-x/fp32_copy"):
        row = rows[(name, 1)]
        assert (row["source"], row["selection_artifact"], row["latencies_ms"]) == ("export selection", "fp32",
                                                                                   [7.0, 8.0, 9.0])  # fmt: skip
        assert (row["p50_ms"], row["iterations"], row["samples_per_s"]) == (8.0, 3, 125.0)
        assert rows[(name, 2)]["source"] == "bench" and rows[(name, 2)]["iterations"] == 4
    assert rows[("tiny", 1)]["source"] == "bench" and rows[("tiny", 1)]["iterations"] == 4
    assert rows[("onnx-x/fp32", 1)]["speedup"] == pytest.approx(rows[("tiny", 1)]["p50_ms"] / 8.0, rel=1e-3)
    markdown = (Path(report["output"]) / "bench.md").read_text()
    assert "- not timed here (2 rows: onnx-x/fp32 b1 s16, onnx-x/fp32_copy b1 s16): rows with source" in markdown

    timed.clear()
    retimed = run_bench(_config([dirs.model, export_dir], dirs, tmp_path, batch_sizes=(1, 2), iterations=4,
                                skip_accuracy=True, retime=True, output=str(tmp_path / "retimed")))  # fmt: skip
    assert timed == [3, 3] and {row["source"] for row in retimed["timings"]} == {"bench"}
    assert retimed["runtime"]["selection_reuse"] is None

    # reused only where the selection measured what bench would: same CPU model, threads and synthetic shape
    assert selection_latencies(export_dir, "fp32", 1, 16, 1, cpu_model()) == ([7.0, 8.0, 9.0], "fp32")
    assert selection_latencies(export_dir, "fp32", 1, 16, 2, cpu_model()) is None
    assert selection_latencies(export_dir, "fp32", 1, 16, 1, "another CPU") is None
    assert selection_latencies(export_dir, "fp32", 1, 32, 1, cpu_model()) is None
    assert selection_latencies(export_dir, "int8", 1, 16, 1, cpu_model()) is None
    old = json.loads((export_dir / "export.json").read_text())
    del old["selection"]["ranking"]["b1_s16"][0]["latencies_ms"]  # export.json written before the rounds
    (export_dir / "export.json").write_text(json.dumps(old))
    assert selection_latencies(export_dir, "fp32", 1, 16, 1, cpu_model()) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and onnxruntime-gpu")
def test_cuda_provider_times_both_runtimes_on_the_gpu(dirs, tmp_path):
    report = run_bench(_config([dirs.onnx, dirs.model], dirs, tmp_path, provider="cuda"))
    onnx_target, torch_target = report["targets"]
    assert onnx_target["settings"]["providers"][0] == "CUDAExecutionProvider"
    assert onnx_target["metrics"] == pytest.approx(torch_target["metrics"])
    assert onnx_target["peak_gpu_mb"] is not None


def test_cli_writes_the_report(dirs, tmp_path):
    from typer.testing import CliRunner

    from ladc.cli import app

    args = ["bench", str(dirs.onnx), str(dirs.model), "--task", "sst2", "--data-dir", str(dirs.glue), "--output",
            str(tmp_path / "out"), "--batch-sizes", "1,2", "--seq-lens", str(SEQ), "--iterations", "3", "--warmup",
            "1", "--threads", "1", "--skip-accuracy", "--baseline", "tiny"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert saved["baseline"] == "tiny" and saved["config"]["batch_sizes"] == [1, 2]
    assert [(r["target"], r["batch_size"]) for r in saved["timings"]] == [
        ("onnx/model", 1), ("tiny", 1), ("onnx/model", 2), ("tiny", 2)
    ]  # fmt: skip
    assert "report written to" in result.stdout
