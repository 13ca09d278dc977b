"""`ladc bench`: latency, throughput, accuracy and memory of model variants (PyTorch, ONNX) side by side.

Timing is isolated by default: one target at a time, each after its own warm-up (ladc/measure.py says why: spinning
onnxruntime pools distorted interleaved figures 2x on 2 cores). `--isolation interleaved` runs round-robin blocks with
non-spinning pools instead. An artifact of an export dir whose `--select fastest` already timed a synthetic shape on
this CPU model with these threads is not timed again: its row takes the selection's latencies (`source: export
selection`; `--retime` times it here). Accuracy uses the data path and metrics of `ladc evaluate` on the full dev
set. Target loading and the runners live in `ladc.deploy.runners`; tables and plots in `ladc.bench.report`.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass

import numpy as np
import torch

from ladc.bench.memory import MEMORY_METHOD, PeakRss, gpu_used_mb
from ladc.data.tasks import TaskSpec
from ladc.deploy.runners import load_runner, predict_logits
from ladc.deploy.targets import check_provider, resolve_baseline, resolve_targets
from ladc.engines import ENGINES
from ladc.engines.base import BenchTarget
from ladc.errors import LadcError
from ladc.measure import ISOLATION_MODES, PAUSE_S, synthetic_batch, time_targets
from ladc.runs.config import DEFAULT_ITERATIONS, BenchConfig, check_config, to_dict

__all__ = [
    "flops_per_token",
    "run_bench",
]

SELECTION_SOURCE = "export selection"  # `source` of a timing row taken from export.json's selection (not re-timed)


def flops_per_token(config, seq_len: int) -> float:
    """Forward FLOPs per token of a BERT encoder at sequence length S (2 FLOPs per multiply-add).

    Per layer: Q, K, V and output projections 4*H*H*2; FFN up and down 2*H*I*2; attention scores QK^T and the
    weighted sum of V 2*2*S*H. Total L * (8*H*H + 4*H*I + 4*S*H). Embeddings, LayerNorm, softmax, biases, pooler and
    classifier are excluded (under 1 % for BERT shapes).
    """
    hidden, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return float(layers * (4 * hidden * hidden * 2 + 2 * hidden * inter * 2 + 2 * 2 * seq_len * hidden))


def _validate(cfg: BenchConfig) -> None:
    check_config(cfg)  # each knob's own check (ladc/runs/config.py); below, the choices the engines and timing own
    checks = [
        (cfg.isolation in ISOLATION_MODES, f"--isolation '{cfg.isolation}' is not one of: {', '.join(ISOLATION_MODES)}"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise LadcError(message)
    for engine in ENGINES.values():  # each engine's own options (onnxruntime's graph optimisation level)
        engine.check_bench(cfg)


@dataclass
class _Loaded:
    target: BenchTarget
    runner: object
    tokenizer: object
    config: object
    settings: dict
    peak_rss_mb: float
    gpu_mb: float | None


def _spinning(cfg: BenchConfig) -> bool:
    """onnxruntime pools may spin after a run only when no other target is timed in between (isolated timing)."""
    return cfg.isolation == "isolated"


def _load_measured(target: BenchTarget, task: TaskSpec, cfg: BenchConfig, threads: int) -> _Loaded:
    """Load one target and run one batch of the largest shape, measuring peak RSS (and GPU memory) growth."""
    gpu_before = gpu_used_mb() if cfg.provider == "cuda" else None
    with PeakRss() as rss:
        runner, tokenizer, config, settings = load_runner(
            target, task, cfg.provider, threads, cfg.ort_graph_optimization, cfg.tensorrt, _spinning(cfg)
        )
        longest = max(cfg.seq_lens)
        if longest > config.max_position_embeddings:
            raise LadcError(f"--seq-lens {longest} exceeds {target.name}'s {config.max_position_embeddings} positions")
        runner(synthetic_batch(tokenizer, max(cfg.batch_sizes), longest, cfg.seed))
    gpu_mb = None if gpu_before is None else round(gpu_used_mb() - gpu_before, 1)
    return _Loaded(target, runner, tokenizer, config, settings, rss.delta_mb, gpu_mb)


def _dev_batches(item: _Loaded, cfg: BenchConfig, task: TaskSpec, batch_size: int) -> list[dict]:
    """Dev batches with dynamic padding, in a seeded shuffled order (so the first N timed are a random sample)."""
    from ladc.data.data import dev_loader

    batches = list(dev_loader(cfg.data, item.tokenizer, task, batch_size))
    order = np.random.default_rng(cfg.seed).permutation(len(batches))
    return [{k: v.numpy() for k, v in batches[i].items() if k != "labels"} for i in order]


def _time(loaded: list[_Loaded], inputs: list[list[dict]], cfg: BenchConfig) -> list[list[float]]:
    """Time every target on its list of input batches (cycled), isolated or interleaved; latencies per target."""
    if not loaded:
        return []
    iterations = cfg.iterations or (None if cfg.min_duration_s else DEFAULT_ITERATIONS)
    prepared = [[item.runner.prepare(batch) for batch in batches] for item, batches in zip(loaded, inputs)]
    calls = [lambda k, r=item.runner, xs=xs: r.run(xs[k % len(xs)]) for item, xs in zip(loaded, prepared)]
    return time_targets(calls, cfg.isolation, cfg.warmup, iterations, cfg.min_duration_s, cfg.interleave_block)


def _timing_row(item: _Loaded, batches: list[dict], lat: list[float], label: dict, cfg: BenchConfig) -> dict:
    """One target's row at one shape from its latencies (batches cycled over the runs, as they were timed)."""
    from ladc.bench.report import summarise_latencies

    shapes = [batches[k % len(batches)]["input_ids"].shape for k in range(len(lat))]
    samples = [b for b, _ in shapes]
    flops = sum(flops_per_token(item.config, s) * b * s for b, s in shapes)
    gflops_per_s = flops / (sum(lat) / 1000.0) / 1e9
    return {
        "target": item.target.name, **label, "mean_seq_len": round(float(np.mean([s for _, s in shapes])), 1),
        **summarise_latencies(lat, samples), "gflops_per_s": round(gflops_per_s, 2),
        "peak_fraction": round(gflops_per_s / cfg.peak_gflops, 4) if cfg.peak_gflops else None,
        "latencies_ms": [round(x, 4) for x in lat],
    }  # fmt: skip


def _timing_rows(loaded: list[_Loaded], inputs: list[list[dict]], label: dict, cfg: BenchConfig,
                 reused: list[tuple[list[float], str] | None] | None = None) -> list[dict]:  # fmt: skip
    """One row per target: timed here, or built from `reused[i]` (the export selection's latencies) where given."""
    reused = reused or [None] * len(loaded)
    fresh = [i for i, found in enumerate(reused) if found is None]
    timed = dict(zip(fresh, _time([loaded[i] for i in fresh], [inputs[i] for i in fresh], cfg)))
    rows = []
    for i, (item, batches) in enumerate(zip(loaded, inputs)):
        if reused[i] is None:
            rows.append({**_timing_row(item, batches, timed[i], label, cfg), "source": "bench"})
        else:
            latencies, timed_as = reused[i]
            rows.append({**_timing_row(item, batches, latencies, label, cfg), "source": SELECTION_SOURCE,
                         "selection_artifact": timed_as})  # fmt: skip
    return rows


def _reusable(item: _Loaded, cfg: BenchConfig, batch_size: int, seq_len: int, threads: int, cpu: str):
    """The export selection's latencies of this target at this synthetic shape, when they stand for what bench
    would measure (an export artifact, CPU, the engine's settings select used, the same threads and CPU model);
    None under --retime or otherwise."""
    from ladc.deploy.select import selection_latencies

    target = item.target
    if cfg.retime or cfg.provider != "cpu" or target.artifact is None:
        return None
    if not ENGINES[target.engine].reuses_selection(cfg):
        return None
    return selection_latencies(target.model_dir, target.artifact, batch_size, seq_len, threads, cpu)


def _time_all(loaded: list[_Loaded], cfg: BenchConfig, task: TaskSpec, console, threads: int, cpu: str) -> list[dict]:
    rows = []
    for batch_size in cfg.batch_sizes:
        for seq_len in cfg.seq_lens:
            reused = [_reusable(item, cfg, batch_size, seq_len, threads, cpu) for item in loaded]
            count = sum(found is not None for found in reused)
            from_selection = f"; {count} from their export dir's --select fastest timings" if count else ""
            console.print(
                f"timing batch {batch_size} x seq {seq_len} (synthetic), {len(loaded) - count} targets "
                f"{cfg.isolation}{from_selection}"
            )
            inputs = [[synthetic_batch(item.tokenizer, batch_size, seq_len, cfg.seed)] for item in loaded]
            label = {"mode": "synthetic", "batch_size": batch_size, "seq_len": seq_len}
            rows += _timing_rows(loaded, inputs, label, cfg, reused)
        if cfg.real:
            console.print(f"timing batch {batch_size} on dev sentences (dynamic padding)")
            inputs = [_dev_batches(item, cfg, task, batch_size) for item in loaded]
            rows += _timing_rows(loaded, inputs, {"mode": "dev", "batch_size": batch_size, "seq_len": None}, cfg)
    return rows


def _accuracy(item: _Loaded, cfg: BenchConfig, task: TaskSpec) -> tuple[dict, int]:
    """Task metrics on the full dev set, with the loader and metrics `ladc evaluate` uses."""
    from ladc.data.data import dev_loader
    from ladc.data.metrics import metrics_from_logits

    logits, labels = predict_logits(item.runner, dev_loader(cfg.data, item.tokenizer, task, cfg.eval_batch_size))
    return metrics_from_logits(task, logits, labels), len(labels)


def _target_entry(item: _Loaded, cfg: BenchConfig) -> dict:
    target = item.target
    return {
        "name": target.name, "kind": ENGINES[target.engine].bench_kind, "path": target.path,
        "precision": target.precision,
        "optimized": target.optimized, "size_mb": target.size_mb, "settings": item.settings,
        "peak_rss_mb": item.peak_rss_mb, "peak_gpu_mb": item.gpu_mb,
        "layers": item.config.num_hidden_layers, "hidden_size": item.config.hidden_size,
        "flops_per_token": {str(s): flops_per_token(item.config, s) for s in cfg.seq_lens},
    }  # fmt: skip


def _warm_up_libraries(targets: list[BenchTarget], task: TaskSpec, cfg: BenchConfig, threads: int) -> None:
    """Load and run the first target of each engine once, unmeasured, so the first measured target does not pay for
    imports, the onnxruntime environment and kernel initialisation (about 250 MB of RSS on the first load)."""
    for engine in dict.fromkeys(t.engine for t in targets):
        first = next(t for t in targets if t.engine == engine)
        runner, tokenizer, _, _ = load_runner(
            first, task, cfg.provider, threads, cfg.ort_graph_optimization, cfg.tensorrt, _spinning(cfg)
        )
        runner(synthetic_batch(tokenizer, 1, 8, cfg.seed))
        del runner
    gc.collect()


def _isolation_note(cfg: BenchConfig) -> dict:
    if cfg.isolation == "isolated":
        how = (f"one target at a time in this process: each target's warm-up and timed runs follow a {PAUSE_S} s pause, "
               "with no other target running in between; onnxruntime pools spin as in a deployment")  # fmt: skip
    else:
        how = (
            f"round-robin blocks of {cfg.interleave_block} runs per target; onnxruntime sessions opened with "
            "session.intra_op.allow_spinning=0 so no idle pool steals cores from the target being timed"
        )
    return {"mode": cfg.isolation, "how": how}


def _runtime(cfg: BenchConfig, threads: int) -> dict:
    engines = {key: value for engine in ENGINES.values() for key, value in engine.bench_runtime(cfg, threads).items()}
    return {
        "provider": cfg.provider, "threads": threads, **engines,
        "warmup": cfg.warmup, "iterations": cfg.iterations or (None if cfg.min_duration_s else DEFAULT_ITERATIONS),
        "min_duration_s": cfg.min_duration_s, "isolation": _isolation_note(cfg),
        "interleave_block": cfg.interleave_block if cfg.isolation == "interleaved" else None,
        "timer": "time.perf_counter around the runner call (inputs already on the device)",
        "memory_method": MEMORY_METHOD, "peak_gflops": cfg.peak_gflops,
        "selection_reuse": None if cfg.retime else (
            f"rows with source '{SELECTION_SOURCE}' were not timed here: their latencies are those `ladc export "
            "--select fastest` measured at the same batch, length, threads and CPU model (interleaved rounds, "
            "onnxruntime pools not spinning; export.json selection.timing); --retime times them here"),
    }  # fmt: skip


def _add_roof_fractions(rows: list[dict], entries: list[dict], roofs: dict) -> None:
    """Each timing row's gflops_per_s as a fraction of the measured roof of its target's precision."""
    from ladc.bench.roofline import roof_key

    keys = {entry["name"]: roof_key(entry["precision"], entry["settings"]) for entry in entries}
    for row in rows:
        key = keys.get(row["target"])
        row["roof"] = key
        row["roof_fraction"] = round(row["gflops_per_s"] / roofs[key], 4) if key and roofs.get(key) else None


def run_bench(cfg: BenchConfig) -> dict:
    """Benchmark every target; write bench.json, bench.md and bench.png into the output dir; print a table.

    Returns:
        The report written to bench.json: task, headline_metric, baseline, config, machine, runtime, targets (with
        metrics and memory), timings (one row per target and shape, raw latencies included), warnings, output.

    Raises:
        LadcError: bad target/baseline/provider/options, a target that does not fit the task, existing output dir.
    """
    import psutil
    from rich.console import Console

    from ladc.bench.report import add_speedups, busy_warning, machine_info, render_table, write_report
    from ladc.data.tasks import get_task
    from ladc.runs.hardware import native_bf16
    from ladc.runs.runs import check_output, default_output

    console = Console(stderr=True, highlight=False)
    task = get_task(cfg.data.task)
    _validate(cfg)
    output = check_output(default_output(cfg), overwrite=cfg.overwrite)
    targets = resolve_targets(cfg.targets, cfg.torch_bf16)
    skipped = [t for t in targets if cfg.provider == "cuda" and ENGINES[t.engine].cpu_only]
    targets = [t for t in targets if t not in skipped]
    if not targets:
        labels = " or ".join(dict.fromkeys(ENGINES[t.engine].label for t in skipped))
        raise LadcError(f"--provider cuda: every target is an {labels} artifact, which ladc runs on the CPU only")
    names = [t.name for t in targets]
    baseline = names[resolve_baseline(cfg.baseline, names)]
    check_provider(cfg.provider, {t.engine for t in targets}, cfg.tensorrt)
    threads = cfg.threads or psutil.cpu_count(logical=False) or 1
    machine = machine_info(cfg.provider)
    warnings = [f"{t.name} skipped: {ENGINES[t.engine].cpu_only}; time them with --provider cpu" for t in skipped]
    warnings += [
        f"{t.name} is dynamically quantized INT8: MatMulInteger/DynamicQuantizeLinear run on the CPU under "
        "CUDAExecutionProvider; use fp16 on GPUs"
        for t in targets
        if cfg.provider == "cuda" and t.precision == "int8"
    ]
    if cfg.provider == "cpu" and not native_bf16(machine["cpu_flags"]):
        warnings += [
            f"{t.name} runs bf16 autocast on a CPU without native bf16 ({machine['cpu']}): emulated, expect it to be "
            "many times slower than fp32 (ladc/runs/hardware.py)"
            for t in targets
            if t.precision == "bf16-autocast"
        ]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _warm_up_libraries(targets, task, cfg, threads)
        loaded = []
        for target in targets:
            console.print(f"loading {target.name} ({ENGINES[target.engine].bench_kind}, {target.precision})")
            loaded.append(_load_measured(target, task, cfg, threads))
        timings = _time_all(loaded, cfg, task, console, threads, machine["cpu"])
        warnings += busy_warning(machine, threads)
        entries = [_target_entry(item, cfg) for item in loaded]
        roofs = None
        if cfg.roofline:
            from ladc.bench.roofline import measure_roofs

            console.print("measuring fp32/bf16/int8 GEMM roofs at the model's shapes (--roofline)")
            roofs = measure_roofs(loaded[-1].config, max(cfg.batch_sizes), max(cfg.seq_lens), threads)
            _add_roof_fractions(timings, entries, roofs)
        if cfg.profile:
            from ladc.bench.profiling import profile_target

            for item, entry in zip(loaded, entries):
                console.print(f"profiling {item.target.name} (batch 1 x seq {cfg.seq_lens[0]})")
                feed = synthetic_batch(item.tokenizer, 1, cfg.seq_lens[0], cfg.seed)
                entry["profile"] = profile_target(item, feed, threads, cfg.ort_graph_optimization)
        if not cfg.skip_accuracy:
            for item, entry in zip(loaded, entries):
                console.print(f"accuracy of {item.target.name} on the full {task.name} dev set")
                entry["metrics"], entry["dev_examples"] = _accuracy(item, cfg, task)
    finally:
        torch.set_num_threads(previous_threads)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    report = {
        "task": task.name, "headline_metric": task.headline_metric, "baseline": baseline, "config": to_dict(cfg),
        "machine": machine, "runtime": _runtime(cfg, threads), "targets": entries,
        "timings": add_speedups(timings, baseline), "warnings": warnings, "roofline": roofs,
    }  # fmt: skip
    write_report(report, output, cfg.overwrite)
    report["output"] = str(output)
    # off a terminal rich assumes 80 columns, which would truncate the target names in logs
    Console(width=None if sys.stdout.isatty() else 160).print(render_table(report))
    return report
