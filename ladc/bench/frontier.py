"""The accuracy-speed frontier of a pipeline with several student shapes: one point per model at its chosen artifact,
the teacher's own points beside them, and the fastest student within `max_drop` points of the teacher, judged on the
train holdout (never on dev, which the table reports).
"""

from __future__ import annotations

import json
from pathlib import Path

from ladc.bench.compression import bench_row, count_parameters, find_target, fmt_figure
from ladc.errors import LadcError
from ladc.runs.export_manifest import is_export_dir, read_export_manifest
from ladc.runs.io import atomic_write_json, atomic_write_text

__all__ = ["flops_per_sequence", "frontier_points", "pick_fastest_within", "render_frontier_markdown",
           "frontier_figure", "write_frontier_report"]  # fmt: skip

SEQ_LEN = 128  # the bench's synthetic length: FLOPs are quoted at it


def flops_per_sequence(shape: dict, seq_len: int = SEQ_LEN) -> int:
    """Multiply-adds x 2 of the encoder and pooler for one sequence of `seq_len` tokens (embeddings are lookups).

    Per layer with hidden h, FFN i and length L: Q, K, V and the output dense ``4 * 2 L h^2``, scores and context
    ``2 * 2 L^2 h``, the FFN ``2 * 2 L h i``; the pooler ``2 h^2``.
    """
    hidden, ffn, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_layers"]
    per_layer = 8 * seq_len * hidden**2 + 4 * seq_len**2 * hidden + 4 * seq_len * hidden * ffn
    return layers * per_layer + 2 * hidden**2


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _chosen(export_dir: Path) -> str | None:
    """The artifact an export dir's `--select fastest` chose, if any."""
    return read_export_manifest(export_dir).chosen if is_export_dir(export_dir) else None


def _shape(model_dir: Path) -> dict:
    manifest = _read(model_dir / "ladc.json")
    if manifest.get("student_shape"):
        return manifest["student_shape"]
    config = _read(model_dir / "config.json")
    return {"num_layers": config.get("num_hidden_layers"), "hidden_size": config.get("hidden_size"),
            "intermediate_size": config.get("intermediate_size"), "num_heads": config.get("num_attention_heads")}  # fmt: skip


def _point(run_dir: Path, bench: dict, label: str, model_stage: str, target: str, role: str) -> dict | None:
    """One model at one artifact: shape, size, dev metric (the artifact's own, from bench), holdout metric (the
    PyTorch model's selection score), p50/p90 at batch 1 and 32."""
    entry = find_target(bench, target)
    if entry is None:
        return None
    metric = bench["headline_metric"]
    model_dir = run_dir / model_stage
    metrics = _read(model_dir / "metrics.json")
    selection = metrics.get("selection") or {}
    shape = _shape(model_dir)
    b1, b32 = bench_row(bench, target, 1), bench_row(bench, target, 32)
    dev = (entry.get("metrics") or {}).get(metric)
    return {
        "label": label, "role": role, "target": target, "shape": shape,
        "shape_name": f"{shape['num_layers']}L-{shape['hidden_size']}H-{shape['intermediate_size']}I",
        "parameters": count_parameters(model_dir), "gflops": round(flops_per_sequence(shape) / 1e9, 3),
        "precision": entry.get("precision"), "dev": dev if dev is not None else (metrics.get("dev") or {}).get(metric),
        "holdout": (selection.get("best") or {}).get(metric) if selection.get("on") == "train-holdout" else None,
        "holdout_examples": selection.get("examples"),
        "p50_ms_b1": b1.get("p50_ms"), "p90_ms_b1": b1.get("p90_ms"),
        "p50_ms_b32": b32.get("p50_ms"), "p90_ms_b32": b32.get("p90_ms"),
        "p50_ms_dev_b1": bench_row(bench, target, 1, "dev").get("p50_ms"),
        "p50_ms_dev_b32": bench_row(bench, target, 32, "dev").get("p50_ms"),
    }  # fmt: skip


def frontier_points(run_dir: Path, students: list[tuple[str, str, str]]) -> list[dict]:
    """Points of the teacher (PyTorch fp32 and its chosen artifact) and of each student's chosen artifact.

    Args:
        run_dir: the pipeline's run dir (bench/bench.json, teacher/, teacher-onnx/ and the student stages in it).
        students: (label, model stage dir, export stage dir) per student.
    """
    bench = _read(run_dir / "bench" / "bench.json")
    if not bench:
        raise LadcError(f"{run_dir / 'bench' / 'bench.json'} is missing; run the bench stage first")
    wanted = [("teacher (PyTorch fp32)", "teacher", "teacher", "teacher")]
    teacher_choice = _chosen(run_dir / "teacher-onnx")
    if teacher_choice:
        wanted.append(
            (f"teacher, best ladc artifact ({teacher_choice})", "teacher", f"teacher-onnx/{teacher_choice}", "teacher")
        )
    for label, model_stage, export_stage in students:
        chosen = _chosen(run_dir / export_stage)
        if chosen:
            wanted.append((f"{label} ({chosen})", model_stage, f"{export_stage}/{chosen}", "student"))
    points = [p for p in (_point(run_dir, bench, *w) for w in wanted) if p is not None]
    teacher = points[0]
    teacher_best = points[1] if len(points) > 1 and points[1]["role"] == "teacher" else None
    for point in points:
        for batch in ("b1", "b32"):
            own = point[f"p50_ms_{batch}"]
            point[f"speedup_{batch}"] = _ratio(teacher[f"p50_ms_{batch}"], own)
            point[f"speedup_vs_teacher_best_{batch}"] = _ratio(teacher_best and teacher_best[f"p50_ms_{batch}"], own)
        point["retention"] = _ratio(point["dev"], teacher["dev"], digits=4)
    return points


def _ratio(numerator, denominator, digits: int = 2):
    return round(numerator / denominator, digits) if numerator and denominator else None


def pick_fastest_within(points: list[dict], max_drop: float, batch: str = "b32") -> tuple[dict | None, str]:
    """The fastest student (p50 at `batch`) whose train-holdout metric is within `max_drop` points of the teacher's.

    Returns:
        (the point or None, one sentence saying why).
    """
    teacher = points[0]
    if teacher.get("holdout") is None:
        return (
            None,
            "no choice: the teacher was not selected on a train holdout, so there is no holdout score to compare",
        )
    floor = teacher["holdout"] - max_drop / 100
    students = [p for p in points if p["role"] == "student" and p.get(f"p50_ms_{batch}") is not None]
    within = [p for p in students if p.get("holdout") is not None and p["holdout"] >= floor]
    if not within:
        return None, (
            f"no student is within {max_drop:g} points of the teacher's holdout {teacher['holdout']:.4f} "
            f"({len(students)} compared)"
        )
    best = min(within, key=lambda p: p[f"p50_ms_{batch}"])
    return best, (
        f"fastest at {batch} of the {len(within)} students whose holdout score is within {max_drop:g} points of the "
        f"teacher's ({best['holdout']:.4f} vs {teacher['holdout']:.4f} on {teacher.get('holdout_examples')} rows)"
    )


def render_frontier_markdown(points: list[dict], metric: str, pick: dict | None, why: str) -> str:
    lines = [
        "## Accuracy-speed frontier",
        "",
        f"One row per model at its chosen artifact; p50 (p90) ms at seq {SEQ_LEN}, synthetic tokens, and p50 on real dev "
        "sentences (dynamic padding; `bench.real: true`). Speed-up (synthetic) against the teacher in PyTorch fp32 and "
        "against the teacher's own best ladc artifact (no distillation).",
        "",
        f"| model | shape | params | GFLOPs/seq | dev {metric} | holdout | retention | b1 ms | b32 ms "
        "| real-length b1 / b32 ms | speed-up b1 / b32 | vs teacher's best b1 / b32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        name = f"**{p['label']}** (picked)" if pick is not None and p is pick else p["label"]
        lines.append(
            f"| {name} | {p['shape_name']} | {p['parameters'] / 1e6:.1f}M | {p['gflops']:.2f} "
            f"| {fmt_figure(p['dev'], '.4f')} | {fmt_figure(p['holdout'], '.4f')} | {fmt_figure(p['retention'], '.1%')} "
            f"| {fmt_figure(p['p50_ms_b1'], '.2f')} ({fmt_figure(p['p90_ms_b1'], '.2f')}) "
            f"| {fmt_figure(p['p50_ms_b32'], '.1f')} ({fmt_figure(p['p90_ms_b32'], '.1f')}) "
            f"| {fmt_figure(p['p50_ms_dev_b1'], '.2f')} / {fmt_figure(p['p50_ms_dev_b32'], '.1f')} "
            f"| {fmt_figure(p['speedup_b1'], '.2f', 'x')} / {fmt_figure(p['speedup_b32'], '.2f', 'x')} "
            f"| {fmt_figure(p['speedup_vs_teacher_best_b1'], '.2f', 'x')} / {fmt_figure(p['speedup_vs_teacher_best_b32'], '.2f', 'x')} |"
        )
    picked = f"`{pick['label']}`: {why}" if pick is not None else why
    return "\n".join([*lines, "", f"**Picked:** {picked}.", ""])


def frontier_figure(points: list[dict], metric: str):
    """Dev metric against p50 at batch 1 and at batch 32 (log scale), students as circles, the teacher's points as
    stars; returns the matplotlib Figure (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figure = Figure(figsize=(11.0, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    for index, batch in enumerate(("b1", "b32"), start=1):
        axes = figure.add_subplot(1, 2, index)
        for i, p in enumerate(points):
            x, y = p[f"p50_ms_{batch}"], p["dev"]
            if x is None or y is None:
                continue
            is_teacher = p["role"] == "teacher"
            axes.scatter([x], [y], marker="*" if is_teacher else "o", s=160 if is_teacher else 60,
                         color="tab:red" if is_teacher else "tab:blue", alpha=0.8)  # fmt: skip
            name = p["label"].removeprefix("student-").replace("teacher, best ladc artifact", "teacher")
            axes.annotate(name, (x, y), textcoords="offset points", xytext=(6, 8 - 11 * (i % 3)), fontsize=7)
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel(f"p50 latency, ms (batch {batch[1:]}, seq {SEQ_LEN}, log scale)")
        axes.set_ylabel(f"dev {metric}")
        axes.grid(True, alpha=0.3)
        axes.margins(0.15)
    figure.suptitle("accuracy vs latency: students at their chosen artifact (circles), teacher (stars)")
    figure.tight_layout()
    return figure


def write_frontier_report(run_dir: Path, students: list[tuple[str, str, str]], max_drop: float) -> str:
    """frontier.md, frontier.png and frontier.json in the run dir; returns the Markdown."""
    run_dir = Path(run_dir)
    points = frontier_points(run_dir, students)
    metric = _read(run_dir / "bench" / "bench.json")["headline_metric"]
    pick, why = pick_fastest_within(points, max_drop)
    markdown = render_frontier_markdown(points, metric, pick, why)
    tmp = run_dir / ".frontier.png.tmp"
    frontier_figure(points, metric).savefig(str(tmp), format="png")
    tmp.replace(run_dir / "frontier.png")
    atomic_write_json(run_dir / "frontier.json", {"points": points, "max_drop": max_drop,
                                                  "picked": pick["label"] if pick else None, "why": why})  # fmt: skip
    atomic_write_text(run_dir / "frontier.md", markdown)
    return markdown
