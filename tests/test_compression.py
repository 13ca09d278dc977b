"""Tests of ladc/bench/compression.py on a hand-built run dir: every figure of the report recomputed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ladc.bench.compression import (
    compression_figure,
    compression_rows,
    count_parameters,
    render_compression_markdown,
    write_compression_report,
)
from ladc.errors import LadcError

# per artifact: (bench target name, path in the run dir, size MB, dev accuracy, synthetic p50 ms at b1, at b32)
ARTIFACTS = [
    ("teacher", "teacher", 90.0, 0.90, 20.0, 400.0),
    ("student", "student", 60.0, 0.70, 7.0, 160.0),
    ("onnx/fp32", "onnx/model.onnx", 60.5, 0.81, 8.0, 100.0),
    ("onnx/fused_int8", "onnx/model_fused_int8.onnx", 15.2, 0.45, 5.0, 50.0),
]
# onnx/export.json: the artifacts the report lists after the PyTorch models, and which one --select chose
EXPORT = {
    "artifacts": [
        {"name": "fp32", "path": "model.onnx", "engine": "onnxruntime", "precision": "fp32"},
        {"name": "fused_int8", "path": "model_fused_int8.onnx", "engine": "onnxruntime", "precision": "int8"},
    ],
    "selection": {"chosen": "fused_int8", "reason": "fused_int8: fastest at b32_s128 (50.00 ms)"},
}


def _timing(name: str, batch_size: int, p50_ms: float, mode: str | None = "synthetic") -> dict:
    row = {"target": name, "batch_size": batch_size, "p50_ms": p50_ms}
    if mode is not None:
        row["mode"] = mode
    return row


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """teacher: 3x4 + 5 = 17 parameters; student: 2x4 = 8 (+ 100 gate and 8 projection parameters that do not
    count)."""
    run = tmp_path / "run"
    for stage in ("teacher", "student", "onnx", "bench"):
        (run / stage).mkdir(parents=True)
    save_file(  # with the metadata header HF writes ({"format": "pt"}): it is no tensor
        {"encoder.weight": torch.zeros(3, 4), "encoder.bias": torch.zeros(5)},
        run / "teacher" / "model.safetensors",
        metadata={"format": "pt"},
    )
    save_file({"encoder.weight": torch.zeros(2, 4)}, run / "student" / "model.safetensors")
    save_file({"gates.0.weight": torch.zeros(10, 10)}, run / "student" / "gates.safetensors")
    save_file({"maps.0.weight": torch.zeros(4, 2)}, run / "student" / "projection.safetensors")
    targets, timings = [], []
    for name, path, size_mb, accuracy, p50_b1, p50_b32 in ARTIFACTS:
        targets.append({"name": name, "path": str(run / path), "size_mb": size_mb, "metrics": {"accuracy": accuracy}})
        timings.append(_timing(name, 1, 1000.0, mode="dev"))  # real-sentence rows never enter the report
        # the teacher's b1 row has no mode key (older bench.json): it counts as synthetic
        timings.append(_timing(name, 1, p50_b1, mode=None if name == "teacher" else "synthetic"))
        timings.append(_timing(name, 32, p50_b32))
    bench = {"task": "sst2", "headline_metric": "accuracy", "machine": {"cpu": "Test CPU"}, "targets": targets,
             "timings": timings}  # fmt: skip
    (run / "bench" / "bench.json").write_text(json.dumps(bench))
    (run / "onnx" / "export.json").write_text(json.dumps(EXPORT))
    return run


def test_count_parameters_reads_safetensors_headers_and_skips_gates_and_projection(run_dir):
    assert count_parameters(run_dir / "teacher") == 17
    assert count_parameters(run_dir / "student") == 8


def test_rows_recompute_speedup_and_retention_against_the_teacher(run_dir):
    rows, context = compression_rows(run_dir)
    assert context == {"task": "sst2", "metric": "accuracy", "machine": {"cpu": "Test CPU"}, "chosen": "fused_int8",
                       "chosen_reason": "fused_int8: fastest at b32_s128 (50.00 ms)"}  # fmt: skip
    assert [r["artifact"] for r in rows] == [
        "teacher (PyTorch fp32)", "student (PyTorch fp32)", "student ONNX Runtime fp32 (fp32)",
        "student ONNX Runtime fused_int8 (int8)",
    ]  # fmt: skip
    assert [r["chosen"] for r in rows] == [False, False, False, True]
    assert [r["path"] for r in rows] == ["teacher", "student", "onnx/model.onnx", "onnx/model_fused_int8.onnx"]
    assert [r["parameters"] for r in rows] == [17, 8, 8, 8]  # ONNX rows count the student's parameters
    assert [r["size_mb"] for r in rows] == [90.0, 60.0, 60.5, 15.2]
    assert [r["metric"] for r in rows] == [0.90, 0.70, 0.81, 0.45]
    assert [(r["p50_ms_b1"], r["p50_ms_b32"]) for r in rows] == [(20.0, 400.0), (7.0, 160.0), (8.0, 100.0), (5.0, 50.0)]
    # speed-up = teacher p50 / own p50 (2 decimals); retention = own metric / teacher metric (4 decimals)
    assert [r["speedup_b1"] for r in rows] == [1.0, 2.86, 2.5, 4.0]
    assert [r["speedup_b32"] for r in rows] == [1.0, 2.5, 4.0, 8.0]
    assert [r["retention"] for r in rows] == [1.0, 0.7778, 0.9, 0.5]


def test_missing_artifacts_timings_and_metrics_leave_gaps(run_dir):
    bench_file = run_dir / "bench" / "bench.json"
    bench = json.loads(bench_file.read_text())
    bench["targets"] = [t for t in bench["targets"] if t["name"] != "onnx/fp32"]  # a middle row missing
    bench["timings"] = [t for t in bench["timings"] if (t["target"], t["batch_size"]) != ("student", 32)]
    bench["targets"][2]["metrics"] = None  # bench --skip-accuracy
    del bench["machine"]
    bench_file.write_text(json.dumps(bench))
    rows, context = compression_rows(run_dir)
    assert [r["artifact"] for r in rows] == [
        "teacher (PyTorch fp32)", "student (PyTorch fp32)", "student ONNX Runtime fused_int8 (int8)"
    ]  # fmt: skip
    assert (rows[1]["p50_ms_b32"], rows[1]["speedup_b32"], rows[1]["speedup_b1"]) == (None, None, 2.86)
    assert (rows[2]["metric"], rows[2]["retention"], rows[2]["speedup_b32"]) == (None, None, 8.0)
    assert context["machine"] == {}


def test_markdown_shows_every_figure(run_dir):
    rows, context = compression_rows(run_dir)
    rows[2]["metric"] = rows[2]["retention"] = rows[2]["p50_ms_b32"] = rows[2]["speedup_b32"] = None
    lines = render_compression_markdown(rows, context).splitlines()
    assert lines[0] == "# Compression report: sst2"
    assert lines[2] == (
        "Latency: p50 over fixed-length synthetic inputs at seq 128 on Test CPU; speed-up and retention are relative "
        "to the teacher."
    )
    assert lines[4] == (
        "| artifact | parameters | size MB | dev accuracy | p50 ms b1 | p50 ms b32 | speed-up b1 | speed-up b32 "
        "| retention |"
    )  # the column names are the report's contract with whoever reads it back
    assert lines[5] == "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[6] == "| teacher (PyTorch fp32) | 0.0M | 90.0 | 0.9000 | 20.00 | 400.0 | 1.00x | 1.00x | 100.0% |"
    assert lines[7] == "| student (PyTorch fp32) | 0.0M | 60.0 | 0.7000 | 7.00 | 160.0 | 2.86x | 2.50x | 77.8% |"
    assert (
        lines[8] == "| student ONNX Runtime fp32 (fp32) | 0.0M | 60.5 | n/a | 8.00 | n/a | 2.50x | n/a | n/a |"
    )  # not "n/ax"
    assert (
        lines[9]
        == "| **student ONNX Runtime fused_int8 (int8)** (chosen) | 0.0M | 15.2 | 0.4500 | 5.00 | 50.0 | 4.00x | 8.00x | 50.0% |"
    )
    assert (
        lines[11]
        == "**Fastest correct artifact on this machine: `fused_int8`** (Test CPU; none of the tracked ISA flags)."
    )
    assert lines[12].endswith("fused_int8: fastest at b32_s128 (50.00 ms).")
    assert len(lines) == 13 and lines[1] == lines[3] == lines[10] == ""


def test_markdown_names_the_cpu_and_its_flags_from_either_key_and_rounds_parameters():
    row = {"artifact": "student (PyTorch fp32)", "parameters": 1_050_000, "size_mb": 4.0, "metric": 0.5,
           "p50_ms_b1": 1.0, "p50_ms_b32": 2.0, "speedup_b1": 1.0, "speedup_b32": 1.0, "retention": 1.0}  # fmt: skip
    context = {"task": "sst2", "metric": "accuracy", "chosen": "int8", "chosen_reason": "int8: fastest",
               "machine": {"cpu_model": "EPYC 9R14", "cpu": "other", "cpu_flags": ["avx512_vnni", "amx_int8"]}}  # fmt: skip
    lines = render_compression_markdown([row], context).splitlines()
    assert "on EPYC 9R14;" in lines[2] and lines[6].startswith("| student (PyTorch fp32) | 1.1M | 4.0 |")
    assert lines[7:9] == [
        "",
        "**Fastest correct artifact on this machine: `int8`** (EPYC 9R14; avx512_vnni, amx_int8).",
    ]
    context["machine"] = {"cpu": "bench's own key"}  # bench.json of an older ladc
    assert "on bench's own key;" in render_compression_markdown([row], context)
    del context["machine"]
    assert "on unknown CPU;" in render_compression_markdown([row], context)


def test_plot_puts_each_artifact_at_its_latency_and_accuracy_sized_by_disk_size(run_dir):
    rows, context = compression_rows(run_dir)
    rows[2]["metric"] = None  # an artifact without a dev score is not drawn
    axes = compression_figure(rows, context).axes[0]
    drawn = [(tuple(c.get_offsets()[0]), float(c.get_sizes()[0])) for c in axes.collections]
    assert drawn == [
        ((20.0, 0.90), 40 + 600 * 90.0 / 90.0),
        ((7.0, 0.70), 40 + 600 * 60.0 / 90.0),
        ((5.0, 0.45), 40 + 600 * 15.2 / 90.0),
    ]
    labels = [(t.get_text(), tuple(t.xy), tuple(t.xyann)) for t in axes.texts]
    assert labels == [  # offsets cycle over 3 heights by row, so neighbouring rows' labels do not overlap
        ("teacher (PyTorch fp32)", (20.0, 0.90), (8, 10)),
        ("student (PyTorch fp32)", (7.0, 0.70), (8, -2)),
        ("student ONNX Runtime fused_int8 (int8)", (5.0, 0.45), (8, 10)),  # row 3
    ]
    assert axes.get_xlabel() == "p50 latency, ms (batch 1, seq 128)"
    assert axes.get_ylabel() == "dev accuracy"
    assert axes.get_title() == "ladc compression (sst2): accuracy vs latency (marker area = size)"


def test_plot_style_size_and_canvas(run_dir):
    """The figure's fixed look: 7.5 x 5 in at 120 dpi on an Agg canvas (no display), translucent markers, small
    labels offset in points, a light grid, 20 % margins."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows, context = compression_rows(run_dir)
    figure = compression_figure(rows, context)
    axes = figure.axes[0]
    assert tuple(figure.get_size_inches()) == (7.5, 5.0) and figure.dpi == 120
    assert isinstance(figure.canvas, FigureCanvasAgg)
    assert {c.get_alpha() for c in axes.collections} == {0.6}
    assert {(t.get_fontsize(), t.anncoords) for t in axes.texts} == {(8.0, "offset points")}
    gridlines = axes.xaxis.get_gridlines() + axes.yaxis.get_gridlines()
    assert all(line.get_visible() and line.get_alpha() == 0.3 for line in gridlines)
    assert axes.margins() == (0.2, 0.2)


def test_write_compression_report_writes_json_markdown_and_plot(run_dir):
    markdown = write_compression_report(run_dir)
    assert (run_dir / "report.md").read_text() == markdown
    saved = json.loads((run_dir / "report.json").read_text())
    assert saved["rows"] == compression_rows(run_dir)[0] and saved["task"] == "sst2"
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_bench_or_artifacts_are_user_errors(run_dir):
    bench_file = run_dir / "bench" / "bench.json"
    bench = json.loads(bench_file.read_text())
    bench["targets"] = [{**t, "name": f"elsewhere/{t['name']}"} for t in bench["targets"]]
    bench_file.write_text(json.dumps(bench))
    with pytest.raises(LadcError, match="has none of the pipeline's artifacts"):
        compression_rows(run_dir)
    bench_file.unlink()
    with pytest.raises(LadcError, match="bench.json is missing; run the bench stage first"):
        compression_rows(run_dir)


def test_artifact_rows_are_labelled_by_engine_and_the_precision_that_ran(tmp_path):
    from ladc.bench.compression import _stage_targets

    (tmp_path / "onnx").mkdir()
    artifacts = [{"name": "fp32", "path": "model.onnx", "precision": "fp32"},  # export.json before engines existed
                 {"name": "openvino", "engine": "openvino", "precision": "auto", "inference_precision": "bf16"},
                 {"name": "w4", "engine": "tvm", "precision": "w4"}]  # fmt: skip
    (tmp_path / "onnx" / "export.json").write_text(json.dumps({"artifacts": artifacts}))
    labels = [(label, target, stage) for label, target, stage, _ in _stage_targets(tmp_path)]
    assert labels[-3:] == [
        ("student ONNX Runtime fp32 (fp32)", "onnx/fp32", "onnx"),
        ("student OpenVINO openvino (bf16)", "onnx/openvino", "onnx"),
        ("student tvm w4 (w4)", "onnx/w4", "onnx"),
    ]


def test_a_run_without_an_export_reports_the_models_alone(run_dir):
    (run_dir / "onnx" / "export.json").unlink()
    rows, context = compression_rows(run_dir)
    assert [r["artifact"] for r in rows] == ["teacher (PyTorch fp32)", "student (PyTorch fp32)"]
    assert not context.get("chosen") and "Fastest correct" not in render_compression_markdown(rows, context)
