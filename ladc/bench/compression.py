"""The pipeline's compression report: what each stage artifact costs and keeps, relative to the teacher."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ladc.engines import ENGINES, entry_engine
from ladc.errors import LadcError
from ladc.runs.export_manifest import is_export_dir, read_export_manifest
from ladc.runs.io import atomic_write_json, atomic_write_text

__all__ = [
    "count_parameters", "bench_row", "find_target", "fmt_figure", "compression_rows", "compression_figure",
    "render_compression_markdown", "write_compression_report",
]  # fmt: skip

# the PyTorch models; every artifact the export dir's export.json lists follows them
MODEL_ROWS = (("teacher (PyTorch fp32)", "teacher"), ("student (PyTorch fp32)", "student"))


def count_parameters(model_dir: Path) -> int:
    """Parameters of an HF model dir, read from the safetensors header (no weights are loaded)."""
    total = 0
    # model.safetensors or its shards: LAD's gates and a narrow student's projection (gates.safetensors,
    # projection.safetensors) train with the student but are not part of the deployed model
    for path in sorted(Path(model_dir).glob("model*.safetensors")):
        with path.open("rb") as handle:
            header_len = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(header_len))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total


def bench_row(bench: dict, target: str, batch_size: int, mode: str = "synthetic") -> dict:
    """bench.json's timing row of `target` at `batch_size`: synthetic (fixed length; rows without a mode, from older
    bench.json files, count as synthetic) or `dev` (real sentences); {} when there is none."""
    rows = [
        r for r in bench["timings"]
        if r["target"] == target and r["batch_size"] == batch_size and r.get("mode", "synthetic") == mode
    ]  # fmt: skip
    return rows[0] if rows else {}


def _p50(bench: dict, target: str, batch_size: int) -> float | None:
    return bench_row(bench, target, batch_size).get("p50_ms")


def find_target(bench: dict, name: str) -> dict | None:
    """bench.json's entry of the target called `name`, or None."""
    return next((entry for entry in bench["targets"] if entry["name"] == name), None)


def _stage_targets(run_dir: Path) -> list[tuple[str, str, str, dict]]:
    """(row label, bench target name, stage, export.json entry or {}) for the models and every exported artifact."""
    rows = [(label, stage, stage, {}) for label, stage in MODEL_ROWS]
    if is_export_dir(run_dir / "onnx"):
        for artifact in read_export_manifest(run_dir / "onnx").artifacts:
            engine = entry_engine(artifact)
            engine = ENGINES[engine].label if engine in ENGINES else engine
            precision = artifact.get("inference_precision", artifact["precision"])
            label = f"student {engine} {artifact['name']} ({precision})"
            rows.append((label, f"onnx/{artifact['name']}", "onnx", artifact))
    return rows


def _selection(run_dir: Path) -> dict | None:
    return read_export_manifest(run_dir / "onnx").selection if is_export_dir(run_dir / "onnx") else None


def compression_rows(run_dir: Path) -> tuple[list[dict], dict]:
    """One row per stage artifact with params, size, dev metric, p50 at batch 1 and 32, speed-up and retention."""
    run_dir = Path(run_dir)
    bench_file = run_dir / "bench" / "bench.json"
    if not bench_file.is_file():
        raise LadcError(f"{bench_file} is missing; run the bench stage first")
    bench = json.loads(bench_file.read_text())
    metric = bench["headline_metric"]
    selection = _selection(run_dir)
    rows = []
    for label, name, stage, artifact in _stage_targets(run_dir):
        entry = find_target(bench, name)
        if entry is None:
            continue
        params_dir = run_dir / ("student" if stage == "onnx" else stage)
        rows.append({
            "artifact": label, "path": str(Path(entry["path"]).resolve().relative_to(run_dir.resolve())),
            "parameters": count_parameters(params_dir), "size_mb": entry["size_mb"],
            "metric": (entry.get("metrics") or {}).get(metric),
            "p50_ms_b1": _p50(bench, entry["name"], 1), "p50_ms_b32": _p50(bench, entry["name"], 32),
            "chosen": bool(selection and artifact.get("name") == selection["chosen"]),
        })  # fmt: skip
    if not rows:
        raise LadcError(f"{bench_file} has none of the pipeline's artifacts")
    teacher = rows[0]
    for row in rows:
        for batch in ("b1", "b32"):
            base, own = teacher[f"p50_ms_{batch}"], row[f"p50_ms_{batch}"]
            row[f"speedup_{batch}"] = round(base / own, 2) if base and own else None
        row["retention"] = round(row["metric"] / teacher["metric"], 4) if row["metric"] and teacher["metric"] else None
    context = {"task": bench["task"], "metric": metric, "machine": bench.get("machine", {}),
               "chosen": selection["chosen"] if selection else None,
               "chosen_reason": selection["reason"] if selection else None}  # fmt: skip
    return rows, context


def fmt_figure(value, spec: str, unit: str = "", missing: str = "n/a") -> str:
    """`value` formatted with `spec` and `unit`, or `missing` for None (report tables)."""
    return missing if value is None else format(value, spec) + unit


def render_compression_markdown(rows: list[dict], context: dict) -> str:
    metric = context["metric"]
    machine = context.get("machine", {})
    cpu = machine.get("cpu_model") or machine.get("cpu") or "unknown CPU"
    lines = [
        f"# Compression report: {context['task']}",
        "",
        f"Latency: p50 over fixed-length synthetic inputs at seq 128 on {cpu}; speed-up and retention are relative "
        "to the teacher.",
        "",
        f"| artifact | parameters | size MB | dev {metric} | p50 ms b1 | p50 ms b32 | speed-up b1 | speed-up b32 "
        "| retention |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {'**' + r['artifact'] + '** (chosen)' if r.get('chosen') else r['artifact']} "
            f"| {r['parameters'] / 1e6:.1f}M | {r['size_mb']:.1f} | {fmt_figure(r['metric'], '.4f')} "
            f"| {fmt_figure(r['p50_ms_b1'], '.2f')} | {fmt_figure(r['p50_ms_b32'], '.1f')} | {fmt_figure(r['speedup_b1'], '.2f', 'x')} "
            f"| {fmt_figure(r['speedup_b32'], '.2f', 'x')} | {fmt_figure(r['retention'], '.1%')} |"
        )
    if context.get("chosen"):
        flags = ", ".join(machine.get("cpu_flags") or []) or "none of the tracked ISA flags"
        lines += [
            "",
            f"**Fastest correct artifact on this machine: `{context['chosen']}`** ({cpu}; {flags}).",
            f"Why (`ladc export --select fastest`, timed in interleaved rounds): {context['chosen_reason']}.",
        ]
    return "\n".join(lines) + "\n"


def compression_figure(rows: list[dict], context: dict):
    """Accuracy against batch-1 latency, one marker per artifact with both figures, its area growing with the
    artifact's size on disk; returns the matplotlib Figure (drawn on an Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 5.0), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    largest = max(r["size_mb"] for r in rows) or 1.0
    for i, r in enumerate(rows):
        if r["p50_ms_b1"] is None or r["metric"] is None:
            continue
        axes.scatter([r["p50_ms_b1"]], [r["metric"]], s=40 + 600 * r["size_mb"] / largest, alpha=0.6)
        axes.annotate(r["artifact"], (r["p50_ms_b1"], r["metric"]), textcoords="offset points",
                      xytext=(8, 10 - 12 * (i % 3)), fontsize=8)  # fmt: skip
    axes.set_xlabel("p50 latency, ms (batch 1, seq 128)")
    axes.set_ylabel(f"dev {context['metric']}")
    axes.set_title(f"ladc compression ({context['task']}): accuracy vs latency (marker area = size)")
    axes.grid(True, alpha=0.3)
    axes.margins(0.2)
    figure.tight_layout()
    return figure


def render_compression_plot(rows: list[dict], context: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    compression_figure(rows, context).savefig(str(tmp), format="png")
    tmp.replace(path)


def write_compression_report(run_dir: Path, extra_markdown: str = "") -> str:
    """Write report.md, report.png and report.json into the run dir; returns the Markdown.

    `extra_markdown` (the pipeline's frontier section) is appended to report.md.
    """
    run_dir = Path(run_dir)
    rows, context = compression_rows(run_dir)
    markdown = render_compression_markdown(rows, context) + (f"\n{extra_markdown}" if extra_markdown else "")
    render_compression_plot(rows, context, run_dir / "report.png")
    atomic_write_json(run_dir / "report.json", {"rows": rows, **context})
    atomic_write_text(run_dir / "report.md", markdown)  # last: its presence marks the stage finished
    return markdown
