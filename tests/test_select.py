"""Tests for ladc/deploy/select.py: the pure ranking logic (rank, intervals, slowdowns, ties, candidates, shapes) and
`select_fastest` on a scripted clock over real runners of a tiny trained BERT. The ranking of a real export with
every engine is in test_artifacts.py, beside the export it shares."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import tests.test_export as export_tests
from ladc.errors import LadcError
from ladc.runs.config import DataConfig
from ladc.runs.export_manifest import ExportManifest
from tests.helpers import export_config

# the same module-scoped fixtures as test_export.py: a tiny SST-2 dir and a tiny BERT trained on it
tiny_data, tiny_model = export_tests.tiny_data, export_tests.tiny_model


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
    cfg = export_config(root / "model", root / "out", data_dir, select_iterations=8, threads=threads)
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
