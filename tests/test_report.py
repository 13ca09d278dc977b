"""Tests of ladc/bench/report.py: latency statistics, speed-ups, the Markdown/terminal tables, the plot and the writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ladc.bench.report import (
    add_speedups,
    machine_info,
    render_markdown,
    render_plot,
    render_table,
    summarise_latencies,
    write_report,
)
from ladc.errors import LadcError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_percentiles_and_throughput_on_known_latencies():
    summary = summarise_latencies(np.arange(1, 101, dtype=float), samples=32)
    # numpy's default (linear) percentile of 1..100: rank p/100 * 99 between sorted neighbours
    assert summary["p50_ms"] == 50.5
    assert summary["p90_ms"] == pytest.approx(90.1)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["mean_ms"] == 50.5 and summary["iterations"] == 100
    assert summary["std_ms"] == pytest.approx(np.std(np.arange(1, 101)), abs=1e-4)
    assert summary["samples_per_s"] == pytest.approx(32 * 1000 / 50.5, abs=1e-3)  # batch * 1000 / mean_ms


def test_throughput_with_uneven_batches_is_samples_over_time():
    # a full batch of 32 in 10 ms and a last batch of 8 in 30 ms: 40 samples in 40 ms
    assert summarise_latencies([10.0, 30.0], samples=[32, 8])["samples_per_s"] == pytest.approx(1000.0)
    with pytest.raises(ValueError):
        summarise_latencies([], samples=1)


def _row(target: str, batch: int, p50: float, mode: str = "synthetic") -> dict:
    return {"target": target, "mode": mode, "batch_size": batch, "seq_len": 128 if mode == "synthetic" else None,
            "p50_ms": p50, "p99_ms": p50 * 1.5, "samples_per_s": batch * 1000 / p50}  # fmt: skip


def test_speedups_compare_the_same_shape_only():
    rows = add_speedups(
        [_row("teacher", 1, 10.0), _row("student", 1, 4.0), _row("teacher", 32, 100.0), _row("student", 32, 25.0),
         _row("student", 1, 5.0, mode="dev")],
        baseline="teacher",
    )  # fmt: skip
    assert [r["speedup"] for r in rows] == [1.0, 2.5, 1.0, 4.0, None]  # no teacher dev row -> no speed-up


def _report(metrics: dict | None, task: str = "sst2") -> dict:
    targets = [
        {"name": "teacher", "precision": "fp32", "size_mb": 90.9, "peak_rss_mb": 310.0, "metrics": metrics},
        {"name": "onnx-student/model_int8", "precision": "int8", "size_mb": 11.6, "peak_rss_mb": 40.0,
         "metrics": {k: v - 0.01 for k, v in metrics.items()} if metrics else None},
    ]  # fmt: skip
    timings = add_speedups(
        [_row("teacher", 1, 10.0), _row("onnx-student/model_int8", 1, 2.5), _row("teacher", 32, 200.0),
         _row("onnx-student/model_int8", 32, 40.0)],
        baseline="teacher",
    )  # fmt: skip
    runtime = {"provider": "cpu", "threads": 2, "ort_graph_optimization_level": "ORT_ENABLE_ALL",
               "ort_execution_mode": "ORT_SEQUENTIAL", "ort_intra_op_threads": 2, "ort_inter_op_threads": 1,
               "warmup": 5, "iterations": 30, "min_duration_s": None, "interleave_block": 5, "memory_method": "m"}  # fmt: skip
    return {"task": task, "headline_metric": next(iter(metrics)) if metrics else "accuracy", "baseline": "teacher",
            "machine": machine_info(), "runtime": runtime, "targets": targets, "timings": timings, "warnings": []}  # fmt: skip


def test_markdown_table_header_and_rows():
    lines = render_markdown(_report({"accuracy": 0.9128})).splitlines()
    assert lines[2] == (
        "| target | precision | size MB | peak RSS MB | accuracy | p50 ms (b1 s128) | samples/s (b1 s128) "
        "| speed-up (b1 s128) | p50 ms (b32 s128) | samples/s (b32 s128) | speed-up (b32 s128) |"
    )
    assert lines[3].count("|") == lines[2].count("|")
    assert lines[4] == "| teacher | fp32 | 90.9 | 310 | 0.9128 | 10.00 | 100.0 | 1.00x | 200.00 | 160.0 | 1.00x |"
    assert lines[5] == (
        "| onnx-student/model_int8 | int8 | 11.6 | 40 | 0.9028 | 2.50 | 400.0 | 4.00x | 40.00 | 800.0 | 5.00x |"
    )


def test_markdown_reports_each_metric_of_a_task_separately():
    header = render_markdown(_report({"f1": 0.89, "accuracy": 0.85}, task="mrpc")).splitlines()[2]
    assert "| f1 | accuracy |" in header


def test_terminal_table_has_one_row_per_target_and_shape():
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_table(_report({"accuracy": 0.9128})))
    text = console.export_text()
    assert "onnx-student/model_int8" in text and "4.00x" in text and "5.00x" in text
    assert render_table(_report({"accuracy": 0.9})).row_count == 4


@pytest.mark.parametrize("metrics", [{"accuracy": 0.91}, None])
def test_plot_is_a_png(tmp_path, metrics):
    render_plot(_report(metrics), tmp_path / "bench.png")
    data = (tmp_path / "bench.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_write_report_is_atomic_and_guards_existing_dirs(tmp_path):
    output = tmp_path / "bench-sst2"
    report = _report({"accuracy": 0.9})
    write_report(report, output)
    assert sorted(p.name for p in output.iterdir()) == ["bench.json", "bench.md", "bench.png"]
    assert json.loads((output / "bench.json").read_text())["baseline"] == "teacher"
    assert [p.name for p in tmp_path.iterdir()] == ["bench-sst2"]  # no temp dirs left behind
    with pytest.raises(LadcError, match="--overwrite"):
        write_report(report, output)
    (output / "stale.txt").write_text("old")
    write_report(report, output, overwrite=True)
    assert not (output / "stale.txt").exists()


def test_machine_info_describes_the_host():
    info = machine_info()
    assert info["cpu"] and info["logical_cores"] >= 1 and info["ram_gb"] > 0
    assert {"torch", "onnxruntime", "transformers"} <= set(info["versions"])
    assert info["date"].endswith("+00:00") and info["gpu"] is None
