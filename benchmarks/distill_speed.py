"""Training samples/s of `ladc distill --method lad` against a loop written the way the LAD reference writes it.

Same teacher, same 3-layer student (`build_student`, even init), same SST-2 subset and batches (ladc's seeded
order), batch 32, same step count; each variant in its own subprocess (its own peak RSS). See benchmarks/README.md.

- `ladc`: a real `ladc.commands.distill.distill(cfg)` run; wrappers around its loss function and evaluator only read the clock.
- `reference`: written below after IKMLab/LAD `fine_tune/util/train_LAD.py`: raw sentences re-tokenized twice per
  step (teacher and student tokenizer) with `padding='max_length'` to 128; teacher in eval mode under `no_grad` (as
  the reference); `output_attentions=True` on both models (the reference returns attentions; HF BERT then drops from
  SDPA to eager attention); gates with `LayerNorm([128, H])` and the all-zeros check; one `backward(retain_graph=True)`
  for the logits loss (hard + soft) and one per student layer's hidden MSE; per-gate clipping; two AdamW (decay 0.01)
  with linear warm-up. The reference collates strings in `os.cpu_count()` DataLoader workers; here batches are cut
  in-process (no workers competing for the cores), and tokenization stays inside the timed step as in the reference.
- `ladc-bf16` (`--bf16`): the ladc run with `mixed_precision='bf16'`.

Samples/s = samples of steps `warmup+1..steps` / wall time from the start of step `warmup+1` to the end of the last
step (data, forward, backward, optimizer in; model loading and evaluation out). `--repeats R` interleaves R runs per
variant and reports medians.

Usage:
    python benchmarks/distill_speed.py --teacher runs/teacher-sst2 --data-dir ../shared/glue --steps 40 --bf16
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "distill_speed.json"
TARGET_RATIO = 3.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="fine-tuned teacher dir (ladc tune-teacher output)")
    parser.add_argument("--task", default="sst2", help="GLUE task of the teacher (default sst2)")
    parser.add_argument("--data-dir", default=str(REPO_ROOT.parent / "shared" / "glue"), help="GLUE TSV dir")
    parser.add_argument("--train-limit", type=int, default=2048, help="train subset (ladc's seeded subset)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per variant")
    parser.add_argument("--warmup-steps", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--max-seq-len", type=int, default=128, help="truncation for both; the reference pads to it")
    parser.add_argument("--dev-limit", type=int, default=128, help="dev rows of ladc's (untimed) final evaluation")
    parser.add_argument("--bf16", action="store_true", help="also time ladc with mixed_precision=bf16")
    parser.add_argument("--variants", default=None, help="subset to run, e.g. ladc,ladc-bf16 (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant, interleaved; median reported")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--no-reference-attentions", action="store_true",
        help="ablation: the reference loop without output_attentions=True (keeps SDPA attention)",
    )  # fmt: skip
    parser.add_argument("--output", default=str(DEFAULT_OUT), help="JSON result path")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: run one variant
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 <= args.warmup_steps < args.steps:
        parser.error(f"--warmup-steps must be in [0, --steps), got {args.warmup_steps} with --steps {args.steps}")
    return args


# ----------------------------------------------------------------------------- shared by both workers


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StepClock:
    """Start time, batch size and real-token count of every step; the end time of the last one."""

    def __init__(self):
        self.starts: list[float] = []
        self.rows: list[int] = []
        self.real_tokens: list[int] = []
        self.cpu_starts: list[float] = []
        self.end: float | None = None
        self.cpu_end: float | None = None
        self.rss_at_first_step_mb: float | None = None

    def start(self, attention_mask, started: tuple[float, float] | None = None) -> None:
        """Record a step that began at `started` ((wall, CPU) seconds; default now) on a (B, S) attention mask."""
        if not self.starts:
            import psutil

            self.rss_at_first_step_mb = psutil.Process().memory_info().rss / 2**20
        wall, cpu = started or (time.perf_counter(), _cpu_s())
        self.starts.append(wall)
        self.cpu_starts.append(cpu)
        self.rows.append(int(attention_mask.shape[0]))
        self.real_tokens.append(int(attention_mask.sum()))

    def stop(self) -> None:
        if self.end is None:
            self.end, self.cpu_end = time.perf_counter(), _cpu_s()

    def summary(self, warmup: int) -> dict:
        if self.end is None or len(self.starts) <= warmup:
            raise RuntimeError(f"timed {len(self.starts)} steps (warm-up {warmup}); nothing left to measure")
        bounds = self.starts + [self.end]
        step_s = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)][warmup:]
        window_s = self.end - self.starts[warmup]
        samples = sum(self.rows[warmup:])
        return {
            "timed_steps": len(step_s),
            "timed_samples": samples,
            "timed_real_tokens": sum(self.real_tokens[warmup:]),
            "window_s": window_s,
            "samples_per_s": samples / window_s,
            # process CPU seconds in the window: far below window_s * threads means the cores were busy elsewhere
            "window_cpu_s": self.cpu_end - self.cpu_starts[warmup],
            "cpu_ms_per_sample": 1000 * (self.cpu_end - self.cpu_starts[warmup]) / samples,
            "median_step_s": statistics.median(step_s),
            "step_s": [round(s, 4) for s in step_s],
            "rss_at_first_step_mb": self.rss_at_first_step_mb,
        }


@contextmanager
def hooked(module, name: str, before):
    """Within the block, functions made by factory `module.name` call `before(*args)` first, then do their real work.

    Instrumentation around ladc's own functions: what they compute is untouched.
    """
    factory = getattr(module, name, None)
    if factory is None:
        raise RuntimeError(f"{module.__name__}.{name} is gone: update benchmarks/distill_speed.py's timing hooks")

    def make(*a, **k):
        made = factory(*a, **k)

        def call(*args):
            before(*args)
            return made(*args)

        return call

    setattr(module, name, make)
    try:
        yield
    finally:
        setattr(module, name, factory)


# ----------------------------------------------------------------------------- ladc worker


def run_ladc(args: argparse.Namespace, mixed_precision: str) -> dict:
    """One real `ladc.commands.distill.distill` run, eval only after the last step, with its steps timed from outside.

    A step starts when the loop calls the loss function; the last one ends when the loop calls the evaluator
    (right after that step's optimizer step).
    """
    import ladc.commands.distill
    import ladc.data.training_data
    from ladc.runs.config import DataConfig, DistillConfig, OptimConfig

    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="distill-speed-") as tmp:
        cfg = DistillConfig(
            teacher=args.teacher, output=str(Path(tmp) / "student"), method="lad",
            student_layers=args.student_layers, student_init="even",
            data=DataConfig(
                task=args.task, data_dir=args.data_dir, max_seq_len=args.max_seq_len,
                train_limit=args.train_limit, dev_limit=args.dev_limit,
            ),
            optim=OptimConfig(
                lr=1e-4, batch_size=args.batch_size, max_steps=args.steps, eval_steps=args.steps,
                mixed_precision=mixed_precision, seed=42,
            ),
        )  # fmt: skip
        with (
            hooked(ladc.commands.distill, "_make_loss_fn", lambda modules, batch: clock.start(batch["attention_mask"])),
            hooked(ladc.data.training_data, "make_evaluator", lambda model, accelerator: clock.stop()),
        ):
            metrics = ladc.commands.distill.distill(cfg)
    result = clock.summary(args.warmup_steps)
    result["metrics_json_train_samples_per_s"] = metrics["train_samples_per_s"]
    result["mixed_precision"] = mixed_precision
    return result


# ----------------------------------------------------------------------------- reference-style worker


def make_reference_gate(hidden_size: int, seq_len: int):
    """IKMLab/LAD `fine_tune/model/_gate.py` HighwayGate: LayerNorm over [seq_len, H], identity on an all-zero input."""
    import torch
    from torch import nn

    class ReferenceHighwayGate(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(hidden_size, hidden_size)
            self.layernorm = nn.LayerNorm([seq_len, hidden_size])
            nn.init.xavier_uniform_(self.linear.weight)

        def forward(self, previous, current):  # (B, seq_len, H) each -> (B, seq_len, H)
            if torch.all(torch.eq(previous, 0)):
                return current
            gate = torch.sigmoid(self.linear(previous))
            return self.layernorm(current * gate + previous * (1 - gate))

    return ReferenceHighwayGate()


def _adamw(named_params, lr: float, weight_decay: float = 0.01):
    """The reference's AdamW: no decay on biases and LayerNorm weights."""
    import torch

    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight")
    named = list(named_params)
    groups = [
        {"params": [p for n, p in named if not any(nd in n for nd in no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def run_reference(args: argparse.Namespace) -> dict:
    """The reference loop (see the module docstring) on ladc's models, data subset and batch order."""
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    from ladc.commands.distill import teacher_base_model
    from ladc.data.data import SeededSampler, load_raw
    from ladc.data.tasks import get_task
    from ladc.runs.config import DataConfig
    from ladc.training.lad import layer_map
    from ladc.training.models import build_student, load_classifier, load_tokenizer

    task = get_task(args.task)
    hard_weight, soft_weight, temperature, mu, lr, gate_lr = 0.5, 0.5, 10.0, 1000.0, 1e-4, 1e-6
    attentions = not args.no_reference_attentions
    torch.manual_seed(42)
    teacher = load_classifier(args.teacher, task).eval()
    tokenizer = load_tokenizer(args.teacher)
    teacher_layers = teacher.config.num_hidden_layers
    mapping = layer_map(teacher_layers, args.student_layers)  # the reference's skip map when S divides T
    student = build_student(teacher, args.student_layers, init="even", init_from=teacher_base_model(args.teacher))
    student.train()
    gates = [make_reference_gate(teacher.config.hidden_size, args.max_seq_len).train() for _ in range(teacher_layers)]
    optimizer = _adamw(student.named_parameters(), lr)
    gates_optimizer = _adamw([(f"{i}.{n}", p) for i, g in enumerate(gates) for n, p in g.named_parameters()], gate_lr)
    warmup = int(0.1 * args.steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, args.steps)
    gates_scheduler = get_linear_schedule_with_warmup(gates_optimizer, warmup, args.steps)

    data = DataConfig(task=args.task, data_dir=args.data_dir, train_limit=args.train_limit)
    raw = load_raw(data, "train")
    columns = raw.to_dict()  # plain lists, as the reference's Dataset holds them
    texts, labels = [columns[field] for field in task.text_fields], columns["label"]

    def batches():  # ladc's per-epoch seeded order, cut into the same batches (last one of an epoch may be short)
        for epoch in itertools.count():
            order = list(SeededSampler(len(raw), seed=42, epoch=epoch))
            yield from (order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size))

    def encode(rows):
        return tokenizer(
            *[[column[i] for i in rows] for column in texts],
            padding="max_length", max_length=args.max_seq_len, return_tensors="pt", truncation=True,
        )  # fmt: skip

    clock = StepClock()
    for step, rows in zip(range(args.steps), batches()):
        started = (time.perf_counter(), _cpu_s())  # tokenization is part of the reference's step
        label = torch.LongTensor([labels[i] for i in rows])
        teacher_batch = encode(rows)
        student_batch = encode(rows)
        clock.start(student_batch["attention_mask"], started)
        with torch.no_grad():
            teacher_out = teacher(**teacher_batch, output_hidden_states=True, output_attentions=attentions)
        student_out = student(**student_batch, output_hidden_states=True, output_attentions=attentions)
        soft = F.kl_div(
            F.log_softmax(student_out.logits / temperature, dim=1),
            F.softmax(teacher_out.logits / temperature, dim=1),
            reduction="batchmean",
        )
        logits_loss = hard_weight * F.cross_entropy(student_out.logits, label) + soft_weight * soft * temperature**2
        logits_loss.item()  # the reference logs every term with .item()
        logits_loss.backward(retain_graph=True)
        previous = torch.zeros_like(teacher_out.hidden_states[1])
        aggregated = []
        for hidden, gate in zip(teacher_out.hidden_states[1:], gates, strict=True):
            previous = gate(previous, hidden)
            aggregated.append(previous)
        for teacher_layer, student_hidden in zip(mapping, student_out.hidden_states[1:], strict=True):
            hidden_loss = mu * F.mse_loss(student_hidden, aggregated[teacher_layer - 1]) / args.student_layers
            hidden_loss.item()
            hidden_loss.backward(retain_graph=True)
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        for gate in gates:
            torch.nn.utils.clip_grad_norm_(gate.parameters(), 1.0)
        optimizer.step()
        gates_optimizer.step()
        scheduler.step()
        gates_scheduler.step()
        optimizer.zero_grad()
        gates_optimizer.zero_grad()
        if step == args.steps - 1:
            clock.stop()
    result = clock.summary(args.warmup_steps)
    result["output_attentions"] = attentions
    return result


# ----------------------------------------------------------------------------- orchestration


def run_worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker == "reference":
        result = run_reference(args)
    elif args.worker in ("ladc", "ladc-bf16"):
        result = run_ladc(args, "bf16" if args.worker == "ladc-bf16" else "no")
    else:
        raise SystemExit(f"unknown worker {args.worker!r}")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    result["torch_threads"] = torch.get_num_threads()
    Path(args.worker_out).write_text(json.dumps(result))


def machine_info() -> dict:
    import psutil

    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {
        "cpu_model": models[0] if models else platform.processor() or "unknown",
        "cpu_flags_avx512_bf16": any("avx512_bf16" in line for line in lines if line.startswith("flags")),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
    }


def spawn(args: argparse.Namespace, variant: str) -> dict:
    """Run one variant in a fresh interpreter (its own ru_maxrss) and return its result dict."""
    with tempfile.TemporaryDirectory(prefix="distill-speed-worker-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--worker", variant]
        print(f"--- {variant}", flush=True)
        started = time.perf_counter()
        completed = subprocess.run([*command, "--worker-out", str(out)])
        if completed.returncode != 0 or not out.is_file():
            raise SystemExit(f"variant {variant} failed (exit {completed.returncode}); see its output above")
        return {**json.loads(out.read_text()), "process_wall_s": time.perf_counter() - started}


def summarize(runs: list[dict]) -> dict:
    """Medians over repeats of the throughput figures, max of the memory peaks, and every run in full."""
    keys = ("samples_per_s", "median_step_s", "window_cpu_s", "cpu_ms_per_sample")
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    if "metrics_json_train_samples_per_s" in runs[0]:
        median["metrics_json_train_samples_per_s"] = statistics.median(
            r["metrics_json_train_samples_per_s"] for r in runs
        )
    same = {k: runs[0][k] for k in ("timed_steps", "timed_samples", "timed_real_tokens", "torch_threads")}
    peaks = {k: max(r[k] for r in runs) for k in ("peak_rss_mb", "rss_at_first_step_mb")}
    return {**median, **peaks, **same, "samples_per_s_runs": [round(r["samples_per_s"], 3) for r in runs], "runs": runs}


def print_table(variants: dict) -> None:
    reference = variants.get("reference")
    print(
        f"{'variant':<10} {'samples/s':>9} {'x ref':>6} {'median step s':>13} {'CPU ms/sample':>13} "
        f"{'peak RSS MB':>11} {'metrics.json':>12}"
    )
    for name, v in variants.items():
        ratio = f"{v['samples_per_s'] / reference['samples_per_s']:6.2f}" if reference else f"{'-':>6}"
        from_metrics = v.get("metrics_json_train_samples_per_s")
        from_metrics = f"{from_metrics:12.1f}" if from_metrics is not None else f"{'-':>12}"
        print(
            f"{name:<10} {v['samples_per_s']:9.1f} {ratio} {v['median_step_s']:13.3f} {v['cpu_ms_per_sample']:13.1f} "
            f"{v['peak_rss_mb']:11.0f} "
            f"{from_metrics}"
        )


def variant_names(args: argparse.Namespace) -> list[str]:
    if not args.variants:
        return ["reference", "ladc"] + (["ladc-bf16"] if args.bf16 else [])
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(names) - {"reference", "ladc", "ladc-bf16"})
    if unknown or not names:
        raise SystemExit(f"--variants: unknown {unknown or names}; expected some of reference, ladc, ladc-bf16")
    return names


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    from ladc.runs.io import atomic_write_json
    from ladc.runs.runs import versions

    if not Path(args.teacher).is_dir():
        raise SystemExit(f"teacher dir {args.teacher} does not exist; create it with `ladc tune-teacher`")
    names = variant_names(args)
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(args.repeats):  # interleaved, so slow drift of the machine hits every variant alike
        for name in names:
            runs[name].append(spawn(args, name))
    variants = {name: summarize(results) for name, results in runs.items()}
    if len({v["timed_real_tokens"] for v in variants.values()}) > 1:
        print("WARNING: the variants saw different batches (their real-token counts differ)", file=sys.stderr)
    reference = variants.get("reference")
    ratios = {
        f"{name}_vs_reference": variants[name]["samples_per_s"] / reference["samples_per_s"]
        for name in names
        if reference and name != "reference"
    }
    settings = {k: getattr(args, k) for k in ("teacher", "task", "data_dir", "train_limit", "steps", "warmup_steps")}
    settings.update({k: getattr(args, k) for k in ("batch_size", "student_layers", "max_seq_len", "repeats")})
    report = {
        "benchmark": "distill_speed",
        "command": shlex.join(["python", *sys.argv]),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "versions": {"python": platform.python_version(), **versions()},
        "settings": {**settings, "reference_output_attentions": not args.no_reference_attentions},
        "variants": variants,
        "ratios": ratios,
        "target_ratio": TARGET_RATIO,
        "meets_target_fp32": ratios["ladc_vs_reference"] >= TARGET_RATIO if "ladc_vs_reference" in ratios else None,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, report)
    print()
    print_table(variants)
    for key, ratio in ratios.items():
        print(f"{key}: {ratio:.2f}x (target for fp32 ladc >= {TARGET_RATIO:.0f}x)")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
