"""Tests for ladc/deploy/artifacts.py, ladc/deploy/openvino_ir.py, ladc/deploy/select.py and ladc/runs/hardware.py: every backend on a tiny
trained BERT (real optimum, onnxruntime, OpenVINO and NNCF), the artifact table, and the selection logic."""

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
from ladc.runs.export_manifest import ExportManifest

# the same module-scoped fixtures as test_export.py: a tiny SST-2 dir and a tiny BERT trained on it
tiny_data, tiny_model = export_tests.tiny_data, export_tests.tiny_model

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="openvino/nncf not installed (pip install 'ladc[openvino]'; .ci/run installs it)"
)


def _cfg(model: Path, output: Path, data: Path, **overrides) -> ExportConfig:
    values = {"task": "sst2", "data_dir": str(data), "cache_dir": str(data / "cache"), "select_iterations": 3}
    return ExportConfig(model=str(model), output=str(output), **{**values, **overrides})


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
    cfg = _cfg(tiny_model, out, tiny_data, backends=("onnxruntime", "openvino", "torch"), optimize=True,
               quantize="dynamic", select="fastest", calibration_samples=24)  # fmt: skip
    return out, export_onnx(cfg)


# ----------------------------------------------------------------------------- hardware


def test_cpu_flags_and_auto_mixed_precision_follow_the_isa():
    from ladc.runs.hardware import cpu_flags, cpu_model, native_bf16, resolve_mixed_precision

    amx = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8\n"
    epyc = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n"
    assert cpu_model(amx) == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu_flags(amx) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"]
    assert cpu_flags(epyc) == ["avx2"] and not native_bf16(cpu_flags(epyc)) and native_bf16(cpu_flags(amx))
    assert resolve_mixed_precision("auto", cuda=False, flags=cpu_flags(amx)) == "bf16"
    assert resolve_mixed_precision("auto", cuda=False, flags=cpu_flags(epyc)) == "no"
    assert resolve_mixed_precision("bf16", cuda=False, flags=cpu_flags(epyc)) == "bf16"  # explicit wins


# ----------------------------------------------------------------------------- pure selection logic


def test_rank_orders_by_p50_over_all_runs_and_keeps_the_rounds():
    from ladc.deploy.select import rank

    rows = rank({"slow": [[4.0, 5.0], [6.0]], "fast": [[1.0], [2.0, 9.0]]}, samples_per_call=[2])
    assert [row["name"] for row in rows] == ["fast", "slow"]
    assert rows[0]["p50_ms"] == 2.0 and rows[1]["p50_ms"] == 5.0
    assert rows[0]["samples_per_s"] == pytest.approx(6 / 0.012)  # 3 calls x 2 samples in 12 ms
    assert (rows[1]["runs"], rows[1]["rounds"], rows[1]["round_p50_ms"]) == (3, 2, [4.5, 6.0])
    assert rows[0]["latencies_ms"] == [1.0, 2.0, 9.0]  # every run in order: bench reuses them
    # rounded: p50 and mean to 4 decimals, samples/s to 2; samples cycle over runs across rounds
    (row,) = rank({"x": [[1.000004, 2.000006], [3.000012]]}, samples_per_call=[1, 2])  # 1 + 2 + 1 in 6.000022 ms
    assert {k: row[k] for k in ("p50_ms", "mean_ms", "samples_per_s", "runs")} == {
        "p50_ms": 2.0, "mean_ms": 2.0, "samples_per_s": 666.66, "runs": 3}  # fmt: skip


def test_median_interval_takes_order_statistics_of_at_least_90_percent_coverage():
    from ladc.deploy.select import median_interval

    assert median_interval([5.0, 1.0, 3.0]) == (1.0, 5.0)  # 3 values: min..max (75 %, the most there is)
    assert median_interval([4, 2, 9, 1, 7]) == (1, 9)  # 5: [x1, x5] covers 94 %, [x2, x4] only 62 %
    assert median_interval(list(range(1, 11))) == (2, 9)  # 10: [x2, x9] covers 97.9 %, [x3, x8] 89 %
    assert median_interval([3.0]) == (3.0, 3.0)


def _rows(**round_p50s) -> list[dict]:
    return [{"name": name, "round_p50_ms": values} for name, values in round_p50s.items()]


def test_slowdowns_compare_artifacts_round_by_round_so_drift_cancels():
    from ladc.deploy.select import slowdowns

    # b is 10 % slower than a in every round while the machine drifts 2x between rounds; a is 2x slower at b32
    ranking = {"b1": _rows(a=[10.0, 20.0, 15.0], b=[11.0, 22.0, 16.5]), "b32": _rows(a=[100.0] * 3, b=[50.0] * 3)}
    scores, intervals = slowdowns(ranking)
    assert scores == {"b": 1.0488, "a": 1.4142}  # sqrt(1.1 x 1), sqrt(1 x 2)
    assert intervals == {"b": [1.0488, 1.0488], "a": [1.4142, 1.4142]}  # the same ratio in every round: no spread
    # the ranking flips between rounds: both intervals reach 1.0
    scores, intervals = slowdowns({"b1": _rows(a=[10.0, 10.0, 10.0], b=[9.0, 11.0, 10.5])})
    assert scores == {"a": 1.0, "b": 1.05} and intervals == {"a": [1.0, 1.1111], "b": [1.0, 1.1]}
    # c left the rounds after 3 of 5 (slow): scored on its own rounds, against the best of each
    scores, intervals = slowdowns({"b1": _rows(a=[1.0, 2.0, 1.0, 1.0, 1.0], c=[4.0, 4.0, 4.0])})
    assert scores == {"a": 1.0, "c": 4.0} and intervals["c"] == [2.0, 4.0]


def test_break_ties_takes_the_smallest_then_the_most_accurate_of_the_tied():
    from ladc.deploy.select import break_ties

    scores = {"fp32": 1.0, "int8": 1.05, "tiny": 1.5}
    intervals = {"fp32": [1.0, 1.11], "int8": [1.0, 1.1], "tiny": [1.4, 1.6]}
    sizes = {"fp32": 69.6, "int8": 17.6, "tiny": 10.0}
    accuracy = {"fp32": 0.83, "int8": 0.82, "tiny": 0.83}
    # fp32 is fastest, int8's interval overlaps it: a tie, and int8 is smaller; tiny is smaller still but not tied
    assert break_ties(scores, intervals, sizes, accuracy) == ("fp32", "int8", ["int8"])
    same_size = {**sizes, "int8": 69.6}
    assert break_ties(scores, intervals, same_size, accuracy) == ("fp32", "fp32", ["int8"])  # more accurate
    assert break_ties(scores, intervals, same_size, {**accuracy, "int8": 0.9}) == ("fp32", "int8", ["int8"])
    assert break_ties(scores, intervals, same_size, {**accuracy, "int8": 0.83}) == ("fp32", "fp32", ["int8"])
    apart = {**intervals, "fp32": [1.0, 1.0], "int8": [1.02, 1.1]}  # consistently slower in every round
    assert break_ties(scores, apart, sizes, accuracy) == ("fp32", "fp32", [])


def test_unique_candidates_drop_failures_cuda_rows_and_duplicates():
    from ladc.deploy.select import _unique_candidates

    def entry(name, path, precision="fp32", accepted=True, provider="CPUExecutionProvider", engine="x", **extra):
        return {"name": name, "path": path, "precision": precision, "provider": provider, "engine": engine,
                "parity": {"accepted": accepted, "reason": "r"}, **extra}  # fmt: skip

    manifest = {"artifacts": [
        entry("fp32", "model.onnx"), entry("int8", "model_int8.onnx", "int8", accepted=False),
        entry("fp16", "model_fp16.onnx", "fp16", provider="CUDAExecutionProvider"),
        entry("openvino", "ov.xml", "auto", inference_precision="fp32"), entry("openvino_f32", "ov.xml", "fp32"),
        entry("ov_reads_onnx", "model.onnx", engine="openvino"),  # the same file on another engine is another thing
    ]}  # fmt: skip
    candidates, dropped = _unique_candidates(ExportManifest.from_dict(manifest))
    assert [c["name"] for c in candidates] == ["fp32", "openvino", "ov_reads_onnx"]
    reasons = {d["name"]: d["reason"] for d in dropped}
    assert reasons["int8"].startswith("failed parity") and "CUDA" in reasons["fp16"]
    assert reasons["openvino_f32"] == "identical to openvino here (fp32)"


def test_selection_shapes_trim_dev_rows_to_their_length(tiny_tokenizer):
    from ladc.deploy.select import selection_shapes

    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    batches = [{"input_ids": np.arange(8).reshape(2, 4), "attention_mask": mask}]
    shapes = selection_shapes(tiny_tokenizer, batches, max_positions=64)
    assert list(shapes) == ["b1_s64", "b32_s64", "dev_b1", "dev_b2"]
    assert shapes["b32_s64"][0]["input_ids"].shape == (32, 64)
    assert [row["input_ids"].tolist() for row in shapes["dev_b1"]] == [[[0, 1, 2]], [[4, 5]]]
    # the synthetic feeds are the same on every run (seed 0), so two selections time the same inputs
    from ladc.measure import synthetic_batch

    for shape, rows in (("b1_s64", 1), ("b32_s64", 32)):
        expected = synthetic_batch(tiny_tokenizer, rows, 64, 0)
        assert all(np.array_equal(shapes[shape][0][k], expected[k]) for k in expected)
    # capped: 64 single rows and 16 batches of a larger parity set
    many = [{"input_ids": np.ones((4, 3), dtype=np.int64), "attention_mask": np.ones((4, 3))} for _ in range(17)]
    capped = selection_shapes(tiny_tokenizer, many, max_positions=64)
    assert len(capped["dev_b1"]) == 64 and len(capped["dev_b4"]) == 16


# scripted rounds per shape (3 rounds, the machine drifting 1.0 / 1.5 / 1.2): `fast` is faster in most rounds, but
# `small` wins round 2 at b1_s64, so their intervals overlap: a tie, and `small` (35 MB) beats `fast` (69.6 MB)
SCRIPTED_ROUNDS = {
    "b1_s64": ([[1.0] * 3, [1.5] * 3, [1.2] * 3], [[1.1] * 3, [1.4] * 3, [1.3] * 3]),
    "b32_s64": ([[10.0], [15.0], [12.0]], [[10.5], [15.75], [12.6]]),  # one run per turn (slow shape)
    "dev_b1": ([[2.0] * 3] * 3, [[2.0] * 3] * 3),
    "dev_b8": ([[4.0] * 2] * 3, [[4.0] * 2] * 3),
}


def _torch_entry(name, path="model/model.safetensors", precision="fp32", accepted=True,
                 provider="CPUExecutionProvider", size_mb=69.6, accuracy=0.8):  # fmt: skip
    return {"name": name, "path": path, "engine": "torch", "precision": precision, "provider": provider,
            "size_mb": size_mb, "parity": {"accepted": accepted, "reason": f"{name} agreement 50.00% < 97%",
                                           "metrics": {"accuracy": accuracy}, "headline_metric": "accuracy"}}  # fmt: skip


def _select_scripted(monkeypatch, root, tokenizer, data_dir, manifest, scripted, threads=1):
    """select_fastest on real torch runners (16 dev rows, batch 8), each shape's rounds taken from `scripted`.

    Returns (selection, what each timing call saw, how each runner was opened, the parity set).
    """
    import ladc.deploy.runners
    import ladc.measure
    from ladc.data.tasks import get_task
    from ladc.deploy.parity import load_parity_set
    from ladc.deploy.select import select_fastest

    data = DataConfig(task="sst2", data_dir=str(data_dir), cache_dir=str(data_dir / "cache"), dev_limit=16)
    parity_set = load_parity_set(data, tokenizer, get_task("sst2"), batch_size=8)
    seen, opened = [], []

    def scripted_rounds(calls, warmup, rounds, block, turn_s, max_duration_s):
        shape = list(scripted)[len(seen)]
        outputs = [call(k) for call in calls for k in range(2)]  # the real runners, on this shape's feeds
        seen.append((shape, warmup, rounds, block, turn_s, max_duration_s, [tuple(o.shape) for o in outputs]))
        return [[list(turn) for turn in target] for target in scripted[shape]]

    def recording_open(root, entry, threads=None, spinning=True, **kwargs):
        opened.append((entry["name"], threads, spinning))
        return real_open(root, entry, threads, spinning, **kwargs)

    real_open = ladc.deploy.runners.open_artifact
    monkeypatch.setattr(ladc.measure, "time_rounds", scripted_rounds)
    monkeypatch.setattr(ladc.deploy.runners, "open_artifact", recording_open)
    cfg = _cfg(root / "model", root / "out", data_dir, select_iterations=8, threads=threads)
    selection = select_fastest(ExportManifest.from_dict(manifest), root, tokenizer, parity_set, cfg, max_positions=64)
    return selection, seen, opened, parity_set


def test_select_fastest_ranks_in_rounds_and_breaks_a_tie_by_size_on_a_scripted_clock(
    tmp_path, tiny_model, tiny_data, tiny_tokenizer, monkeypatch, capsys
):
    """The whole `selection` block on real torch runners, with rounds scripted per shape instead of measured."""
    import psutil

    from ladc.deploy.select import SELECT_BLOCK, SELECT_MAX_S, SELECT_TURN_S, SELECT_WARMUP, print_selection
    from ladc.runs.hardware import cpu_flags, cpu_model

    for directory in ("model", "model_bf16"):
        shutil.copytree(tiny_model, tmp_path / directory)
    manifest = {"artifacts": [
        _torch_entry("fast"), _torch_entry("failed", accepted=False),
        _torch_entry("small", "model_bf16/model.safetensors", "bf16", size_mb=35.0),
        _torch_entry("gpu", provider="CUDAExecutionProvider"), _torch_entry("same_as_fast"),
    ]}  # fmt: skip
    selection, seen, opened, parity_set = _select_scripted(
        monkeypatch, tmp_path, tiny_tokenizer, tiny_data, manifest, SCRIPTED_ROUNDS
    )
    # each shape in one set of rounds of both candidates: 8 iterations -> 3 rounds of up to 3; feeds cycle with k
    shapes_out = {"b1_s64": [(1, 2)] * 4, "b32_s64": [(32, 2)] * 4, "dev_b1": [(1, 2)] * 4,
                  "dev_b8": [(8, 2)] * 4}  # fmt: skip
    assert seen == [(shape, SELECT_WARMUP, 3, SELECT_BLOCK, SELECT_TURN_S, SELECT_MAX_S, out)
                    for shape, out in shapes_out.items()]  # fmt: skip
    assert opened == [("fast", 1, False), ("small", 1, False)]  # --threads reaches every runner; pools do not spin
    assert [d["name"] for d in selection["dropped"]] == ["failed", "gpu", "same_as_fast"]
    assert selection["dropped"][0]["reason"] == "failed parity: failed agreement 50.00% < 97%"
    assert selection["fastest"] == dict.fromkeys(SCRIPTED_ROUNDS, "fast")
    # round slowdowns over 4 shapes: fast 1, (1.5/1.4)^(1/4) = 1.0174, 1; small (1.1 x 1.05)^(1/4) = 1.0367,
    # 1.05^(1/4) = 1.0123, (1.3/1.2 x 1.05)^(1/4) = 1.0327: medians 1.0 and 1.0327, intervals min..max overlap
    assert selection["geomean_slowdown"] == {"fast": 1.0, "small": 1.0327}
    assert selection["geomean_slowdown_interval"] == {"fast": [1.0, 1.0174], "small": [1.0123, 1.0367]}
    assert selection["fastest_overall"] == "fast" and selection["near_ties"] == ["fast"]
    assert selection["chosen"] == "small" and selection["chosen_path"] == "model_bf16/model.safetensors"
    assert selection["reason"] == (
        "small: 1.08x slower than fast at b1_s64; 1.05x slower than fast at b32_s64; 1.00x slower than fast at dev_b1; "
        "1.00x slower than fast at dev_b8; a tie, geomean-slowdown intervals overlap (fast [1.00, 1.02], small "
        "[1.01, 1.04]): small taken as the smallest on disk (35.0 MB vs 69.6)"
    )
    b32 = selection["ranking"]["b32_s64"]
    assert [(r["name"], r["p50_ms"], r["runs"], r["rounds"]) for r in b32] == [("fast", 12.0, 3, 3),
                                                                                ("small", 12.6, 3, 3)]  # fmt: skip
    assert b32[0]["round_p50_ms"] == [10.0, 15.0, 12.0] and b32[1]["latencies_ms"] == [10.5, 15.75, 12.6]
    assert b32[0]["samples_per_s"] == 2594.59  # 96 samples in 37 ms, 2 decimals
    first_row, first_batch = int(parity_set.lengths[0]), parity_set.batches[0]["input_ids"].shape[1]
    assert selection["shapes"] == {"b1_s64": [[1, 64]], "b32_s64": [[32, 64]],
                                   "dev_b1": [[1, first_row], "16 feeds cycled"],
                                   "dev_b8": [[8, first_batch], "2 feeds cycled"]}  # fmt: skip
    timing = selection["timing"]
    assert (timing["isolation"], timing["rounds"], timing["iterations"], timing["spinning"]) == ("interleaved", 3, 8,
                                                                                                 False)  # fmt: skip
    assert (timing["threads"], timing["warmup"], timing["max_s_per_shape"]) == (1, SELECT_WARMUP, SELECT_MAX_S)
    assert selection["machine"] == {"cpu": cpu_model(), "cpu_flags": cpu_flags(),
                                    "physical_cores": psutil.cpu_count(logical=False)}  # fmt: skip

    from rich.console import Console

    console = Console(record=True, width=300)
    print_selection(ExportManifest(selection=selection), console)
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines[0].strip() == f"--select fastest on {selection['machine']['cpu']} (1 threads)"
    assert lines[2:6] == [
        "┃ artifact       ┃ b1_s64 p50 ms ┃ b32_s64 p50 ms ┃ dev_b1 p50 ms ┃ dev_b8 p50 ms ┃ geomean slowdown ┃   interval ┃",
        "┡━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━┩",
        "│ fast           │          1.20 │          12.00 │          2.00 │          4.00 │            1.00x │ 1.00-1.02x │",
        "│ small (chosen) │          1.30 │          12.60 │          2.00 │          4.00 │            1.03x │ 1.01-1.04x │",
    ]
    assert lines[-4:] == [f"chosen: {selection['reason']}",
                          "not ranked: failed: failed parity: failed agreement 50.00% < 97%",
                          "not ranked: gpu: runs on CUDA; selection times the CPU",
                          "not ranked: same_as_fast: identical to fast here (fp32)"]  # fmt: skip
    capsys.readouterr()
    print_selection(ExportManifest(selection=selection))  # off a terminal: 130 columns, not rich's 80
    assert 120 < max(len(line) for line in capsys.readouterr().out.splitlines()) <= 130
    import re
    import sys

    monkeypatch.setenv("COLUMNS", "400")  # on a terminal: its own width
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    print_selection(ExportManifest(selection=selection))
    shown = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in capsys.readouterr().out.splitlines()]
    assert f"chosen: {selection['reason']}" in shown  # one line, not wrapped at 130


def test_select_fastest_edge_cases_on_a_scripted_clock(tmp_path, tiny_model, tiny_data, tiny_tokenizer, monkeypatch):
    """Drift that moves every artifact alike is no tie; equal sizes go to the more accurate; a lone candidate has no
    runner-up; threads default to physical cores; nothing accepted is a one-line error listing every reason."""
    import psutil

    shutil.copytree(tiny_model, tmp_path / "model")
    drift = [1.0, 1.5, 0.8]  # a 2-core VM between rounds: every artifact 50 % slower in round 2
    consistent = {shape: tuple([[ms * d] * 3 for d in drift] for ms in (1.0, 1.04, 1.3)) for shape in SCRIPTED_ROUNDS}
    manifest = {"artifacts": [_torch_entry("a"), _torch_entry("b", precision="bf16", size_mb=17.0),
                              _torch_entry("c", precision="fp16", size_mb=10.0)]}  # fmt: skip
    selection, _, opened, _ = _select_scripted(
        monkeypatch, tmp_path, tiny_tokenizer, tiny_data, manifest, consistent, threads=None
    )
    # b is 4 % slower in every round: its interval [1.04, 1.04] misses a's [1.0, 1.0], so a wins although larger
    assert selection["geomean_slowdown"] == {"a": 1.0, "b": 1.04, "c": 1.3} and selection["near_ties"] == []
    assert selection["chosen"] == "a" and "tie" not in selection["reason"]
    physical = psutil.cpu_count(logical=False) or 1
    assert selection["timing"]["threads"] == physical
    assert opened == [("a", physical, False), ("b", physical, False), ("c", physical, False)]

    flipping = dict.fromkeys(SCRIPTED_ROUNDS, ([[1.0] * 3] * 3, [[0.9] * 3, [1.1] * 3, [1.05] * 3]))  # b wins round 1
    manifest = {"artifacts": [_torch_entry("a", accuracy=0.80), _torch_entry("b", precision="bf16", accuracy=0.81)]}
    selection, *_ = _select_scripted(monkeypatch, tmp_path, tiny_tokenizer, tiny_data, manifest, flipping)
    assert (selection["fastest_overall"], selection["chosen"], selection["near_ties"]) == ("a", "b", ["a"])
    assert selection["reason"].endswith(
        "a tie, geomean-slowdown intervals overlap (a [1.00, 1.11], b [1.00, 1.10]): b taken as the most accurate of "
        "the smallest (parity metric 0.8100)"
    )

    alone = {shape: ([[2.0] * 3] * 3,) for shape in SCRIPTED_ROUNDS}
    manifest = {"artifacts": [_torch_entry("a")]}
    selection, *_ = _select_scripted(monkeypatch, tmp_path, tiny_tokenizer, tiny_data, manifest, alone)
    assert selection["near_ties"] == [] and selection["reason"] == (
        "a: fastest at b1_s64 (2.00 ms); fastest at b32_s64 (2.00 ms); fastest at dev_b1 (2.00 ms); "
        "fastest at dev_b8 (2.00 ms)"
    )

    manifest = {"artifacts": [_torch_entry("x", accepted=False), _torch_entry("y", provider="CUDAExecutionProvider")]}
    with pytest.raises(LadcError) as caught:
        _select_scripted(monkeypatch, tmp_path, tiny_tokenizer, tiny_data, manifest, alone)
    assert str(caught.value) == (
        "--select fastest: no artifact passed parity (failed parity: x agreement 50.00% < 97%; "
        "runs on CUDA; selection times the CPU)"
    )


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
    import ladc.deploy.artifacts
    from ladc.bench.bench import run_bench
    from ladc.deploy.artifacts import Artifact
    from ladc.deploy.export import export_onnx

    def build_copy(ctx) -> dict:
        shutil.copy(ctx.build / "model.onnx", ctx.build / "model_copy.onnx")
        return {"note": "copied"}

    row = Artifact("copy", "onnxruntime", "model_copy.onnx", "fp32", "onnxruntime", build_copy)
    monkeypatch.setattr(ladc.deploy.artifacts, "ARTIFACTS", (*ladc.deploy.artifacts.ARTIFACTS, row))
    out = tmp_path / "onnx"
    manifest = export_onnx(_cfg(tiny_model, out, tiny_data))
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
        export_onnx(_cfg(tiny_model, tmp_path / "o", tiny_data, select="slowest"))
    with pytest.raises(LadcError, match="--backend 'onnxruntime,tvm'"):
        export_onnx(_cfg(tiny_model, tmp_path / "o", tiny_data, backends=("onnxruntime", "tvm")))
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
    assert (target.kind, target.precision, target.name) == ("openvino", "auto", f"{tmp_path.name}/model@openvino")
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
