"""`ladc export --select fastest`: time every artifact that passed parity on this machine and rank them, per batch size
and sequence length, so the artifact a user deploys is the fastest correct one for the CPU at hand.

Shapes: batch 1 and batch 32 at sequence 128 (synthetic ids, no padding), and real dev sentences with dynamic
padding at batch 1 and at the parity batch size. Artifacts are timed in interleaved rounds (ladc.measure.time_rounds,
onnxruntime pools not spinning), with the threads a deployment would use: a 2-core VM drifts 20-50 % between runs,
and timing each artifact once, alone, let that drift pick the winner. A round's slowdown of an artifact is the
geometric mean over shapes of its p50 in that round over the round's best p50; its score is the median of those, with
an order-statistic interval (INTERVAL_COVERAGE). The fastest artifact's interval overlapping another's is a tie: the
smaller artifact on disk is taken, then the more accurate (parity metric), and `reason` says so.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ladc.runs.config import ExportConfig
from ladc.runs.export_manifest import ExportManifest

__all__ = [
    "SELECT_SEQ_LEN", "selection_shapes", "synthetic_shape", "rank", "slowdowns", "median_interval", "break_ties",
    "select_fastest", "selection_latencies", "print_selection",
]  # fmt: skip

SELECT_SEQ_LEN = 128
SELECT_WARMUP = 1  # untimed runs per artifact and shape, round-robin (arena growth at a new shape)
SELECT_BLOCK = 3  # most runs per artifact per round: a round's p50 is the median of up to 3 back-to-back runs
SELECT_TURN_S = 0.25  # a turn ends past this: a 0.5 s batch-32 call gets one run per round, not three
SELECT_MAX_S = 1.5  # timed seconds per artifact and shape after which it leaves the rounds (it keeps MIN_ROUNDS)
INTERVAL_COVERAGE = 0.9  # of the median's order-statistic interval (3 rounds give min..max, 75 %)


def synthetic_shape(batch_size: int, seq_len: int) -> str:
    """Name of a synthetic selection shape in export.json's `ranking` (bench looks its timings up by it)."""
    return f"b{batch_size}_s{seq_len}"


def _single_rows(batches: list[dict], limit: int) -> list[dict]:
    """Batch-1 feeds of the first `limit` parity examples, each trimmed to its own length (no padding)."""
    rows = []
    for batch in batches:
        for i in range(len(batch["input_ids"])):
            length = int(batch["attention_mask"][i].sum())
            rows.append({k: v[i : i + 1, :length] for k, v in batch.items()})
            if len(rows) == limit:
                return rows
    return rows


def selection_shapes(tokenizer, parity_batches: list[dict], max_positions: int, seed: int = 0) -> dict[str, list]:
    """Name -> list of feeds cycled while timing: b1_s128, b32_s128, dev_b1, dev_bN (N = parity batch size)."""
    from ladc.measure import synthetic_batch

    seq_len = min(SELECT_SEQ_LEN, max_positions)
    shapes = {
        synthetic_shape(1, seq_len): [synthetic_batch(tokenizer, 1, seq_len, seed)],
        synthetic_shape(32, seq_len): [synthetic_batch(tokenizer, 32, seq_len, seed)],
        "dev_b1": _single_rows(parity_batches, 64),
        f"dev_b{len(parity_batches[0]['input_ids'])}": parity_batches[:16],
    }
    return shapes


def _unique_candidates(manifest: ExportManifest) -> tuple[list[dict], list[dict]]:
    """Artifacts that passed parity and run on the CPU, minus rows that run the very same thing as an earlier one
    (OpenVINO's default precision is f32 on CPUs without AMX: then `openvino` and `openvino_f32` are one model)."""
    candidates, dropped, seen = [], [], {}
    for entry in manifest.artifacts:
        name = entry["name"]
        if not entry["parity"]["accepted"]:
            dropped.append({"name": name, "reason": f"failed parity: {entry['parity']['reason']}"})
        elif entry["provider"] != "CPUExecutionProvider":
            dropped.append({"name": name, "reason": "runs on CUDA; selection times the CPU"})
        else:
            precision = entry.get("inference_precision", entry["precision"])
            key = (entry["path"], entry.get("engine"), precision)
            if key in seen:
                dropped.append({"name": name, "reason": f"identical to {seen[key]} here ({precision})",
                                "same_as": seen[key]})  # fmt: skip
                continue
            seen[key] = name
            candidates.append(entry)
    return candidates, dropped


def rank(rounds_ms: dict[str, list[list[float]]], samples_per_call: list[int]) -> list[dict]:
    """Rows sorted by p50 over all runs (fastest first): name, p50_ms, mean_ms, samples_per_s, runs, rounds,
    round_p50_ms (the median of each round's runs) and latencies_ms (every run, in order).

    Args:
        rounds_ms: artifact name -> its latencies per round at one shape (ladc.measure.time_rounds).
        samples_per_call: examples in the k-th feed of that shape (cycled over runs), for samples_per_s.
    """
    rows = []
    for name, rounds in rounds_ms.items():
        latencies = [ms for turn in rounds for ms in turn]
        samples = sum(samples_per_call[k % len(samples_per_call)] for k in range(len(latencies)))
        rows.append({
            "name": name, "p50_ms": round(float(np.percentile(latencies, 50)), 4),
            "mean_ms": round(float(np.mean(latencies)), 4),
            "samples_per_s": round(samples / (sum(latencies) / 1000.0), 2), "runs": len(latencies),
            "rounds": len(rounds), "round_p50_ms": [round(float(np.median(turn)), 4) for turn in rounds],
            "latencies_ms": [round(ms, 4) for ms in latencies],
        })  # fmt: skip
    return sorted(rows, key=lambda row: row["p50_ms"])


def median_interval(values: list[float], coverage: float = INTERVAL_COVERAGE) -> tuple[float, float]:
    """Distribution-free interval of the median: sorted values k and n+1-k, the narrowest whose binomial coverage
    is at least `coverage` (min..max when no narrower one reaches it; 5 rounds give min..max at 94 %)."""
    ordered, n = sorted(values), len(values)
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n >= coverage:
        k += 1
    return ordered[k - 1], ordered[n - k]


def slowdowns(ranking: dict[str, list[dict]]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per artifact timed at every shape: the median over rounds of its round slowdown, and that median's interval.

    Round slowdown of artifact a in round r: exp(mean over shapes of log(p50_r(a, s) / min_b p50_r(b, s))), where
    p50_r are the `round_p50_ms` of rows that ran round r back to back, so drift between rounds cancels. An artifact
    that left the rounds early is scored on the rounds it ran at every shape.

    Returns:
        ({name: score}, {name: [low, high]}), both sorted by score, rounded to 4 decimals.
    """
    names = set.intersection(*({row["name"] for row in rows} for rows in ranking.values()))
    per_round = {}
    for name in names:
        logs = []
        for rows in ranking.values():
            own = next(row["round_p50_ms"] for row in rows if row["name"] == name)
            best = [
                min(row["round_p50_ms"][r] for row in rows if len(row["round_p50_ms"]) > r) for r in range(len(own))
            ]
            logs.append([math.log(mine / least) for mine, least in zip(own, best)])
        count = min(len(shape_logs) for shape_logs in logs)
        per_round[name] = [math.exp(sum(shape_logs[r] for shape_logs in logs) / len(logs)) for r in range(count)]
    scores = {name: round(float(np.median(values)), 4) for name, values in per_round.items()}
    order = sorted(scores, key=lambda name: (scores[name], name))
    intervals = {name: [round(bound, 4) for bound in median_interval(per_round[name])] for name in order}
    return {name: scores[name] for name in order}, intervals


def break_ties(
    scores: dict[str, float], intervals: dict[str, list[float]], sizes_mb: dict[str, float], accuracy: dict[str, float]
) -> tuple[str, str, list[str]]:
    """The tie rule: artifacts whose interval overlaps the fastest one's are tied with it; of those, the smallest on
    disk is taken, then the most accurate, then the lower score.

    Returns:
        (fastest, chosen, tied): `tied` lists the artifacts tied with the fastest, by score.
    """
    fastest = min(scores, key=lambda name: (scores[name], name))
    low, high = intervals[fastest]
    tied = [name for name in scores if name != fastest and intervals[name][0] <= high and low <= intervals[name][1]]
    chosen = min([fastest, *tied], key=lambda name: (sizes_mb[name], -accuracy[name], scores[name], name))
    return fastest, chosen, tied


def _shape_reason(name: str, ranking: dict[str, list[dict]], fastest: dict[str, str]) -> str:
    parts = []
    for shape, rows in ranking.items():
        own = next(row for row in rows if row["name"] == name)
        if fastest[shape] == name:
            runner_up = rows[1] if len(rows) > 1 else None
            margin = f", {runner_up['p50_ms'] / own['p50_ms']:.2f}x {runner_up['name']}" if runner_up else ""
            parts.append(f"fastest at {shape} ({own['p50_ms']:.2f} ms{margin})")
        else:
            parts.append(f"{own['p50_ms'] / rows[0]['p50_ms']:.2f}x slower than {fastest[shape]} at {shape}")
    return f"{name}: " + "; ".join(parts)


def _tie_reason(fastest: str, chosen: str, tied: list[str], intervals: dict, sizes_mb: dict, accuracy: dict) -> str:
    """`; a tie ...` sentence of `reason` (empty without a tie): who tied, on which intervals, and why `chosen`."""
    if not tied:
        return ""
    group = [fastest, *tied]
    spans = ", ".join(f"{name} [{intervals[name][0]:.2f}, {intervals[name][1]:.2f}]" for name in group)
    others = [name for name in group if name != chosen]
    if all(sizes_mb[chosen] < sizes_mb[name] for name in others):
        why = f"the smallest on disk ({sizes_mb[chosen]:.1f} MB vs {', '.join(f'{sizes_mb[n]:.1f}' for n in others)})"
    elif all(accuracy[chosen] > accuracy[name] for name in others if sizes_mb[name] == sizes_mb[chosen]):
        why = f"the most accurate of the smallest (parity metric {accuracy[chosen]:.4f})"
    else:
        why = "the fastest of equals (same size and accuracy)"
    return f"; a tie, geomean-slowdown intervals overlap ({spans}): {chosen} taken as {why}"


def _accuracy(entry: dict) -> float:
    parity = entry["parity"]
    return float(parity.get("metrics", {}).get(parity.get("headline_metric"), float("-inf")))


def _rounds(iterations: int) -> int:
    """Rounds for `--select-iterations` timed runs per artifact and shape: whole blocks, and MIN_ROUNDS at least."""
    from ladc.measure import MIN_ROUNDS

    return max(math.ceil(iterations / SELECT_BLOCK), MIN_ROUNDS)


def _time_shapes(runners: dict, shapes: dict[str, list], iterations: int) -> dict[str, list[dict]]:
    """Each shape in its own interleaved rounds of every runner; the ranking of each shape."""
    from ladc.measure import time_rounds

    rounds = _rounds(iterations)
    ranking = {}
    for shape, feeds in shapes.items():
        prepared = {name: [runner.prepare(feed) for feed in feeds] for name, runner in runners.items()}
        calls = [lambda k, r=runner, xs=prepared[name]: r.run(xs[k % len(xs)]) for name, runner in runners.items()]
        latencies = time_rounds(calls, SELECT_WARMUP, rounds, SELECT_BLOCK, SELECT_TURN_S, SELECT_MAX_S)
        ranking[shape] = rank(dict(zip(runners, latencies)), [len(feed["input_ids"]) for feed in feeds])
    return ranking


def select_fastest(
    manifest: ExportManifest, root: Path, tokenizer, parity_set, cfg: ExportConfig, max_positions: int
) -> dict:
    """Time the accepted CPU artifacts of an export dir in interleaved rounds and rank them; the `selection` block of
    export.json.

    Raises:
        LadcError: no artifact passed parity.
    """
    import psutil

    from ladc.deploy.runners import open_artifact
    from ladc.errors import LadcError
    from ladc.runs.hardware import cpu_flags, cpu_model

    threads = cfg.threads or psutil.cpu_count(logical=False) or 1
    candidates, dropped = _unique_candidates(manifest)
    if not candidates:
        raise LadcError(f"--select fastest: no artifact passed parity ({'; '.join(d['reason'] for d in dropped)})")
    shapes = selection_shapes(tokenizer, parity_set.batches, max_positions)
    # pools that do not spin: in rounds, an idle pool spinning after its turn would steal cores from the next one
    runners = {entry["name"]: open_artifact(root, entry, threads, spinning=False) for entry in candidates}
    ranking = _time_shapes(runners, shapes, cfg.select_iterations)
    fastest = {shape: rows[0]["name"] for shape, rows in ranking.items()}
    scores, intervals = slowdowns(ranking)
    sizes_mb = {entry["name"]: entry["size_mb"] for entry in candidates}
    accuracy = {entry["name"]: _accuracy(entry) for entry in candidates}
    leader, chosen, tied = break_ties(scores, intervals, sizes_mb, accuracy)
    return {
        "chosen": chosen,
        "chosen_path": next(entry["path"] for entry in candidates if entry["name"] == chosen),
        "reason": _shape_reason(chosen, ranking, fastest) + _tie_reason(leader, chosen, tied, intervals, sizes_mb,
                                                                        accuracy),
        "near_ties": [name for name in [leader, *tied] if name != chosen],
        "fastest_overall": leader,
        "tie_rule": f"intervals ({INTERVAL_COVERAGE:.0%}, order statistics over rounds) of the geometric-mean "
                    "slowdown overlapping the fastest one's are a tie: smallest on disk, then most accurate, wins",
        "fastest": fastest,
        "geomean_slowdown": scores,
        "geomean_slowdown_interval": intervals,
        "ranking": ranking,
        "dropped": dropped,
        "shapes": {
            shape: [list(feed["input_ids"].shape) for feed in feeds[:1]]
            + ([f"{len(feeds)} feeds cycled"] if len(feeds) > 1 else [])
            for shape, feeds in shapes.items()
        },
        "timing": {
            "isolation": "interleaved",
            "how": f"rounds: each artifact in turn runs up to {SELECT_BLOCK} times (a turn ends past {SELECT_TURN_S} "
                   "s); onnxruntime sessions opened with session.intra_op.allow_spinning=0",
            "warmup": SELECT_WARMUP,
            "iterations": cfg.select_iterations,
            "rounds": _rounds(cfg.select_iterations),
            "block": SELECT_BLOCK,
            "turn_s": SELECT_TURN_S,
            "max_s_per_shape": SELECT_MAX_S,
            "pause_s": 0.0,
            "spinning": False,
            "threads": threads,
            "timer": "time.perf_counter around the runner call (inputs prepared beforehand)",
        },
        "machine": {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "physical_cores": psutil.cpu_count(logical=False)},
    }  # fmt: skip


def selection_latencies(
    export_dir: str | Path, artifact: str, batch_size: int, seq_len: int, threads: int, cpu: str
) -> tuple[list[float], str] | None:
    """What `--select fastest` measured for an artifact of an export dir at a synthetic shape, where it timed that
    shape on this CPU model with these threads: (latencies_ms in run order, the artifact they were timed on, which is
    another where this one was dropped as identical to it). None otherwise (an export.json from before the rounds,
    another machine or thread count, a shape it did not time): then the caller times the artifact itself.
    """
    from ladc.runs.export_manifest import is_export_dir, read_export_manifest

    selection = read_export_manifest(export_dir).selection if is_export_dir(export_dir) else None
    if not isinstance(selection, dict) or (selection.get("machine") or {}).get("cpu") != cpu:
        return None
    if (selection.get("timing") or {}).get("threads") != threads:
        return None
    same_as = {item["name"]: item.get("same_as") for item in selection.get("dropped", [])}
    timed_as = same_as.get(artifact) or artifact
    rows = (selection.get("ranking") or {}).get(synthetic_shape(batch_size, seq_len)) or []
    row = next((row for row in rows if row.get("name") == timed_as), None)
    return (list(row["latencies_ms"]), timed_as) if row and row.get("latencies_ms") else None


def print_selection(manifest: ExportManifest, console=None) -> None:
    """Rich table of the ranking: one row per artifact, p50 per shape, the chosen one marked."""
    import sys

    from rich.console import Console
    from rich.table import Table

    selection = manifest.selection
    console = console or Console(width=None if sys.stdout.isatty() else 130)
    shapes = list(selection["ranking"])
    table = Table(title=f"--select fastest on {selection['machine']['cpu']} ({selection['timing']['threads']} threads)")
    intervals = selection.get("geomean_slowdown_interval") or {}  # absent in export.json written before rounds
    for column in ["artifact", *(f"{shape} p50 ms" for shape in shapes), "geomean slowdown", "interval"]:
        table.add_column(column, justify="left" if column == "artifact" else "right")
    for name, score in selection["geomean_slowdown"].items():
        cells = [next(f"{row['p50_ms']:.2f}" for row in selection["ranking"][shape] if row["name"] == name)
                 for shape in shapes]  # fmt: skip
        marker = " [green](chosen)" if name == selection["chosen"] else ""
        span = f"{intervals[name][0]:.2f}-{intervals[name][1]:.2f}x" if name in intervals else "-"
        table.add_row(f"{name}{marker}", *cells, f"{score:.2f}x", span)
    console.print(table)
    console.print(f"chosen: {selection['reason']}")
    for item in selection["dropped"]:
        console.print(f"not ranked: {item['name']}: {item['reason']}")
