"""`ladc bench --profile`: where a target's time goes, per operator type, from its engine's own profiler (each engine
module declares how: onnxruntime's session profiling, OpenVINO's per-layer performance counters).

Each profiled target runs `runs` batches of one shape in a separate session/compiled model with profiling on, so the
timed figures of the bench itself are not slowed by it.
"""

from __future__ import annotations

from collections import defaultdict

from ladc.engines import ENGINES

__all__ = ["summarise_ops", "profile_target"]

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


def profile_target(item, feed: dict, threads: int, graph_level: str, runs: int = 20) -> dict:
    """{engine, runs, shape, top_ops} for one loaded bench target (its engine's profiler), or {skipped: why}."""
    target = item.target
    engine = ENGINES[target.engine]
    if engine.profile is None:
        return {"skipped": engine.no_profile or f"ladc has no profiler for {engine.label} targets"}
    samples = engine.profile(target, item.runner, feed, threads, graph_level, runs)
    return {"engine": engine.name, "runs": runs, "shape": list(feed["input_ids"].shape),
            "top_ops": summarise_ops(samples, runs)}  # fmt: skip
