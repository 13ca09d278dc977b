"""Benchmark summaries and rendering: latency statistics, the Markdown/terminal table and the accuracy-latency plot.

Everything here reads the plain report dict that `ladc bench` writes to bench.json, so other commands (a pipeline's
compression report) can render a saved bench.json without re-running anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ladc.engines import ENGINES

__all__ = [
    "DEFINITIONS",
    "machine_info",
    "busy_warning",
    "summarise_latencies",
    "add_speedups",
    "shape_label",
    "render_markdown",
    "render_table",
    "render_plot",
    "write_report",
]

DEFINITIONS = {
    "p50_ms/p90_ms/p99_ms": "latency percentiles of one batch, numpy's linear interpolation (np.percentile default)",
    "samples_per_s": "samples processed / total timed seconds (= batch * 1000 / mean_ms for fixed-size batches)",
    "speedup": "baseline p50_ms / target p50_ms at the same batch size and sequence length",
    "gflops_per_s": "L*(8H^2 + 4HI + 4SH) FLOPs per token x tokens (padding included) / total timed seconds",
    "peak_fraction": "gflops_per_s / --peak-gflops (absent when no peak is given)",
    "roof_fraction": "gflops_per_s / this machine's GEMM roof for the target's precision (--roofline)",
}


def machine_info(provider: str = "cpu") -> dict:
    """CPU model and flags, cores, RAM, load, GPU, library versions, command line and date (report header)."""
    import datetime
    import os
    import platform
    import shlex
    import sys
    from importlib import metadata

    import psutil
    import torch

    from ladc.runs.hardware import cpu_flags, cpu_model

    versions = {}
    engines = [package for engine in ENGINES.values() for package in engine.packages]
    for package in dict.fromkeys(["torch", *engines, "transformers", "optimum", "optimum-onnx", "numpy"]):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name(0) if provider == "cuda" and torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "command": shlex.join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def busy_warning(machine: dict, threads: int) -> list[str]:
    """Timings on a machine already busy with other work are unreliable; say so in the report."""
    import os

    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    machine["load_avg_1m_end"] = round(load_end, 2) if load_end is not None else None
    cores, load_start = machine["logical_cores"] or 1, machine.get("load_avg_1m")
    if load_start is None or (load_start <= 0.5 * cores and load_end - threads <= 0.5 * cores):
        return []
    return [
        f"machine busy: 1-min load average {load_start:.1f} before and {load_end:.1f} after timing on {cores} "
        "cores; other processes competed for the CPU, so absolute timings are unreliable (ratios less so)"
    ]


def summarise_latencies(latencies_ms, samples: int | list[int]) -> dict:
    """Latency percentiles and throughput of timed iterations.

    Args:
        latencies_ms: per-iteration latency (N,) in ms.
        samples: batch size of every iteration, or a list with one size per iteration (last dev batch may be short).

    Returns:
        iterations, p50_ms, p90_ms, p99_ms (numpy linear percentiles), mean_ms, std_ms, and samples_per_s =
        total samples / total seconds.
    """
    latencies = np.asarray(latencies_ms, dtype=np.float64)
    if latencies.size == 0:
        raise ValueError("no latencies to summarise")
    counts = np.full(latencies.size, samples) if np.isscalar(samples) else np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    return {
        "iterations": int(latencies.size),
        "p50_ms": round(float(p50), 4),
        "p90_ms": round(float(p90), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(float(latencies.mean()), 4),
        "std_ms": round(float(latencies.std()), 4),
        "samples_per_s": round(float(counts.sum() * 1000.0 / latencies.sum()), 3),
    }


def _shape_key(row: dict) -> tuple:
    return row["mode"], row["batch_size"], row["seq_len"]


def add_speedups(rows: list[dict], baseline: str) -> list[dict]:
    """Set `speedup` = baseline p50 / row p50 on every row, comparing rows of the same (mode, batch, seq)."""
    base = {_shape_key(r): r["p50_ms"] for r in rows if r["target"] == baseline}
    for row in rows:
        reference = base.get(_shape_key(row))
        row["speedup"] = round(reference / row["p50_ms"], 4) if reference and row["p50_ms"] > 0 else None
    return rows


def shape_label(row: dict) -> str:
    """`b32 s128` for synthetic rows, `b32 dev` for dev-sentence rows."""
    return f"b{row['batch_size']} " + (f"s{row['seq_len']}" if row["mode"] == "synthetic" else "dev")


def _shapes(report: dict) -> list[tuple]:
    return list(dict.fromkeys(_shape_key(r) for r in report["timings"]))


def _row(report: dict, target: str, shape: tuple) -> dict | None:
    return next((r for r in report["timings"] if r["target"] == target and _shape_key(r) == shape), None)


def _metric_names(report: dict) -> list[str]:
    return list(next((t["metrics"] for t in report["targets"] if t.get("metrics")), {}))


def _format_speedup(speedup: float | None) -> str:
    if speedup is None:
        return "-"
    return f"{speedup:.2f}x" if speedup >= 0.1 else f"{speedup:.3f}x"


def _cells(report: dict, target: dict) -> list[str]:
    """Table cells of one target: identity, metrics, then p50 / throughput / speed-up per shape."""
    rss = f"{target['peak_rss_mb']:.0f}" if target.get("peak_rss_mb") is not None else "-"
    cells = [target["name"], target["precision"], f"{target['size_mb']:.1f}", rss]
    cells += [f"{target['metrics'][m]:.4f}" if target.get("metrics") else "-" for m in _metric_names(report)]
    for shape in _shapes(report):
        row = _row(report, target["name"], shape)
        speedup = row.get("speedup") if row else None
        cells += [f"{row['p50_ms']:.2f}", f"{row['samples_per_s']:.1f}"] if row else ["-", "-"]
        cells.append(_format_speedup(speedup))
    return cells


def _headers(report: dict) -> list[str]:
    headers = ["target", "precision", "size MB", "peak RSS MB", *_metric_names(report)]
    for shape in _shapes(report):
        label = shape_label({"mode": shape[0], "batch_size": shape[1], "seq_len": shape[2]})
        headers += [f"p50 ms ({label})", f"samples/s ({label})", f"speed-up ({label})"]
    return headers


def _isolation_text(runtime: dict) -> str:
    isolation = runtime.get("isolation")
    if isinstance(isolation, dict):
        return f"{isolation['mode']} ({isolation['how']})"
    return f"interleaved in blocks of {runtime.get('interleave_block')}"  # bench.json written before isolation


def _reuse_lines(report: dict) -> list[str]:
    """Which rows bench took from an export's `--select fastest` instead of timing them (bench.json `source`)."""
    reused = [
        f"{row['target']} {shape_label(row)}" for row in report["timings"] if row.get("source") == "export selection"
    ]
    if not reused:
        return []
    return [f"- not timed here ({len(reused)} rows: {', '.join(reused)}): {report['runtime'].get('selection_reuse')}"]


def _roofline_lines(report: dict) -> list[str]:
    roofs = report.get("roofline")
    if not roofs:
        return []
    lines = [
        f"- roofline (this machine, batch {roofs['batch_size']} x seq {roofs['seq_len']}, {roofs['threads']} "
        f"threads): fp32 {roofs['fp32']} GFLOP/s, bf16 {roofs['bf16']} GFLOP/s, int8 {roofs['int8']} GOP/s"
    ]
    for row in report["timings"]:
        if row.get("roof_fraction") is not None:
            lines.append(
                f"  - {row['target']} {shape_label(row)}: {row['gflops_per_s']:.1f} G/s = "
                f"{row['roof_fraction']:.1%} of the {row['roof']} roof"
            )
    return lines


def _profile_lines(report: dict) -> list[str]:
    lines = []
    for target in report["targets"]:
        profile = target.get("profile")
        if not profile or "top_ops" not in profile:
            continue
        ops = ", ".join(f"{op['op']} {op['ms_per_run']:.3f} ms ({op['share']:.0%})" for op in profile["top_ops"][:6])
        lines.append(f"- profile {target['name']} ({profile['engine']}, batch x seq {profile['shape']}): {ops}")
    return lines


def _settings_line(runtime: dict) -> str:
    """Provider and threads, then each engine's own settings (onnxruntime's graph level and pools)."""
    texts = [text for engine in ENGINES.values() if (text := engine.runtime_text(runtime))]
    return f"- provider {runtime['provider']}, {runtime['threads']} threads" + "".join(f"; {text}" for text in texts)


def render_markdown(report: dict) -> str:
    """bench.md: a README-ready table plus the machine, settings, command and definitions behind it."""
    machine, runtime = report["machine"], report["runtime"]
    headers = _headers(report)
    lines = [
        f"# ladc bench: {report['task']}",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(headers) - 2)) + "|",
        *("| " + " | ".join(_cells(report, t)) + " |" for t in report["targets"]),
        "",
        f"Speed-up is relative to `{report['baseline']}`. Metrics on the full dev set"
        + (" (skipped)." if not _metric_names(report) else "."),
        "",
        f"- machine: {machine['cpu']} ({machine['physical_cores']} physical / {machine['logical_cores']} logical "
        f"cores, {machine['ram_gb']} GiB RAM){', GPU ' + machine['gpu'] if machine.get('gpu') else ''}",
        _settings_line(runtime),
        f"- {runtime['warmup']} warm-up runs, then {runtime['iterations'] or 'timed'} iterations"
        + (f" / at least {runtime['min_duration_s']} s" if runtime.get("min_duration_s") else "")
        + f" per target and shape; isolation: {_isolation_text(runtime)}",
        *_reuse_lines(report),
        f"- CPU flags: {', '.join(machine.get('cpu_flags') or []) or 'none of the tracked ISA flags'}",
        *_roofline_lines(report),
        *_profile_lines(report),
        f"- versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}",
        f"- date: {machine['date']}; command: `{machine['command']}`",
        f"- memory: {runtime['memory_method']}",
        *(f"- {name}: {text}" for name, text in DEFINITIONS.items()),
        *(f"- warning: {w}" for w in report.get("warnings", [])),
    ]
    return "\n".join(lines) + "\n"


def render_table(report: dict):
    """A rich Table for the terminal: one row per target and shape (narrower than bench.md's wide table)."""
    from rich.table import Table

    metrics = _metric_names(report)
    table = Table(title=f"ladc bench {report['task']}: speed-up vs {report['baseline']}")
    table.add_column("target", overflow="fold")
    for header in ["precision", "MB", *metrics, "shape", "p50 ms", "p99 ms", "samples/s", "speed-up"]:
        table.add_column(header, justify="left" if header in ("precision", "shape") else "right", no_wrap=True)
    for target in report["targets"]:
        cells = _cells(report, target)
        identity = [*cells[:3], *cells[4 : 4 + len(metrics)]]
        for row in (r for r in report["timings"] if r["target"] == target["name"]):
            figures = [f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}", f"{row['samples_per_s']:.1f}"]
            table.add_row(*identity, shape_label(row), *figures, _format_speedup(row.get("speedup")))
            identity = [""] * len(identity)
    return table


def render_plot(report: dict, path: str | Path) -> None:
    """Accuracy (headline metric) vs p50 latency at the first shape; marker area ~ model size, points labelled.

    Without metrics (--skip-accuracy) the y axis shows throughput instead.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shape = _shapes(report)[0]
    label = shape_label({"mode": shape[0], "batch_size": shape[1], "seq_len": shape[2]})
    metric = report["headline_metric"] if _metric_names(report) else None
    points = []
    for target in report["targets"]:
        row = _row(report, target["name"], shape)
        y = target["metrics"][metric] if metric else row["samples_per_s"]
        points.append((target["name"], row["p50_ms"], y, target["size_mb"]))
    figure = Figure(figsize=(7.5, 5.0), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    largest = max(p[3] for p in points) or 1.0
    for i, (name, x, y, size) in enumerate(points):
        axes.scatter([x], [y], s=40 + 600 * size / largest, alpha=0.6)
        # staggered offsets keep labels of near-identical points (the same model twice) apart
        axes.annotate(f"{name} ({size:.3g} MB)", (x, y), textcoords="offset points", xytext=(8, 10 - 12 * (i % 3)),
                      fontsize=8)  # fmt: skip
    axes.set_xlabel(f"p50 latency, ms ({label})")
    axes.set_ylabel(f"dev {metric}" if metric else f"samples/s ({label})")
    axes.set_title(f"ladc bench {report['task']}: {'accuracy' if metric else 'throughput'} vs latency "
                   "(marker area = size)")  # fmt: skip
    axes.grid(True, alpha=0.3)
    axes.margins(0.2)
    figure.tight_layout()
    figure.savefig(str(path), format="png")


def write_report(report: dict, output: str | Path, overwrite: bool = False) -> Path:
    """Write bench.json, bench.md, bench.png (and config.yaml when the report has a config) into `output` atomically:
    the directory is built beside it and renamed into place."""
    from ladc.runs.config import save_yaml
    from ladc.runs.io import atomic_dir, atomic_write_json, atomic_write_text
    from ladc.runs.runs import check_output

    output = Path(output)
    check_output(output, overwrite=overwrite)  # bench cannot resume: no --resume hint
    with atomic_dir(output) as tmp:
        atomic_write_json(tmp / "bench.json", report)
        atomic_write_text(tmp / "bench.md", render_markdown(report))
        render_plot(report, tmp / "bench.png")
        if "config" in report:
            save_yaml(
                report["config"], tmp / "config.yaml", header="rerun: ladc bench --config config.yaml --overwrite"
            )
    return output
