"""A fair comparison of LAD with the pkd / kd / none baselines: MiniLM-L6 teacher -> 3-layer student, several seeds,
each method's own knob searched on the train holdout, paired differences and a paired bootstrap over dev examples.

A *variant* is a method with fixed knob values (`lad:mu=1000`, `pkd:beta=500:layer_choice=last`, `kd:temperature=5`,
`none`). Every (task, variant, seed) is one in-process `ladc.commands.distill.distill` run with the same budget (data, epochs,
lr, batch) for all, written to `<runs-dir>/<task>-<variant>-s<seed>`. Selection never looks at dev:
- each run keeps the checkpoint that scores best on the train holdout (ladc's default `--select-on train-holdout`);
- each method's knob value is the variant with the best mean holdout score over the seeds.
Dev is read once per run, after training, to score the kept student; its per-example predictions are saved beside
it (`dev_correct.npy`) for the paired bootstrap. A finished run is skipped (after checking that its saved config
matches), an interrupted one resumes, so the script can be rerun until done.

Reported per task: mean ± std over seeds of each method's chosen variant (dev of the kept checkpoint, and of the
last one), retention against the teacher, the paired per-seed differences LAD-X, and a paired bootstrap over dev
examples of mean-over-seeds(LAD-X) with its 95 % interval and two-sided p-value.

Usage:
    python benchmarks/distill_quality.py --teacher-sst2 runs/lrgrid/sst2-teacher-1e-4 --tasks sst2 \\
        --variants lad:mu=1000,pkd:beta=100,pkd:beta=100:layer_choice=last,kd:temperature=10,none \\
        --seeds 42,43,44 --train-limit sst2=4000 --epochs 2
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

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
METHOD_ORDER = ("lad", "pkd", "kd", "none")
DEFAULT_VARIANTS = "lad:mu=1000,pkd:beta=100,pkd:beta=100:layer_choice=last,kd:temperature=10,none"
KNOB_TYPES = {"mu": float, "beta": float, "temperature": float, "gate_lr": float, "layer_choice": str}
BOOTSTRAP_SAMPLES = 10_000


def parse_variant(text: str) -> tuple[str, dict]:
    """`pkd:beta=500:layer_choice=last` -> ('pkd', {'beta': 500.0, 'layer_choice': 'last'})."""
    method, *knobs = text.strip().split(":")
    if method not in METHOD_ORDER:
        raise SystemExit(f"variant '{text}': unknown method '{method}'; expected one of {', '.join(METHOD_ORDER)}")
    values = {}
    for knob in knobs:
        key, _, value = knob.partition("=")
        if key not in KNOB_TYPES or not value:
            raise SystemExit(f"variant '{text}': '{knob}' is not KNOB=VALUE with KNOB in {', '.join(KNOB_TYPES)}")
        values[key] = KNOB_TYPES[key](value)
    return method, values


def slug(variant: str) -> str:
    return variant.replace(":", "-").replace("=", "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-sst2", default="runs/teacher-sst2", help="fine-tuned SST-2 teacher dir")
    parser.add_argument("--teacher-rte", default="runs/teacher-rte", help="fine-tuned RTE teacher dir")
    parser.add_argument("--data-dir", default=str(REPO_ROOT.parent / "shared" / "glue"), help="GLUE TSV dir")
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated METHOD[:KNOB=VALUE...]")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--train-limit", default="sst2=4000", help="'task=N,...' (others: the full train split)")
    parser.add_argument("--lr", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mixed-precision", default="auto", help="no | bf16 | auto (bf16 where the CPU has it)")
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--runs-dir", default="runs/quality")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "distill_quality.json"))
    args = parser.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in args.variants:
        parse_variant(variant)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.train_limit = {k: int(v) for k, v in (item.split("=") for item in args.train_limit.split(",") if item)}
    args.teachers = {"sst2": args.teacher_sst2, "rte": args.teacher_rte}
    return args


# ----------------------------------------------------------------------------- one run


def run_config(args: argparse.Namespace, task: str, variant: str, seed: int):
    from ladc.runs.config import DataConfig, DistillConfig, OptimConfig

    method, knobs = parse_variant(variant)
    return DistillConfig(
        teacher=args.teachers[task], output=str(Path(args.runs_dir) / f"{task}-{slug(variant)}-s{seed}"),
        method=method, student_layers=args.student_layers, **knobs,
        data=DataConfig(
            task=task, data_dir=args.data_dir, max_seq_len=args.max_seq_len, train_limit=args.train_limit.get(task)
        ),
        optim=OptimConfig(
            lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, seed=seed,
            mixed_precision=args.mixed_precision,
        ),
    )  # fmt: skip


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("overwrite", "resume")}


def check_same_settings(run_dir: Path, cfg) -> None:
    """Refuse to reuse a run made with other settings: its numbers would silently mix into this table."""
    from ladc.runs.config import load_yaml, to_dict

    saved_path = run_dir / "config.yaml"
    if saved_path.is_file() and _comparable(load_yaml(saved_path)) != _comparable(to_dict(cfg)):
        raise SystemExit(f"{run_dir} was made with other settings; use another --runs-dir or delete it")


def dev_correct(run_dir: Path, cfg) -> np.ndarray:
    """Per dev example, does the kept student predict the label? (One pass, in dev file order.)"""
    import torch

    from ladc.data.data import dev_loader
    from ladc.data.tasks import get_task
    from ladc.deploy.runners import predict_logits
    from ladc.engines.torch_engine import TorchRunner
    from ladc.training.models import load_classifier, load_tokenizer

    task = get_task(cfg.data.task)
    model, tokenizer = load_classifier(str(run_dir), task), load_tokenizer(str(run_dir))
    # score in the precision the run was scored in (bf16 autocast where `auto` chose bf16), so that the per-example
    # results add up to the recorded dev figure; in fp32 a bf16 run's borderline examples can flip
    precision = json.loads((run_dir / "metrics.json").read_text()).get("mixed_precision", "no")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits, labels = predict_logits(TorchRunner(model, device="cpu"), dev_loader(cfg.data, tokenizer, task, 64))
    return (logits.argmax(-1) == labels).astype(np.int8)


def run_one(args: argparse.Namespace, task: str, variant: str, seed: int) -> dict | None:
    """Train one student unless it is done; returns {wall_s, cpu_s} of this call, or None when skipped."""
    from ladc.commands.distill import distill
    from ladc.runs.checkpoint_files import latest_checkpoint
    from ladc.runs.config import replace

    cfg = run_config(args, task, variant, seed)
    run_dir = Path(cfg.output)
    check_same_settings(run_dir, cfg)
    timing = None
    if not (run_dir / "metrics.json").is_file():
        if run_dir.is_dir() and any(run_dir.iterdir()):
            cfg = replace(cfg, {"resume": True} if latest_checkpoint(run_dir) is not None else {"overwrite": True})
        print(f"=== {run_dir}: {'resuming' if cfg.resume else 'training'}", flush=True)
        wall, cpu = time.perf_counter(), _cpu_s()
        distill(cfg)
        gc.collect()
        timing = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(_cpu_s() - cpu, 1)}
    if not (run_dir / "dev_correct.npy").is_file():
        correct = dev_correct(run_dir, cfg)
        recorded = json.loads((run_dir / "metrics.json").read_text())["dev"]
        if "accuracy" in recorded and abs(float(correct.mean()) - recorded["accuracy"]) > 1e-6:
            raise SystemExit(f"{run_dir}: re-scored dev accuracy {correct.mean():.6f} != recorded {recorded}")
        np.save(run_dir / "dev_correct.npy", correct)
    return timing


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- statistics


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """Paired bootstrap over dev examples of mean-over-seeds(acc_a - acc_b).

    Args:
        a, b: (seeds, examples) 0/1 correctness of two methods, row i of both from seed i.

    Returns:
        {diff, ci95: [lo, hi], p}: the observed difference, the percentile interval, and the two-sided p-value
        2 * min(P(d* <= 0), P(d* >= 0)) of the resampled differences (capped at 1).
    """
    rng = np.random.default_rng(seed)
    per_example = (a.astype(np.float64) - b).mean(axis=0)  # mean over seeds, per example
    n = per_example.shape[0]
    draws = np.array([per_example[rng.integers(0, n, n)].mean() for _ in range(samples)])
    p = min(1.0, 2 * min(float((draws <= 0).mean()), float((draws >= 0).mean())))
    return {"diff": float(per_example.mean()), "ci95": [float(np.quantile(draws, q)) for q in (0.025, 0.975)], "p": p}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# ----------------------------------------------------------------------------- aggregation


def read_run(args, task: str, variant: str, seed: int, metric: str, timings: dict) -> dict | None:
    run_dir = Path(args.runs_dir) / f"{task}-{slug(variant)}-s{seed}"
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "dev_correct.npy").is_file():
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "task": task, "variant": variant, "method": parse_variant(variant)[0], "seed": seed, "run_dir": str(run_dir),
        "holdout": metrics["selection"]["best"][metric], "dev": metrics["dev"][metric],
        "dev_last": metrics["dev_last"][metric], "best_step": metrics["best_step"],
        "final_step": metrics["final_step"], "lr": metrics.get("lr"), **timings.get(str(run_dir), {}),
    }  # fmt: skip


def aggregate(args: argparse.Namespace, timings: dict) -> dict:
    from ladc.data.tasks import get_task

    runs, tasks = [], {}
    for task in args.tasks:
        metric = get_task(task).headline_metric
        teacher_metrics = Path(args.teachers[task]) / "metrics.json"
        teacher = json.loads(teacher_metrics.read_text())["dev"][metric] if teacher_metrics.is_file() else None
        variants = {}
        for variant in args.variants:
            done = [r for s in args.seeds if (r := read_run(args, task, variant, s, metric, timings))]
            runs += done
            if len(done) == len(args.seeds):  # only complete variants compete: equal seeds for all
                variants[variant] = done
        chosen = {}
        for method in METHOD_ORDER:
            candidates = {v: rs for v, rs in variants.items() if parse_variant(v)[0] == method}
            if candidates:  # the knob value with the best mean holdout score; dev is not looked at
                chosen[method] = max(candidates, key=lambda v: statistics.mean(r["holdout"] for r in candidates[v]))
        summary = {}
        for method, variant in chosen.items():
            rows = variants[variant]
            dev_mean, dev_std = mean_std([r["dev"] for r in rows])
            last_mean, last_std = mean_std([r["dev_last"] for r in rows])
            summary[method] = {
                "variant": variant, "dev_mean": dev_mean, "dev_std": dev_std, "last_mean": last_mean,
                "last_std": last_std, "holdout_mean": statistics.mean(r["holdout"] for r in rows),
                "per_seed": {r["seed"]: r["dev"] for r in rows},
                "retention": dev_mean / teacher if teacher else None,
            }  # fmt: skip
        comparisons = {}
        if "lad" in chosen:
            lad = np.stack([np.load(Path(r["run_dir"]) / "dev_correct.npy") for r in variants[chosen["lad"]]])
            for method in [m for m in METHOD_ORDER[1:] if m in chosen]:
                other = np.stack([np.load(Path(r["run_dir"]) / "dev_correct.npy") for r in variants[chosen[method]]])
                per_seed = {s: summary["lad"]["per_seed"][s] - summary[method]["per_seed"][s] for s in args.seeds}
                comparisons[f"lad-{method}"] = {"per_seed": per_seed, **paired_bootstrap(lad, other)}
        tasks[task] = {
            "metric": metric, "teacher": teacher, "teacher_dir": args.teachers[task], "chosen": chosen,
            "summary": summary, "comparisons": comparisons,
            "variants": {v: statistics.mean(r["holdout"] for r in rs) for v, rs in variants.items()},
        }  # fmt: skip
    return {"tasks": tasks, "runs": runs}


def markdown(result: dict) -> str:
    lines = []
    for task, t in result["tasks"].items():
        teacher = f"{100 * t['teacher']:.2f}" if t["teacher"] is not None else "n/a"
        lines += [
            f"{task} ({t['metric']}), teacher {teacher}; knob values (mean holdout score): "
            + ", ".join(f"{v} {100 * s:.2f}" for v, s in t["variants"].items()),
            "",
            "| method (chosen on holdout) | dev mean ± std | dev, last checkpoint | per seed | retention |",
            "|---|---|---|---|---|",
        ]
        for s in t["summary"].values():
            seeds = " / ".join(f"{100 * v:.2f}" for v in s["per_seed"].values())
            retention = f"{100 * s['retention']:.1f}%" if s["retention"] else "n/a"
            lines.append(
                f"| {s['variant']} | {100 * s['dev_mean']:.2f} ± {100 * s['dev_std']:.2f} | "
                f"{100 * s['last_mean']:.2f} ± {100 * s['last_std']:.2f} | {seeds} | {retention} |"
            )
        lines += [
            "",
            "| difference | per seed (points) | mean | bootstrap 95 % CI | p (two-sided) |",
            "|---|---|---|---|---|",
        ]
        for name, c in t["comparisons"].items():
            seeds = " / ".join(f"{100 * v:+.2f}" for v in c["per_seed"].values())
            lo, hi = c["ci95"]
            lines.append(
                f"| {name} | {seeds} | {100 * c['diff']:+.2f} | [{100 * lo:+.2f}, {100 * hi:+.2f}] | {c['p']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def machine_info() -> dict:
    """The CPU model, its ISA flags (ladc.runs.hardware, as every benchmark records them) and the core count."""
    import os

    from ladc.runs.hardware import cpu_flags, cpu_model

    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "python": platform.python_version()}


def write_report(args: argparse.Namespace, timings: dict, started: str) -> dict:
    from ladc.runs.io import atomic_write_json
    from ladc.runs.runs import versions

    result = aggregate(args, timings)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "teacher_sst2", "teacher_rte")}
    report = {
        "benchmark": "distill_quality", "command": shlex.join(["python", *sys.argv]), "started_utc": started,
        "updated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
        "versions": {"python": platform.python_version(), **versions()}, "settings": settings, **result,
        "planned_runs": len(args.tasks) * len(args.variants) * len(args.seeds), "markdown": markdown(result),
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), report)
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    for task in args.tasks:
        if not Path(args.teachers[task]).is_dir():
            raise SystemExit(f"teacher dir {args.teachers[task]} for {task} does not exist; run `ladc tune-teacher`")
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    timings = {r["run_dir"]: {k: r[k] for k in ("wall_s", "cpu_s") if k in r} for r in previous.get("runs", [])}
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for seed in args.seeds:  # seed-major: after the first pass every variant already has one number
        for task in args.tasks:
            for variant in args.variants:
                timing = run_one(args, task, variant, seed)
                if timing is not None:
                    timings[str(Path(args.runs_dir) / f"{task}-{slug(variant)}-s{seed}")] = timing
                    write_report(args, timings, started)
    report = write_report(args, timings, started)
    print()
    print(report["markdown"])
    print(f"wrote {out} ({len(report['runs'])} of {report['planned_runs']} runs done)")


if __name__ == "__main__":
    main()
