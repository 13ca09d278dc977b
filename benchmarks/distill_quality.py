"""Dev-set quality of LAD against the pkd / kd / none baselines: MiniLM-L6 teacher -> 3-layer student, several seeds.

Every (task, method, seed) is one in-process `ladc.distill.distill` run with the same hyperparameters for all
methods, written to `<runs-dir>/<task>-<method>-s<seed>`. A run whose metrics.json exists is skipped (after checking
that its saved config matches), an interrupted one continues from its last checkpoint, so the script can be rerun
until done. The aggregated JSON is rewritten after every run: mean ± sample std over seeds of the headline dev metric
per (task, method), the teacher's score and the retention (student mean / teacher). The student's reported score is
that of its best dev evaluation (what `ladc distill` keeps); the last evaluation is reported next to it, since
picking the best of several dev evaluations flatters every method a little.

Defaults: SST-2 on an 8,000-example train subset for 2 epochs, RTE on its full train set for 5 epochs, full dev
sets, lr 1e-4, batch 32, temperature 10 (the LAD paper uses 20 for SST-2), mu 1000, beta 100, gate lr 1e-6.

Usage:
    python benchmarks/distill_quality.py --teacher-sst2 runs/teacher-sst2 --teacher-rte runs/teacher-rte \\
        --data-dir ../shared/glue --mixed-precision bf16
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
METHOD_ORDER = ("lad", "pkd", "kd", "none")  # the expected ranking, best first
TASK_DEFAULTS = {"sst2": {"epochs": 2.0, "train_limit": 8000}, "rte": {"epochs": 5.0, "train_limit": None}}


def per_task(text: str | None, tasks: list[str], defaults: dict, cast) -> dict:
    """`'3'` (every task) or `'sst2=2,rte=5'` (per task; others keep their default) -> {task: value}."""
    values = dict(defaults)
    if not text:
        return values
    if "=" not in text:
        return {task: cast(text) for task in tasks}
    for item in text.split(","):
        task, _, value = item.partition("=")
        if task.strip() not in defaults:
            raise SystemExit(f"'{item}': unknown task '{task.strip()}'; expected one of {', '.join(defaults)}")
        values[task.strip()] = cast(value)
    return values


def _limit(value: str) -> int | None:
    return None if value.strip().lower() in ("0", "full", "none") else int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-sst2", default="runs/teacher-sst2", help="fine-tuned SST-2 teacher dir")
    parser.add_argument("--teacher-rte", default="runs/teacher-rte", help="fine-tuned RTE teacher dir")
    parser.add_argument("--data-dir", default=str(REPO_ROOT.parent / "shared" / "glue"), help="GLUE TSV dir")
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--methods", default=",".join(METHOD_ORDER))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", default=None, help="'E' for all tasks or 'sst2=2,rte=5' (default: those)")
    parser.add_argument("--train-limit", default=None, help="'N' or 'sst2=8000,rte=full' (default: those)")
    parser.add_argument("--dev-limit", type=int, default=None, help="first N dev rows (default: the full dev set)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps per run; overrides --epochs")
    parser.add_argument("--eval-steps", type=int, default=None, help="evaluate every N steps (default: each epoch)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--group-by-length", action="store_true", help="length-grouped batches (less padding)")
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--student-init", default="even", choices=("even", "first", "teacher", "random"))
    parser.add_argument("--temperature", type=float, default=10.0)
    parser.add_argument("--mu", type=float, default=1000.0, help="LAD hidden-MSE weight")
    parser.add_argument("--beta", type=float, default=100.0, help="PKD patient-loss weight")
    parser.add_argument("--gate-lr", type=float, default=1e-6)
    parser.add_argument("--hard-weight", type=float, default=0.5)
    parser.add_argument("--soft-weight", type=float, default=0.5)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "distill_quality.json"))
    parser.add_argument("--runs-dir", default="runs/quality")
    args = parser.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    unknown = [t for t in args.tasks if t not in TASK_DEFAULTS] + [m for m in args.methods if m not in METHOD_ORDER]
    if unknown or not (args.tasks and args.methods and args.seeds):
        parser.error(f"need tasks among {list(TASK_DEFAULTS)}, methods among {list(METHOD_ORDER)} and seeds: {unknown}")
    args.epochs = per_task(args.epochs, args.tasks, {t: d["epochs"] for t, d in TASK_DEFAULTS.items()}, float)
    limits = {t: d["train_limit"] for t, d in TASK_DEFAULTS.items()}
    args.train_limit = per_task(args.train_limit, args.tasks, limits, _limit)
    args.teachers = {"sst2": args.teacher_sst2, "rte": args.teacher_rte}
    return args


# ----------------------------------------------------------------------------- one run


def run_config(args: argparse.Namespace, task: str, method: str, seed: int):
    from ladc.config import DataConfig, DistillConfig, OptimConfig

    return DistillConfig(
        teacher=args.teachers[task], output=str(Path(args.runs_dir) / f"{task}-{method}-s{seed}"), method=method,
        student_layers=args.student_layers, student_init=args.student_init, hard_weight=args.hard_weight,
        soft_weight=args.soft_weight, temperature=args.temperature, mu=args.mu, beta=args.beta, gate_lr=args.gate_lr,
        data=DataConfig(
            task=task, data_dir=args.data_dir, max_seq_len=args.max_seq_len, train_limit=args.train_limit[task],
            dev_limit=args.dev_limit,
        ),
        optim=OptimConfig(
            lr=args.lr, batch_size=args.batch_size, epochs=args.epochs[task], max_steps=args.max_steps,
            warmup_ratio=args.warmup_ratio, eval_steps=args.eval_steps, seed=seed,
            mixed_precision=args.mixed_precision, group_by_length=args.group_by_length,
        ),
    )  # fmt: skip


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("overwrite", "resume")}


def check_same_settings(run_dir: Path, cfg) -> None:
    """Refuse to reuse a run made with other settings: its numbers would silently mix into this table."""
    from ladc.config import load_yaml, to_dict

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved, wanted = _comparable(load_yaml(saved_path)), _comparable(to_dict(cfg))
    if saved != wanted:
        diffs = _diff(saved, wanted)
        raise SystemExit(
            f"{run_dir} was made with other settings ({'; '.join(diffs[:3])}); use another --runs-dir or delete it"
        )


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def run_one(args: argparse.Namespace, task: str, method: str, seed: int) -> dict | None:
    """Train one student unless it is done; returns {wall_s, cpu_s} of this call, or None when skipped."""
    from ladc.config import replace
    from ladc.distill import distill
    from ladc.train import latest_checkpoint

    cfg = run_config(args, task, method, seed)
    run_dir = Path(cfg.output)
    check_same_settings(run_dir, cfg)
    if (run_dir / "metrics.json").is_file():
        print(f"=== {run_dir}: done, skipped", flush=True)
        return None
    if run_dir.is_dir() and any(run_dir.iterdir()):
        resumable = latest_checkpoint(run_dir) is not None
        cfg = replace(cfg, {"resume": True} if resumable else {"overwrite": True})
    print(f"=== {run_dir}: {'resuming' if cfg.resume else 'training'}", flush=True)
    wall, cpu = time.perf_counter(), _cpu_s()
    distill(cfg)
    gc.collect()
    return {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(_cpu_s() - cpu, 1)}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- aggregation


def teacher_score(teacher_dir: str, metric: str) -> tuple[float | None, int | None]:
    """The teacher's dev score (its metrics.json) and the dev_limit it was measured with (its ladc.json)."""
    path, manifest = Path(teacher_dir) / "metrics.json", Path(teacher_dir) / "ladc.json"
    score = (json.loads(path.read_text()).get("dev") or {}).get(metric) if path.is_file() else None
    dev_limit = json.loads(manifest.read_text()).get("data", {}).get("dev_limit") if manifest.is_file() else None
    return score, dev_limit


def read_run(args: argparse.Namespace, task: str, method: str, seed: int, metric: str, timings: dict) -> dict | None:
    run_dir = Path(args.runs_dir) / f"{task}-{method}-s{seed}"
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    evals = [entry["dev"] for entry in metrics.get("history", []) if "dev" in entry]
    return {
        "task": task, "method": method, "seed": seed, "run_dir": str(run_dir),
        "best": metrics["dev"][metric], "last": evals[-1][metric] if evals else None,
        "best_step": metrics["best_step"], "final_step": metrics["final_step"],
        "train_examples": metrics["train_examples"], "train_samples_per_s": metrics["train_samples_per_s"],
        **timings.get(str(run_dir), {}),
    }  # fmt: skip


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def ordering(means: dict[str, float]) -> dict:
    """Does mean(lad) >= mean(pkd) >= mean(kd) >= mean(none) hold among the methods present?"""
    present = [m for m in METHOD_ORDER if m in means]
    violations = [f"{a} < {b}" for a, b in zip(present, present[1:], strict=False) if means[a] < means[b]]
    return {"expected": " >= ".join(present), "holds": not violations, "violations": violations}


def aggregate(args: argparse.Namespace, timings: dict) -> dict:
    from ladc.tasks import get_task

    runs, summary, teachers, orderings = [], {}, {}, {}
    for task in args.tasks:
        metric = get_task(task).headline_metric
        teacher, teacher_dev_limit = teacher_score(args.teachers[task], metric)
        teachers[task] = {"dir": args.teachers[task], "metric": metric, "dev": teacher, "dev_limit": teacher_dev_limit}
        summary[task] = {}
        for method in args.methods:
            done = [r for s in args.seeds if (r := read_run(args, task, method, s, metric, timings))]
            runs += done
            if not done:
                continue
            best_mean, best_std = mean_std([r["best"] for r in done])
            lasts = [r["last"] for r in done if r["last"] is not None]
            last_mean, last_std = mean_std(lasts) if lasts else (None, None)
            summary[task][method] = {
                "metric": metric, "mean": best_mean, "std": best_std, "last_mean": last_mean, "last_std": last_std,
                "seeds": [r["seed"] for r in done], "retention": best_mean / teacher if teacher else None,
            }  # fmt: skip
        orderings[task] = ordering({m: v["mean"] for m, v in summary[task].items()})
    complete = [t for t in args.tasks if all(m in summary[t] for m in args.methods)]
    if complete:
        average = {m: statistics.mean(summary[t][m]["mean"] for t in complete) for m in args.methods}
        orderings["average"] = {**ordering(average), "tasks": complete, "means": average}
    return {"teachers": teachers, "summary": summary, "ordering": orderings, "runs": runs}


def markdown(result: dict) -> str:
    lines = [
        "| task | method | dev (best eval) mean ± std | dev (last eval) mean ± std | seeds | retention |",
        "|---|---|---|---|---|---|",
    ]
    for task, methods in result["summary"].items():
        teacher = result["teachers"][task]
        metric = teacher["metric"]
        score = f"{100 * teacher['dev']:.2f}" if teacher["dev"] is not None else "n/a"
        lines.append(f"| {task} ({metric}) | teacher | {score} | | | 100% |")
        for method, s in methods.items():
            last = f"{100 * s['last_mean']:.2f} ± {100 * s['last_std']:.2f}" if s["last_mean"] is not None else ""
            retention = f"{100 * s['retention']:.1f}%" if s["retention"] else "n/a"
            lines.append(
                f"| {task} ({metric}) | {method} | {100 * s['mean']:.2f} ± {100 * s['std']:.2f} | {last} | "
                f"{len(s['seeds'])} | {retention} |"
            )
    for name, check in result["ordering"].items():
        verdict = "holds" if check["holds"] else f"does not hold ({', '.join(check['violations'])})"
        if check["expected"]:
            lines.append(f"\n{name}: {check['expected']} {verdict}")
    return "\n".join(lines)


def machine_info() -> dict:
    import os

    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {"cpu_model": models[0] if models else platform.processor(), "cores": os.cpu_count()}


def write_report(args: argparse.Namespace, timings: dict, started: str) -> dict:
    from ladc.io import atomic_write_json
    from ladc.runs import versions

    result = aggregate(args, timings)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "teacher_sst2", "teacher_rte")}
    report = {
        "benchmark": "distill_quality",
        "command": shlex.join(["python", *sys.argv]),
        "started_utc": started,
        "updated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": {"python": platform.python_version(), **versions()},
        "settings": settings,
        **result,
        "planned_runs": len(args.tasks) * len(args.methods) * len(args.seeds),
        "markdown": markdown(result),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for task in args.tasks:
        if not Path(args.teachers[task]).is_dir():
            raise SystemExit(f"teacher dir {args.teachers[task]} for {task} does not exist; run `ladc tune-teacher`")
        _, teacher_dev_limit = teacher_score(args.teachers[task], "")
        if teacher_dev_limit != args.dev_limit:  # retention would compare scores on different dev rows
            print(f"WARNING: the {task} teacher was scored with dev_limit={teacher_dev_limit}, the students will be "
                  f"with {args.dev_limit}", file=sys.stderr)  # fmt: skip
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    # timings of runs finished by an earlier invocation survive in the previous report
    timings = {r["run_dir"]: {k: r[k] for k in ("wall_s", "cpu_s") if k in r} for r in previous.get("runs", [])}
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for seed in args.seeds:  # seed-major: after the first pass every (task, method) already has one number
        for task in args.tasks:
            for method in args.methods:
                timing = run_one(args, task, method, seed)
                if timing is not None:
                    timings[str(Path(args.runs_dir) / f"{task}-{method}-s{seed}")] = timing
                    write_report(args, timings, started)
    report = write_report(args, timings, started)
    print()
    print(report["markdown"])
    print(f"\nwrote {out} ({len(report['runs'])} of {report['planned_runs']} runs done)")


if __name__ == "__main__":
    main()
