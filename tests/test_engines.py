"""Tests of ladc/engines/: every registered engine's record is complete and honest about this machine, and an engine
registered by a test alone (no edit outside it) is exported, parity-checked, selected, benched, profiled, reported and
served through the real code paths, on a tiny random BERT."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ladc.engines import ENGINES, get_engine
from ladc.engines.base import Artifact, BenchTarget, Engine, LoadOptions, file_model_config, size_mb
from ladc.engines.torch_engine import TorchRunner
from ladc.errors import LadcError
from ladc.runs.config import BenchConfig, DataConfig
from tests.helpers import export_config, tiny_config, tiny_tokenizer_of, write_tiny_classifier, write_tiny_sst2

# what each engine needs importable to run, and to build its artifacts
PACKAGES = {"onnxruntime": (("onnxruntime",), ("onnxruntime",)), "openvino": (("openvino",), ("openvino", "nncf")),
            "torch": (("torch", "transformers"), ("torch", "transformers"))}  # fmt: skip


def _installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


# ----------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", list(ENGINES))
def test_each_engine_record_is_complete(name):
    engine = ENGINES[name]
    assert engine.name == name and engine.label and engine.bench_kind and engine.packages
    assert engine.artifacts and all(row.engine == name for row in engine.artifacts)
    assert all(callable(hook) for hook in (engine.missing, engine.open_artifact, engine.load, engine.export_target))
    assert engine.profile is not None or engine.no_profile  # bench --profile says something for each target
    assert all(suffix.startswith(".") for suffix in engine.suffixes) and (engine.file_target is None) == (
        not engine.suffixes
    )
    built = {row.file for row in engine.artifacts if row.build is not None or row.required}
    assert all(row.file in built for row in engine.artifacts)  # a row without a builder reuses one that has one
    table = [row.name for record in ENGINES.values() for row in record.artifacts]
    assert len(table) == len(set(table))  # export.json names artifacts by row name


@pytest.mark.parametrize("name", list(ENGINES))
def test_available_says_whether_the_engine_imports_here(name):
    run, build = PACKAGES[name]
    engine = ENGINES[name]
    assert engine.available() == _installed(*run) and engine.available(build=True) == _installed(*build)
    assert (engine.missing() is None) == engine.available()


def test_a_missing_openvino_is_reported_and_refused_in_one_line(monkeypatch, tmp_path):
    """With openvino hidden from the import system, the engine says so and export refuses `--backend openvino`
    before building anything."""
    from ladc.deploy.export import _selected_config, export_onnx

    model = write_tiny_classifier(tmp_path / "model", tiny_config(), tiny_tokenizer_of(_vocab(tmp_path)))
    real_find_spec = importlib.util.find_spec
    hidden = lambda name, *args: None if name == "openvino" else real_find_spec(name, *args)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    engine = ENGINES["openvino"]
    reason = "openvino not installed; pip install 'ladc[openvino]'"
    assert not engine.available() and engine.missing() == reason
    with pytest.raises(LadcError) as caught:
        export_onnx(export_config(model, tmp_path / "o", tmp_path, backends=("onnxruntime", "openvino")))
    assert str(caught.value) == f"--backend openvino: {reason}" and not (tmp_path / "o").exists()
    if _installed("nncf"):  # under --select fastest it is left out, and export.json says why
        built, skipped = _selected_config(export_config(model, tmp_path / "o", tmp_path, select="fastest"))
        assert "openvino" not in built.backends and {"backend": "openvino", "reason": reason} in skipped


def test_get_engine_names_the_known_engines():
    assert get_engine("openvino") is ENGINES["openvino"]
    with pytest.raises(LadcError) as caught:
        get_engine("tvm")
    assert str(caught.value) == f"unknown engine 'tvm'; expected one of {', '.join(ENGINES)}"


def test_an_engine_may_not_declare_another_engines_rows():
    row = Artifact("x", "onnxruntime", "x.onnx", "fp32", None)
    with pytest.raises(ValueError, match="declares rows of another engine"):
        dataclasses.replace(ENGINES["torch"], artifacts=(row,))


# ----------------------------------------------------------------------------- a new engine, registered by a test


def _vocab(root: Path) -> Path:
    from tests.conftest import TINY_VOCAB

    path = root / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n")
    return path


def _save_state(ctx) -> dict:
    """The new engine's builder: the source model's weights, saved with torch.save (no safetensors, no graph)."""
    torch.save(ctx.model.state_dict(), ctx.build / "eager_state.pt")
    return {"format": "torch.save state_dict"}


def _state_model(path: Path):
    """The classifier rebuilt from the export dir's config.json and the saved state, fp32, eval mode."""
    from transformers import AutoModelForSequenceClassification

    from ladc.training.models import load_config

    model = AutoModelForSequenceClassification.from_config(load_config(str(path.parent)))
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _open(path: Path, entry: dict, threads, spinning, expected_inputs) -> TorchRunner:
    return TorchRunner(_state_model(path), device="cpu")


def _load(target: BenchTarget, task, tokenizer, options: LoadOptions):
    config = file_model_config(target, task, tokenizer)
    return TorchRunner(_state_model(Path(target.path)), device="cpu"), config, {"engine": "eager (state_dict)"}


def _export_target(export_dir: Path, entry: dict, path: Path, name: str) -> BenchTarget:
    return BenchTarget(name, "eager", str(path), str(export_dir), entry["precision"], size_mb([path]))


def _profile(target, runner, feed, threads, graph_level, runs):
    """torch.profiler's CPU events of `runs` inferences: (op name, self µs) per event."""
    from torch.profiler import ProfilerActivity, profile

    prepared = runner.prepare(feed)
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        for _ in range(runs):
            runner.run(prepared)
    return [(event.name, float(event.self_cpu_time_total)) for event in recorded.events()]


EAGER = Engine(
    name="eager",
    label="PyTorch eager",
    artifacts=(Artifact("eager_fp32", "eager", "eager_state.pt", "fp32", _save_state),),
    missing=lambda build=False: None,
    open_artifact=_open,
    load=_load,
    export_target=_export_target,
    profile=_profile,
    packages=("torch",),
)


@pytest.fixture
def eager_engine(monkeypatch):
    """The new engine in the registry, for one test; OpenVINO left out (its NNCF calibration would only add time)."""
    monkeypatch.delitem(ENGINES, "openvino", raising=False)
    monkeypatch.setitem(ENGINES, "eager", EAGER)
    return EAGER


def test_a_new_engine_is_exported_checked_selected_benched_and_reported(tmp_path, eager_engine):
    from ladc.bench.bench import run_bench
    from ladc.bench.compression import write_compression_report
    from ladc.commands.predict import open_predictor
    from ladc.deploy.export import export_onnx

    tokenizer = tiny_tokenizer_of(_vocab(tmp_path))
    config = tiny_config(id2label={0: "negative", 1: "positive"})
    run, glue = tmp_path / "run", write_tiny_sst2(tmp_path / "glue", train=32, dev=24)
    for stage, seed in (("teacher", 1), ("student", 2)):
        write_tiny_classifier(run / stage, config, tokenizer, {"task": "sst2"}, seed=seed)

    manifest = export_onnx(export_config(run / "student", run / "onnx", glue, select="fastest"))
    assert manifest["backends"][0] == "onnxruntime" and manifest["backends"][-1] == "eager"
    entry = next(a for a in manifest["artifacts"] if a["name"] == "eager_fp32")
    assert (entry["engine"], entry["path"], entry["format"]) == ("eager", "eager_state.pt", "torch.save state_dict")
    assert entry["size_mb"] == round((run / "onnx" / "eager_state.pt").stat().st_size / 2**20, 3)
    # the same fp32 weights in the same PyTorch: parity's reference, exactly
    assert entry["parity"]["max_abs_diff"] == 0.0 and entry["parity"]["accepted"]
    selection = manifest["selection"]
    assert "eager_fp32" in selection["geomean_slowdown"] and all(
        "eager_fp32" in [row["name"] for row in rows] for rows in selection["ranking"].values()
    )

    data = DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(glue / "cache"))
    targets = tuple(str(run / stage) for stage in ("teacher", "student", "onnx"))
    report = run_bench(BenchConfig(targets=targets, data=data, output=str(run / "bench"), batch_sizes=(1, 32),
                                   seq_lens=(16,), warmup=1, iterations=2, threads=1, profile=True))  # fmt: skip
    by_name = {target["name"]: target for target in report["targets"]}
    eager = by_name["onnx/eager_fp32"]
    assert (eager["kind"], eager["settings"]["engine"], eager["precision"]) == ("eager", "eager (state_dict)", "fp32")
    assert eager["metrics"] == by_name["student"]["metrics"]  # the student's own weights, run another way
    assert eager["profile"]["engine"] == "eager" and eager["profile"]["top_ops"][0]["ms_per_run"] > 0
    assert {row["batch_size"] for row in report["timings"] if row["target"] == "onnx/eager_fp32"} == {1, 32}
    bench_md = (run / "bench" / "bench.md").read_text()
    assert "| onnx/eager_fp32 |" in bench_md and "- profile onnx/eager_fp32 (eager, batch x seq [1, 16])" in bench_md

    markdown = write_compression_report(run)
    assert "| student PyTorch eager eager_fp32 (fp32) |" in markdown
    rows = {row["artifact"]: row for row in json.loads((run / "report.json").read_text())["rows"]}
    assert rows["student PyTorch eager eager_fp32 (fp32)"]["metric"] == rows["student (PyTorch fp32)"]["metric"]

    predictor = open_predictor(str(run / "onnx"), artifact="eager_fp32")
    texts = [("the film was good .",), ("the car was very boring .",)]
    expected = TorchRunner(_state_model(run / "onnx" / "eager_state.pt"), device="cpu")(
        dict(tokenizer([t for (t,) in texts], padding=True, return_tensors="np"))
    )
    np.testing.assert_allclose(predictor.logits(texts, batch_size=2), expected, atol=1e-5)
    assert predictor.info["engine"] == "eager (state_dict)"
