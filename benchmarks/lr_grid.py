"""Does `--lr auto` (the default) land within 1 point of the best lr of the grid {2e-5, 5e-5, 1e-4, 2e-4}?

For each task: the offline MiniLM-L6 teacher is fine-tuned once per grid lr, then the teacher trained at the auto lr
distils a 3-layer LAD student once per grid lr. Every run selects its checkpoint on the train holdout (ladc's
default) and is scored once on dev. When the auto lr is a grid value, the default's result is that run (same config,
same seed); otherwise the default is run too. Runs are in-process `tune_teacher` / `distill` calls written to
`<runs-dir>/<task>-<role>-<lr>`; a finished run is skipped, so the script can be rerun until done.

Usage:
    python benchmarks/lr_grid.py --tasks sst2,rte --data-dir ../shared/glue --train-limit sst2=4000 --epochs 2 \\
        --out benchmarks/results/lr_grid.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GRID = (2e-5, 5e-5, 1e-4, 2e-4)
MINILM_HIDDEN = 384  # all-MiniLM-L6-v2; its 3-layer students keep the width


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--roles", default="teacher,student")
    parser.add_argument("--data-dir", default=str(REPO_ROOT.parent / "shared" / "glue"))
    parser.add_argument("--train-limit", default="sst2=4000", help="'task=N,...' (others: the full train split)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--runs-dir", default="runs/lrgrid")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "lr_grid.json"))
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.roles = [r for r in args.roles.split(",") if r]
    args.train_limit = {k: int(v) for k, v in (item.split("=") for item in args.train_limit.split(",") if item)}
    return args


def _name(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def run_dir(args, task: str, role: str, lr: float) -> Path:
    return Path(args.runs_dir) / f"{task}-{role}-{_name(lr)}"


def _data(args, task: str):
    from ladc.runs.config import DataConfig

    return DataConfig(
        task=task, data_dir=args.data_dir, max_seq_len=args.max_seq_len, train_limit=args.train_limit.get(task)
    )


def _optim(args, lr: float):
    from ladc.runs.config import OptimConfig

    return OptimConfig(
        lr=lr, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed, mixed_precision=args.mixed_precision
    )


def train(args, task: str, role: str, lr: float) -> dict:
    """One run (skipped when finished): {lr, dev, dev_last, wall_s}."""
    from ladc.commands.distill import distill
    from ladc.commands.teacher import tune_teacher
    from ladc.runs.config import DistillConfig, TuneTeacherConfig

    out = run_dir(args, task, role, lr)
    wall = None
    if not (out / "metrics.json").is_file():
        print(f"=== {out}", flush=True)
        started = time.perf_counter()
        if role == "teacher":
            cfg = TuneTeacherConfig(
                model="minilm", output=str(out), data=_data(args, task), optim=_optim(args, lr), overwrite=True
            )
            tune_teacher(cfg)
        else:
            teacher = run_dir(args, task, "teacher", auto_lr_of("teacher"))
            cfg = DistillConfig(
                teacher=str(teacher), output=str(out), method="lad", student_layers=args.student_layers,
                data=_data(args, task), optim=_optim(args, lr), overwrite=True,
            )  # fmt: skip
            distill(cfg)
        wall = round(time.perf_counter() - started, 1)
    metrics = json.loads((out / "metrics.json").read_text())
    from ladc.data.tasks import get_task

    headline = get_task(task).headline_metric
    return {
        "lr": lr, "dev": metrics["dev"][headline], "dev_last": metrics["dev_last"][headline],
        "best_step": metrics["best_step"], "final_step": metrics["final_step"], "wall_s": wall, "run_dir": str(out),
    }  # fmt: skip


def auto_lr_of(role: str) -> float:
    from ladc.training.lr import auto_lr

    return auto_lr(MINILM_HIDDEN, role)[0]


def _machine() -> dict:
    """The CPU model, its ISA flags (ladc.runs.hardware, as every benchmark records them) and the core count."""
    import os

    from ladc.runs.hardware import cpu_flags, cpu_model

    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    result = {
        "command": "python benchmarks/lr_grid.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": _machine(),
        "torch": torch.__version__, "grid": list(GRID), "rows": [],
    }  # fmt: skip
    for task in args.tasks:
        for role in ("teacher", "student"):
            if role not in args.roles:
                continue
            runs = [train(args, task, role, lr) for lr in GRID]
            auto = auto_lr_of(role)
            default = next((r for r in runs if r["lr"] == auto), None) or train(args, task, role, auto)
            best = max(runs, key=lambda r: r["dev"])
            row = {
                "task": task, "role": role, "runs": runs, "auto_lr": auto, "default_dev": default["dev"],
                "best_lr": best["lr"], "best_dev": best["dev"], "default_minus_best": default["dev"] - best["dev"],
            }  # fmt: skip
            result["rows"].append(row)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(result: dict) -> str:
    head = (
        "| task | role | "
        + " | ".join(_name(lr) for lr in result["grid"])
        + " | best | default (auto) | default - best |"
    )
    lines = [head, "|" + "---|" * (len(result["grid"]) + 5)]
    for row in result["rows"]:
        cells = [f"{100 * r['dev']:.2f} ({100 * r['dev_last']:.2f})" for r in row["runs"]]
        lines.append(
            f"| {row['task']} | {row['role']} | " + " | ".join(cells) + f" | {_name(row['best_lr'])} "
            f"{100 * row['best_dev']:.2f} | {_name(row['auto_lr'])} {100 * row['default_dev']:.2f} | "
            f"{100 * row['default_minus_best']:+.2f} |"
        )
    return "\n".join(lines) + "\n(cells: dev of the holdout-selected checkpoint (dev of the last checkpoint), %)"


if __name__ == "__main__":
    main()
