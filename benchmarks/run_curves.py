"""A table of finished training runs (issue 22): the label loss at the first logged steps, holdout and dev scores,
retention and wall speed, read from each run dir's metrics.json (its `history` is what `ladc distill` logs every 10
steps). It is how RESULTS.md shows whether a setting learns from the first hundred steps.

Usage:
    python benchmarks/run_curves.py runs/exp/spans-3L-1ep-mu1000 runs/exp/spans-3L-1ep-mu10 --steps 10,30,50,70,100
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _at(history: list[dict], step: int, key: str) -> float | None:
    """The logged value of `key` at the last logged step <= `step` (None before the first log)."""
    logged = [row for row in history if row.get("step", 0) <= step and key in row]
    return logged[-1][key] if logged else None


def _metric(scores: dict | None) -> float | None:
    return next(iter(scores.values())) if scores else None


def row_of(run: Path, steps: list[int]) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics.get("history") or []
    selection = metrics.get("selection") or {}
    return {
        "run": str(run),
        "dev": _metric(metrics.get("dev")),
        "holdout": _metric(selection.get("best")),
        "retention": metrics.get("retention"),
        "best_step": metrics.get("best_step"),
        "final_step": metrics.get("final_step"),
        "samples_per_s": metrics.get("train_samples_per_s"),
        "hard": {step: _at(history, step, "hard") for step in steps},
        "hidden": {step: _at(history, step, "hidden") for step in steps},
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--steps", default="10,30,50,70,100")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    steps = [int(step) for step in args.steps.split(",")]
    rows = [row_of(run, steps) for run in args.runs]
    print(f"| run | dev | holdout | retention | label loss at steps {'/'.join(map(str, steps))} |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        hard = " / ".join(_fmt(row["hard"][step]) for step in steps)
        retention = "-" if row["retention"] is None else f"{row['retention']:.2%}"
        print(f"| {row['run']} | {_fmt(row['dev'], 4)} | {_fmt(row['holdout'], 4)} | {retention} | {hard} |")
    devs = [row["dev"] for row in rows if row["dev"] is not None]
    if len(devs) > 1:
        print(f"dev mean {statistics.mean(devs):.4f} std {statistics.stdev(devs):.4f} over {len(devs)} runs")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
