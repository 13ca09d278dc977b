"""`ladc bench --profile`: where a target's time goes, per operator type, from the engine's own profiler
(onnxruntime's session profiling, OpenVINO's per-layer performance counters).

Each profiled target runs `runs` batches of one shape in a separate session/compiled model with profiling on, so the
timed figures of the bench itself are not slowed by it.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

__all__ = ["summarise_ops", "profile_onnxruntime", "profile_openvino", "profile_target"]

TOP_OPS = 12


def summarise_ops(durations_us: list[tuple[str, float]], runs: int, top: int = TOP_OPS) -> list[dict]:
    """Group (op type, microseconds) samples: per op type, ms per run, share of the total and calls per run.

    Args:
        durations_us: one (op_type, duration in µs) per executed node.
        runs: how many inferences the samples cover.
        top: rows kept (the rest are folded into `other`).

    Returns:
        Rows sorted by time, each {op, ms_per_run, share, calls_per_run}.
    """
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for op, duration in durations_us:
        totals[op] += duration
        calls[op] += 1
    grand = sum(totals.values()) or 1.0
    rows = [{"op": op, "ms_per_run": round(us / runs / 1000, 4), "share": round(us / grand, 4),
             "calls_per_run": round(calls[op] / runs, 2)} for op, us in totals.items()]  # fmt: skip
    rows.sort(key=lambda row: row["ms_per_run"], reverse=True)
    if len(rows) > top:
        rest = rows[top:]
        rows = rows[:top] + [{"op": "other", "ms_per_run": round(sum(r["ms_per_run"] for r in rest), 4),
                              "share": round(sum(r["share"] for r in rest), 4),
                              "calls_per_run": round(sum(r["calls_per_run"] for r in rest), 2)}]  # fmt: skip
    return rows


def profile_onnxruntime(path: str, feed: dict, threads: int, graph_level: str, runs: int) -> list[dict]:
    """Per-op-type time of an .onnx file under onnxruntime's profiler (kernel events, op_name)."""
    from ladc.deploy.runners import open_session

    with tempfile.TemporaryDirectory() as tmp:
        session = open_session(path, threads=threads, graph_level=graph_level, profile_prefix=str(Path(tmp) / "ort"))
        names = {i.name for i in session.get_inputs()}
        inputs = {k: v for k, v in feed.items() if k in names}
        session.run(None, inputs)  # warm-up, excluded below by counting only the last `runs` model runs
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(nodes) // (runs + 1)
    samples = [(e["args"].get("op_name", "?"), float(e["dur"])) for e in nodes[per_run:]]
    return summarise_ops(samples, runs)


def profile_openvino(runner, feed: dict, runs: int, path: str, threads: int, precision: str | None) -> list[dict]:
    """Per-layer-type time of an OpenVINO model from its performance counters (PERF_COUNT)."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "PERF_COUNT": "YES",
              "INFERENCE_NUM_THREADS": str(threads)}  # fmt: skip
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    inputs = runner.prepare(feed)
    request.infer(inputs)
    samples: list[tuple[str, float]] = []
    for _ in range(runs):
        request.infer(inputs)
        samples += [(info.node_type, info.real_time.total_seconds() * 1e6) for info in request.profiling_info
                    if info.status == info.Status.EXECUTED]  # fmt: skip
    return summarise_ops(samples, runs)


def profile_target(item, feed: dict, threads: int, graph_level: str, runs: int = 20) -> dict:
    """{engine, runs, shape, top_ops} for one loaded bench target, or {skipped: why}."""
    target = item.target
    shape = list(feed["input_ids"].shape)
    if target.kind == "onnx":
        ops = profile_onnxruntime(target.path, feed, threads, graph_level, runs)
        return {"engine": "onnxruntime", "runs": runs, "shape": shape, "top_ops": ops}
    if target.kind == "openvino":
        precision = target.runtime.get("inference_precision")
        ops = profile_openvino(item.runner, feed, runs, target.path, threads, precision)
        return {"engine": "openvino", "runs": runs, "shape": shape, "top_ops": ops}
    return {"skipped": "PyTorch targets: use torch.profiler; ladc profiles the onnxruntime and OpenVINO engines"}
