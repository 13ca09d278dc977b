"""`ladc export --select fastest`: time every artifact that passed parity on this machine and rank them, per batch size
and sequence length, so the artifact a user deploys is the fastest correct one for the CPU at hand.

Shapes: batch 1 and batch 32 at sequence 128 (synthetic ids, no padding), and real dev sentences with dynamic
padding at batch 1 and at the parity batch size. Each artifact is timed alone (ladc.timing.time_isolated), with the
threads a deployment would use. The chosen artifact has the lowest geometric mean of its slowdowns against the
fastest of each shape; `fastest` names the winner of each shape.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ladc.config import ExportConfig

__all__ = ["SELECT_SEQ_LEN", "selection_shapes", "rank", "choose", "select_fastest", "print_selection"]

SELECT_SEQ_LEN = 128
SELECT_WARMUP = 3
NEAR_TIE = 1.05  # geometric-mean slowdown ratio under which another artifact counts as a tie with the chosen one
SELECT_MAX_S = 2.0  # timed seconds per artifact and shape before a slow one stops (after timing.MIN_RUNS runs)


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
    from ladc.bench import synthetic_batch

    seq_len = min(SELECT_SEQ_LEN, max_positions)
    shapes = {
        f"b1_s{seq_len}": [synthetic_batch(tokenizer, 1, seq_len, seed)],
        f"b32_s{seq_len}": [synthetic_batch(tokenizer, 32, seq_len, seed)],
        "dev_b1": _single_rows(parity_batches, 64),
        f"dev_b{len(parity_batches[0]['input_ids'])}": parity_batches[:16],
    }
    return shapes


def _unique_candidates(manifest: dict) -> tuple[list[dict], list[dict]]:
    """Artifacts that passed parity and run on the CPU, minus rows that run the very same thing as an earlier one
    (OpenVINO's default precision is f32 on CPUs without AMX: then `openvino` and `openvino_f32` are one model)."""
    candidates, dropped, seen = [], [], {}
    for entry in manifest["artifacts"]:
        name = entry["name"]
        if not entry["parity"]["accepted"]:
            dropped.append({"name": name, "reason": f"failed parity: {entry['parity']['reason']}"})
        elif entry["provider"] != "CPUExecutionProvider":
            dropped.append({"name": name, "reason": "runs on CUDA; selection times the CPU"})
        else:
            precision = entry.get("inference_precision", entry["precision"])
            key = (entry["path"], entry.get("engine"), precision)
            if key in seen:
                dropped.append({"name": name, "reason": f"identical to {seen[key]} here ({precision})"})
                continue
            seen[key] = name
            candidates.append(entry)
    return candidates, dropped


def rank(latencies_ms: dict[str, list[float]], samples_per_call: list[int]) -> list[dict]:
    """Rows sorted by p50 (fastest first): name, p50_ms, mean_ms, samples_per_s, runs.

    Args:
        latencies_ms: artifact name -> timed latencies of one shape.
        samples_per_call: examples in the k-th feed of that shape (cycled), for samples_per_s.
    """
    rows = []
    for name, latencies in latencies_ms.items():
        samples = sum(samples_per_call[k % len(samples_per_call)] for k in range(len(latencies)))
        rows.append({
            "name": name, "p50_ms": round(float(np.percentile(latencies, 50)), 4),
            "mean_ms": round(float(np.mean(latencies)), 4),
            "samples_per_s": round(samples / (sum(latencies) / 1000.0), 2), "runs": len(latencies),
        })  # fmt: skip
    return sorted(rows, key=lambda row: row["p50_ms"])


def choose(ranking: dict[str, list[dict]]) -> tuple[str, dict[str, float]]:
    """The artifact with the lowest geometric-mean slowdown (p50 / best p50 of the shape) over all shapes.

    Returns:
        (name, {name: geometric-mean slowdown}) for every artifact timed at every shape.
    """
    names = set.intersection(*({row["name"] for row in rows} for rows in ranking.values()))
    scores = {}
    for name in names:
        logs = []
        for rows in ranking.values():
            best = rows[0]["p50_ms"]
            own = next(row["p50_ms"] for row in rows if row["name"] == name)
            logs.append(math.log(own / best))
        scores[name] = round(math.exp(sum(logs) / len(logs)), 4)
    return min(sorted(scores), key=scores.get), dict(sorted(scores.items(), key=lambda item: item[1]))


def _reason(name: str, ranking: dict[str, list[dict]], fastest: dict[str, str]) -> str:
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


def select_fastest(manifest: dict, root: Path, tokenizer, parity_set, cfg: ExportConfig, max_positions: int) -> dict:
    """Time the accepted CPU artifacts of an export dir and rank them; the `selection` block of export.json.

    Raises:
        LadcError: no artifact passed parity.
    """
    import psutil

    from ladc.errors import LadcError
    from ladc.hardware import cpu_flags, cpu_model
    from ladc.runners import open_artifact
    from ladc.timing import PAUSE_S, time_isolated

    threads = cfg.threads or psutil.cpu_count(logical=False) or 1
    candidates, dropped = _unique_candidates(manifest)
    if not candidates:
        raise LadcError(f"--select fastest: no artifact passed parity ({'; '.join(d['reason'] for d in dropped)})")
    shapes = selection_shapes(tokenizer, parity_set.batches, max_positions)
    runners = {entry["name"]: open_artifact(root, entry, threads) for entry in candidates}
    ranking = {}
    for shape, feeds in shapes.items():
        prepared = {name: [runner.prepare(feed) for feed in feeds] for name, runner in runners.items()}
        calls = [lambda k, r=runner, xs=prepared[name]: r.run(xs[k % len(xs)]) for name, runner in runners.items()]
        latencies = time_isolated(calls, SELECT_WARMUP, cfg.select_iterations, max_duration_s=SELECT_MAX_S)
        ranking[shape] = rank(dict(zip(runners, latencies)), [len(feed["input_ids"]) for feed in feeds])
    fastest = {shape: rows[0]["name"] for shape, rows in ranking.items()}
    chosen, scores = choose(ranking)
    # on a 2-core VM, repeated p50s of one artifact spread by 5-20 % at batch 1 (RESULTS.md, "Bench isolation"):
    # artifacts this close to the chosen one are a tie at this timing budget, and the report says so
    near_ties = [name for name, score in scores.items() if name != chosen and score <= scores[chosen] * NEAR_TIE]
    tie_note = f"; within {NEAR_TIE - 1:.0%} (a tie at this budget): {', '.join(near_ties)}" if near_ties else ""
    return {
        "chosen": chosen,
        "chosen_path": next(entry["path"] for entry in candidates if entry["name"] == chosen),
        "reason": _reason(chosen, ranking, fastest) + tie_note,
        "near_ties": near_ties,
        "fastest": fastest,
        "geomean_slowdown": scores,
        "ranking": ranking,
        "dropped": dropped,
        "shapes": {
            shape: [list(feed["input_ids"].shape) for feed in feeds[:1]]
            + ([f"{len(feeds)} feeds cycled"] if len(feeds) > 1 else [])
            for shape, feeds in shapes.items()
        },  # fmt: skip
        "timing": {
            "isolation": "isolated",
            "warmup": SELECT_WARMUP,
            "iterations": cfg.select_iterations,
            "max_s_per_shape": SELECT_MAX_S,
            "pause_s": PAUSE_S,
            "threads": threads,
            "timer": "time.perf_counter around the runner call (inputs prepared beforehand)",
        },  # fmt: skip
        "machine": {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "physical_cores": psutil.cpu_count(logical=False)},
    }


def print_selection(manifest: dict, console=None) -> None:
    """Rich table of the ranking: one row per artifact, p50 per shape, the chosen one marked."""
    import sys

    from rich.console import Console
    from rich.table import Table

    selection = manifest["selection"]
    console = console or Console(width=None if sys.stdout.isatty() else 130)
    shapes = list(selection["ranking"])
    table = Table(title=f"--select fastest on {selection['machine']['cpu']} ({selection['timing']['threads']} threads)")
    for column in ["artifact", *(f"{shape} p50 ms" for shape in shapes), "geomean slowdown"]:
        table.add_column(column, justify="left" if column == "artifact" else "right")
    for name, score in selection["geomean_slowdown"].items():
        cells = [next(f"{row['p50_ms']:.2f}" for row in selection["ranking"][shape] if row["name"] == name)
                 for shape in shapes]  # fmt: skip
        marker = " [green](chosen)" if name == selection["chosen"] else ""
        table.add_row(f"{name}{marker}", *cells, f"{score:.2f}x")
    console.print(table)
    console.print(f"chosen: {selection['reason']}")
    for item in selection["dropped"]:
        console.print(f"not ranked: {item['name']}: {item['reason']}")
