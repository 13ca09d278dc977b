"""Tests of ladc/deploy/parity.py (figures, verdicts, the parity set, run_parity) and of the artifact table's promise: a new
row with its own builder and precision is built by export, checked by parity and listed by the compression report
with no edit of export, runners, parity or compression."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import tests.test_export as export_tests
from ladc.data.tasks import get_task
from ladc.deploy.artifacts import TOLERANCES, tolerance_of
from ladc.deploy.parity import judge, load_parity_set, parity_figures, print_parity_table, raise_on_failure, run_parity
from ladc.engines.base import Artifact, Tolerance
from ladc.errors import LadcError
from ladc.runs.config import BenchConfig, DataConfig, ExportConfig
from ladc.runs.export_manifest import ExportManifest
from tests.helpers import add_artifact_row

# module-scoped: a tiny SST-2 dir (48 dev rows) and a tiny BERT trained on it
tiny_data, tiny_model = export_tests.tiny_data, export_tests.tiny_model

# hand-computed case: 4 examples, 2 classes
REFERENCE = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.5, 0.0]], dtype=np.float32)
CANDIDATE = np.array([[2.0, 0.5], [0.0, 1.0], [1.0, 2.0], [0.0, 0.5]], dtype=np.float32)  # last one flips
LABELS = np.array([0, 1, 1, 1])


def test_parity_figures_by_hand():
    figures = parity_figures(get_task("sst2"), REFERENCE, CANDIDATE, LABELS)
    # |Δ| = [0, .5], [0, 0], [0, 1], [.5, .5] -> max 1, mean 2.5 / 8
    assert figures["max_abs_diff"] == pytest.approx(1.0) and figures["mean_abs_diff"] == pytest.approx(2.5 / 8)
    assert figures["label_agreement_pct"] == pytest.approx(75.0)
    # PyTorch predicts 0,1,1,0 (accuracy 0.75); the candidate 0,1,1,1 (accuracy 1.0): a drop of -25 points
    assert figures["metrics"] == {"accuracy": 1.0} and figures["metric_drop_points"] == pytest.approx(-25.0)
    assert figures["examples"] == 4 and figures["headline_metric"] == "accuracy"
    # a drop that is not a whole number of points is kept to 4 decimals: PyTorch 1/3 right, the candidate 2/3
    third = parity_figures(get_task("sst2"), REFERENCE[:3], CANDIDATE[:3] * [[1, 1], [1, -1], [1, 1]], LABELS[:3] * 0)
    assert third["metric_drop_points"] == -33.3333


def test_parity_figures_for_regression_have_no_agreement():
    reference = np.array([[1.0], [2.0], [3.0]])
    figures = parity_figures(get_task("stsb"), reference, reference + 0.25, np.array([1.0, 2.0, 3.0]))
    assert figures["label_agreement_pct"] is None and figures["max_abs_diff"] == pytest.approx(0.25)
    assert figures["metric_drop_points"] == pytest.approx(0.0)  # a constant shift keeps both correlations


def test_nan_or_inf_logits_fail_parity_at_every_precision_and_under_allow_drop():
    """A comparison with NaN is false: without an explicit check an int8 artifact with NaN logits had a NaN drop,
    which passed "drop > 1", and agreement alone does not see a NaN that argmax maps to class 0."""
    candidate = CANDIDATE.copy()
    candidate[3, 1] = np.nan  # argmax of [0.0, nan] is 1: the label still "agrees" with the hand-made candidate
    candidate[2, 0] = np.inf
    figures = parity_figures(get_task("sst2"), REFERENCE, candidate, LABELS)
    assert figures["nonfinite_logits"] == 2 and figures["score_correlation"] is None
    for precision in ("fp32", "int8", "bf16", "fp16"):
        for allow_drop in (None, 0.0, 100.0):
            verdict = judge(figures, TOLERANCES[precision], allow_drop)
            assert not verdict["within_tolerance"] and not verdict["accepted"], (precision, allow_drop)
            assert verdict["reason"].startswith("2 logits are NaN or inf"), verdict["reason"]
    assert parity_figures(get_task("sst2"), REFERENCE, CANDIDATE, LABELS)["nonfinite_logits"] == 0


def test_a_nan_metric_drop_fails_even_where_the_drop_is_not_bounded():
    figures = {"max_abs_diff": 0.0, "label_agreement_pct": 100.0, "metric_drop_points": float("nan"),
               "headline_metric": "accuracy"}  # fmt: skip
    for precision in ("fp32", "int8"):
        for allow_drop in (None, 100.0):
            verdict = judge(figures, TOLERANCES[precision], allow_drop)
            assert not verdict["accepted"] and not verdict["within_tolerance"]
            assert verdict["reason"].startswith("accuracy drop is nan (the metric is not a number)")


def test_regression_artifacts_are_checked_by_their_correlation_with_pytorch():
    """STS-B has no labels to agree on: an all-NaN artifact, or one whose scores are noise around the right mean, must
    fail; a faithful one (a small shift and jitter) passes."""
    task = get_task("stsb")
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 5, size=(200, 1)).astype(np.float32)
    labels = (reference[:, 0] + rng.normal(0, 0.5, 200)).astype(np.float32)
    faithful = reference + 0.05 + rng.normal(0, 0.02, size=reference.shape).astype(np.float32)
    good = judge(parity_figures(task, reference, faithful, labels), TOLERANCES["int8"])
    assert good["accepted"] and good["score_correlation"] > 0.999 and good["label_agreement_pct"] is None
    nan = judge(parity_figures(task, reference, np.full_like(reference, np.nan), labels), TOLERANCES["int8"], 100.0)
    assert not nan["accepted"] and "200 logits are NaN or inf" in nan["reason"] and "score correlation" in nan["reason"]
    noise = rng.permutation(reference)  # the same scores, shuffled: same mean and spread, no relation to PyTorch's
    shuffled = judge(parity_figures(task, reference, noise, labels), TOLERANCES["int8"], allow_drop=1000.0)
    assert not shuffled["accepted"] and shuffled["reason"].startswith("score correlation with PyTorch -0.1240 < 0.99;")
    constant = parity_figures(task, reference, np.full_like(reference, 2.5), labels)
    assert np.isnan(constant["score_correlation"]) and not judge(constant, TOLERANCES["bf16"])["accepted"]


def test_allow_drop_relaxes_the_metric_drop_only():
    """--allow-drop 25 used to accept 80 % agreement and --allow-drop 0 an fp32 graph off by 0.5 in its logits."""
    disagreeing = {"max_abs_diff": 0.3, "label_agreement_pct": 80.0, "metric_drop_points": 20.0,
                   "headline_metric": "accuracy"}  # fmt: skip
    verdict = judge(disagreeing, TOLERANCES["int8"], allow_drop=25.0)
    assert not verdict["accepted"] and verdict["reason"] == (
        "label agreement 80.00% < 97%; accuracy drop 20.00 points > 1 (--allow-drop 25: drop 20.00 <= 25)"
    )
    off = {"max_abs_diff": 0.5, "label_agreement_pct": 100.0, "metric_drop_points": 0.0, "headline_metric": "accuracy"}
    assert not judge(off, TOLERANCES["fp32"], allow_drop=0.0)["accepted"]
    # the drop alone: --allow-drop accepts it, and the verdict still says it missed the tolerance
    dropped = judge({**disagreeing, "label_agreement_pct": 97.5}, TOLERANCES["int8"], allow_drop=25.0)
    assert dropped["accepted"] and not dropped["within_tolerance"]


def test_run_parity_refuses_a_source_model_with_nan_logits(tmp_path, tiny_model, tiny_data, tiny_tokenizer):
    import torch

    from ladc.training.models import load_classifier

    task = get_task("sst2")
    model = load_classifier(str(tiny_model), task)
    with torch.no_grad():
        model.classifier.bias[0] = float("nan")
    parity_set = load_parity_set(_data(tiny_data), tiny_tokenizer, task)
    with pytest.raises(LadcError, match=r"^the PyTorch model's own logits are NaN or inf on 48 of 48 dev examples; "):
        run_parity(ExportManifest(), tmp_path, model, parity_set, task, allow_drop=None)


def test_parity_figures_refuse_other_shapes():
    with pytest.raises(LadcError, match=r"shape \(4, 1\), PyTorch's \(4, 2\)"):
        parity_figures(get_task("sst2"), REFERENCE, REFERENCE[:, :1], LABELS)


def test_judge_applies_each_bound_and_allow_drop():
    figures = {"max_abs_diff": 2e-4, "label_agreement_pct": 96.0, "metric_drop_points": 1.5,
               "headline_metric": "accuracy"}  # fmt: skip
    fp32 = judge(figures, TOLERANCES["fp32"])
    assert not fp32["within_tolerance"] and not fp32["accepted"] and fp32["reason"] == "max|Δlogit| 0.0002 > 0.0001"
    int8 = judge(figures, TOLERANCES["int8"])
    assert int8["reason"] == "label agreement 96.00% < 97%; accuracy drop 1.50 points > 1"
    assert not judge(figures, TOLERANCES["int8"], allow_drop=2.0)["accepted"]  # agreement is not relaxed
    agreeing = {**figures, "label_agreement_pct": 97.0}
    accepted = judge(agreeing, TOLERANCES["int8"], allow_drop=2.0)
    assert accepted["accepted"] and not accepted["within_tolerance"]
    assert accepted["reason"] == "accuracy drop 1.50 points > 1 (--allow-drop 2: drop 1.50 <= 2)"
    assert not judge(agreeing, TOLERANCES["int8"], allow_drop=1.0)["accepted"]
    assert judge(figures, Tolerance())["within_tolerance"]  # nothing checked: nothing fails
    assert judge(figures, TOLERANCES["int8"])["tolerance"] == dataclasses.asdict(TOLERANCES["int8"])


def test_judge_bounds_are_inclusive_and_reasons_exact():
    at_bounds = {"max_abs_diff": 1e-4, "label_agreement_pct": 97.0, "metric_drop_points": 1.0,
                 "headline_metric": "accuracy"}  # fmt: skip
    for precision in ("fp32", "int8"):
        verdict = judge(at_bounds, TOLERANCES[precision])
        assert verdict["within_tolerance"] and verdict["accepted"] and verdict["reason"] == "within tolerance"
    # --allow-drop: a drop equal to it is accepted, a larger one is not, and the reason says which
    assert (
        judge(at_bounds, TOLERANCES["int8"], allow_drop=1.0)["reason"]
        == "within tolerance (--allow-drop 1: drop 1.00 <= 1)"
    )
    rejected = judge({**at_bounds, "metric_drop_points": 1.25}, TOLERANCES["int8"], allow_drop=1.2)
    assert not rejected["accepted"] and rejected["reason"] == (
        "accuracy drop 1.25 points > 1 (--allow-drop 1.2: drop 1.25 > 1.2)"
    )


def test_tolerance_comes_from_the_row_else_the_precision_run(monkeypatch):
    own = Tolerance(min_agreement_pct=50.0)
    add_artifact_row(monkeypatch, Artifact("w4", "onnxruntime", "model_w4.onnx", "w4", None, tolerance=own))
    assert tolerance_of({"name": "w4", "precision": "w4"}) is own
    assert tolerance_of({"name": "int8", "precision": "int8"}) == TOLERANCES["int8"]
    # the engine chose: judged as what it ran, not as "auto"
    assert tolerance_of({"name": "openvino", "precision": "auto", "inference_precision": "bf16"}) == TOLERANCES["bf16"]
    with pytest.raises(LadcError, match=r"artifact 'x' ran in 'w2', which has no parity tolerance"):
        tolerance_of({"name": "x", "precision": "w2"})


def test_raise_on_failure_names_every_failed_artifact(tmp_path):
    parity = {"accepted": False, "reason": "label agreement 90.00% < 97%", "metrics": {"accuracy": 0.8},
              "max_abs_diff": 0.3}  # fmt: skip
    manifest = ExportManifest.from_dict({"pytorch": {"headline_metric": "accuracy", "metrics": {"accuracy": 0.9}},
                "parity_set": {"examples": 48},
                "artifacts": [{"path": "model.onnx", "parity": {**parity, "accepted": True}},
                              {"path": "model_int8.onnx", "parity": parity},
                              {"path": "model_fused_int8.onnx", "parity": {**parity, "max_abs_diff": 0.5}}]})  # fmt: skip
    with pytest.raises(LadcError) as caught:
        raise_on_failure(manifest, tmp_path)
    assert str(caught.value) == (
        "parity check failed on 48 dev examples: model_int8.onnx: label agreement 90.00% < 97% (accuracy 80.00 vs "
        "PyTorch 90.00, max|Δlogit| 0.3); model_fused_int8.onnx: label agreement 90.00% < 97% (accuracy 80.00 vs "
        f"PyTorch 90.00, max|Δlogit| 0.5). Artifacts and export.json kept in {tmp_path}; for INT8 try "
        "--keep-head-fp32 or --exclude-nodes (and --per-channel if you chose --per-tensor), or pass --allow-drop "
        "POINTS to accept the drop"
    )
    for entry in manifest.artifacts:
        entry["parity"]["accepted"] = True
    raise_on_failure(manifest, tmp_path)  # nothing failed: no error


# ----------------------------------------------------------------------------- the parity table


def _table_manifest(long_path: str = "openvino/openvino_model.xml") -> ExportManifest:
    def parity(max_diff, mean_diff, agreement, accuracy, drop, within, accepted):
        return {"max_abs_diff": max_diff, "mean_abs_diff": mean_diff, "label_agreement_pct": agreement,
                "metrics": {"accuracy": accuracy}, "metric_drop_points": drop, "within_tolerance": within,
                "accepted": accepted}  # fmt: skip

    return ExportManifest.from_dict({
        "task": "sst2",
        "parity_set": {"examples": 48},
        "pytorch": {"headline_metric": "accuracy", "metrics": {"accuracy": 0.875}},
        "artifacts": [
            {"name": "onnx", "path": "model.onnx", "precision": "fp32", "size_mb": 90.44,
             "parity": parity(1.5e-5, 2.25e-6, 100.0, 0.875, 0.0, True, True)},
            {"name": "int8", "path": "model_int8.onnx", "precision": "int8", "size_mb": 23.06,
             "parity": parity(0.125, 0.0375, 95.8333, 0.8541666, 2.0833, False, True)},
            {"name": "openvino", "path": long_path, "precision": "auto", "inference_precision": "bf16", "size_mb": 45.2,
             "parity": parity(3.5, 1.25, None, 0.5, -1.5, False, False)},
        ],
    })  # fmt: skip


def test_parity_table_shows_every_figure_in_its_column_and_colours_the_verdict():
    from rich.console import Console

    console = Console(record=True, width=200, force_terminal=True, color_system="standard")
    print_parity_table(_table_manifest(), console)
    styled = console.export_text(styles=True, clear=False)
    expected = """\
                                            ONNX parity vs PyTorch fp32 (sst2, 48 dev)
┏━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┓
┃ artifact ┃ file                        ┃ precision  ┃ size MB ┃  max |Δ| ┃ mean |Δ| ┃ agree % ┃ accuracy ┃ drop pts ┃ ok       ┃
┡━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━┩
│ pytorch  │                             │ fp32       │         │          │          │         │    87.50 │          │          │
│ onnx     │ model.onnx                  │ fp32       │    90.4 │ 1.50e-05 │ 2.25e-06 │  100.00 │    87.50 │    +0.00 │ pass     │
│ int8     │ model_int8.onnx             │ int8       │    23.1 │ 1.25e-01 │ 3.75e-02 │   95.83 │    85.42 │    +2.08 │ accepted │
│ openvino │ openvino/openvino_model.xml │ auto: bf16 │    45.2 │ 3.50e+00 │ 1.25e+00 │       - │    50.00 │    -1.50 │ FAIL     │
└──────────┴─────────────────────────────┴────────────┴─────────┴──────────┴──────────┴─────────┴──────────┴──────────┴──────────┘
"""
    assert [line.rstrip() for line in console.export_text().splitlines()] == expected.splitlines()
    # the verdict's colour: green passed, yellow accepted only by --allow-drop, red failed
    assert "\x1b[32mpass\x1b[0m" in styled and "\x1b[33maccepted\x1b[0m" in styled and "\x1b[31mFAIL\x1b[0m" in styled


def test_parity_table_off_a_terminal_is_130_columns_wide(capsys):
    """rich would fall back to 80 columns in a CI log or a pipe and cut the file names."""
    print_parity_table(_table_manifest(long_path="openvino/" + "x" * 60 + "/openvino_model.xml"))
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) == 130 and any("openvino/xxxxxxxx" in line for line in lines)


def test_parity_table_on_a_terminal_takes_its_width_and_names_unnamed_artifacts_blank(capsys, monkeypatch):
    import re
    import sys

    manifest = _table_manifest(long_path="openvino/" + "x" * 60 + "/openvino_model.xml")
    del manifest.artifacts[0]["name"]  # export.json from before artifacts had names
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    print_parity_table(manifest)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in capsys.readouterr().out.splitlines()]
    assert max(len(line) for line in lines) > 130  # the terminal's 250 columns, not 130
    assert any(line.startswith("│          │ model.onnx ") for line in lines)


# ----------------------------------------------------------------------------- the parity set and run_parity


def _data(tiny_data: Path, **overrides) -> DataConfig:
    return DataConfig(task="sst2", data_dir=str(tiny_data), cache_dir=str(tiny_data / "cache"), **overrides)


def test_parity_set_is_the_dev_split_in_file_order(tiny_data, tiny_tokenizer):
    parity_set = load_parity_set(_data(tiny_data, dev_limit=20), tiny_tokenizer, get_task("sst2"), batch_size=8)
    rows = (tiny_data / "SST-2" / "dev.tsv").read_text().splitlines()[1:21]
    assert parity_set.labels.tolist() == [int(row.split("\t")[1]) for row in rows]
    assert [len(b["input_ids"]) for b in parity_set.batches] == [8, 8, 4] and parity_set.split == "validation"
    assert all(b["input_ids"].dtype == np.int64 and "labels" not in b for b in parity_set.batches)
    first = tiny_tokenizer(rows[0].split("\t")[0])["input_ids"]
    assert parity_set.lengths[0] == len(first) and parity_set.batches[0]["input_ids"][0, : len(first)].tolist() == first
    lengths = [len(tiny_tokenizer(row.split("\t")[0])["input_ids"]) for row in rows]
    assert parity_set.lengths.tolist() == lengths
    assert parity_set.describe() == {
        "split": "validation", "examples": 20, "batches": 3, "tokens_min": min(lengths),
        "tokens_mean": round(sum(lengths) / 20, 1), "tokens_max": max(lengths),
    }  # fmt: skip
    assert max(lengths) == max(b["input_ids"].shape[1] for b in parity_set.batches)


def test_run_parity_judges_each_entry_against_pytorch(tmp_path, tiny_model, tiny_data, tiny_tokenizer):
    from ladc.training.models import load_classifier

    task = get_task("sst2")
    model = load_classifier(str(tiny_model), task)
    parity_set = load_parity_set(_data(tiny_data), tiny_tokenizer, task)
    model.save_pretrained(tmp_path)  # the torch engine reads model.safetensors + config.json
    manifest = ExportManifest.from_dict(
        {
            "artifacts": [{"name": "torch_bf16", "path": "model.safetensors", "engine": "torch", "precision": "bf16"}],
            "parity_set": {"seed": 7},  # what export recorded before parity ran is kept
        }
    )
    run_parity(manifest, tmp_path, model, parity_set, task, allow_drop=None)
    accuracy = manifest.pytorch["metrics"]["accuracy"]
    assert manifest.pytorch == {
        "precision": "fp32",
        "metrics": {"accuracy": accuracy},
        "headline_metric": "accuracy",
    }
    assert accuracy > 0.5 and manifest.parity_set == {"seed": 7, **parity_set.describe()}
    assert [len(batch["input_ids"]) for batch in parity_set.batches] == [32, 16]  # 48 dev rows, 32 per batch
    bf16 = manifest.artifacts[0]["parity"]
    assert 0 < bf16["max_abs_diff"] < 0.1 and bf16["label_agreement_pct"] >= 97 and bf16["accepted"]
    assert bf16["tolerance"] == dataclasses.asdict(TOLERANCES["bf16"]) and manifest.passed
    assert "inference_precision" not in manifest.artifacts[0]  # only an engine that chooses ("auto") records one
    run_parity(manifest, tmp_path, model, parity_set, task, allow_drop=0.5)  # --allow-drop reaches the verdict
    assert manifest.artifacts[0]["parity"]["reason"].endswith(" <= 0.5)")


def test_run_parity_refuses_a_graph_the_tokenizer_cannot_feed(tmp_path, tiny_model, tiny_data, tiny_vocab_file):
    """A graph exported from a model with token type ids, checked with a tokenizer that makes none: one named error
    before any inference, not onnxruntime's own."""
    from transformers import BertTokenizerFast

    from ladc.training.models import load_classifier
    from tests.helpers import ONNX_INPUTS, export_plain_onnx

    task = get_task("sst2")
    model = load_classifier(str(tiny_model), task)
    export_plain_onnx(model, tmp_path / "model.onnx")
    no_types = BertTokenizerFast(vocab_file=str(tiny_vocab_file), model_input_names=["input_ids", "attention_mask"])
    parity_set = load_parity_set(_data(tiny_data), no_types, task)
    assert list(parity_set.batches[0]) == ["input_ids", "attention_mask"]
    manifest = ExportManifest(artifacts=[{"name": "fp32", "path": "model.onnx", "engine": "onnxruntime",
                                          "precision": "fp32", "provider": "CPUExecutionProvider"}])  # fmt: skip
    with pytest.raises(LadcError) as caught:
        run_parity(manifest, tmp_path, model, parity_set, task, allow_drop=None)
    assert str(caught.value) == (
        f"{tmp_path / 'model.onnx'} expects inputs {list(ONNX_INPUTS)} but the tokenizer gives ['input_ids', 'attention_mask'] "
        "(missing: ['token_type_ids']); was it exported from another model?"
    )


# ----------------------------------------------------------------------------- one row, no other edit


def test_a_new_precision_row_is_built_checked_and_reported(tmp_path, tiny_model, tiny_data, monkeypatch):
    """A dummy builder and a precision no table knows ("w8", with its own tolerance) go through export, parity,
    bench and the compression report, with no edit of export, runners, parity or compression."""
    from ladc.bench.bench import run_bench
    from ladc.bench.compression import write_compression_report
    from ladc.deploy.export import export_onnx

    def build_copy(ctx) -> dict:
        shutil.copy(ctx.build / "model.onnx", ctx.build / "model_w8.onnx")
        return {"note": "built by a test"}

    own = Tolerance(max_abs_diff=1e-4, min_agreement_pct=100.0)
    add_artifact_row(monkeypatch, Artifact("dummy_w8", "onnxruntime", "model_w8.onnx", "w8", build_copy, tolerance=own))

    run = tmp_path / "run"
    for stage in ("teacher", "student"):
        shutil.copytree(tiny_model, run / stage)
    cfg = ExportConfig(model=str(run / "student"), output=str(run / "onnx"), task="sst2", data_dir=str(tiny_data),
                       cache_dir=str(tiny_data / "cache"))  # fmt: skip
    manifest = export_onnx(cfg)
    entry = next(a for a in manifest["artifacts"] if a["name"] == "dummy_w8")
    assert (run / "onnx" / "model_w8.onnx").is_file() and entry["note"] == "built by a test"
    assert entry["precision"] == "w8" and entry["engine"] == "onnxruntime"
    assert entry["parity"]["tolerance"] == dataclasses.asdict(own) and entry["parity"]["within_tolerance"]
    assert entry["parity"]["label_agreement_pct"] == 100.0 and entry["parity"]["max_abs_diff"] <= 1e-4

    data = DataConfig(task="sst2", data_dir=str(tiny_data), cache_dir=str(tiny_data / "cache"))
    targets = tuple(str(run / stage) for stage in ("teacher", "student", "onnx"))
    run_bench(BenchConfig(targets=targets, data=data, output=str(run / "bench"), batch_sizes=(1, 32), seq_lens=(16,),
                          warmup=1, iterations=2, threads=1))  # fmt: skip
    markdown = write_compression_report(run)
    assert "| student ONNX Runtime dummy_w8 (w8) |" in markdown
    rows = {r["artifact"]: r for r in json.loads((run / "report.json").read_text())["rows"]}
    dummy = rows["student ONNX Runtime dummy_w8 (w8)"]
    assert dummy["path"] == "onnx/model_w8.onnx" and dummy["metric"] == rows["student (PyTorch fp32)"]["metric"]
