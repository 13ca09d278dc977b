"""Benchmark ladc's ONNX artifacts against PyTorch and optimum's own best export path on one model dir.

Columns: PyTorch fp32 | PyTorch bf16 (autocast, the CPU baseline DESIGN asks INT8 to beat) | ORT fp32 | ORT fused |
ORT INT8 | ORT fused+INT8 (ladc) | optimum best. "optimum best" is the faster (batch 32) of optimum's working paths
that keeps accuracy within 1 point of PyTorch: `ORTModelForSequenceClassification(export=True)` + `ORTOptimizer` O2,
or `ORTQuantizer` avx512_vnni dynamic on the unfused graph. optimum's fused + INT8 (ORTQuantizer on the O2 graph) is
attempted too and its error recorded: it is the known trap that ladc's export works around.

Rows: dev accuracy (full dev set unless --dev-limit), p50 latency in ms at batch 1 / seq 128 and batch 32 / seq 128
(real dev sentences padded to 128 tokens), size in MiB. Prints a table and writes JSON.

Usage:
    python benchmarks/export_onnx.py runs/teacher-sst2 --data-dir ../shared/glue --iters 30
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ladc.runs.config import DataConfig, ExportConfig

LADC_COLUMNS = {"ORT fp32": "fp32", "ORT fused": "fused", "ORT INT8": "int8", "ORT fused+INT8": "fused_int8"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="fine-tuned HF sequence-classifier dir")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "glue"))
    parser.add_argument("--dev-limit", type=int, default=None, help="first N dev examples (default: all)")
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per latency cell")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for torch and onnxruntime")
    parser.add_argument("--per-channel", action="store_true", help="per-channel INT8 for ladc and optimum alike")
    parser.add_argument("--work-dir", default=None, help="where exports go (default: a temp dir, removed after)")
    parser.add_argument("--reuse", action="store_true", help="reuse the exports already in --work-dir")
    parser.add_argument(
        "--output", default=None, help="JSON path (default benchmarks/results/export_onnx-<model>.json)"
    )
    return parser.parse_args(argv)


def p50_ms(run, iters: int, warmup: int) -> float:
    """Median wall time of `run()` in milliseconds after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def timing_inputs(tokenizer, data_dir: str, task, batch: int, seq: int = 128) -> dict[str, np.ndarray]:
    """`batch` real dev sentences padded/truncated to exactly `seq` tokens (int64)."""
    from ladc.data.data import load_raw

    raw = load_raw(DataConfig(task=task.name, data_dir=data_dir, dev_limit=batch), "dev")
    texts = [raw[i][task.text_fields[0]] for i in range(len(raw))]
    pairs = [raw[i][task.text_fields[1]] for i in range(len(raw))] if task.is_pair else None
    while len(texts) < batch:  # tiny dev sets: repeat
        texts, pairs = texts + texts, (pairs + pairs if pairs else None)
    encoded = tokenizer(
        texts[:batch], pairs[:batch] if pairs else None, padding="max_length", truncation=True, max_length=seq
    )
    return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}


def export_optimum(model_dir: str, work: Path, per_channel: bool) -> tuple[dict[str, Path], dict[str, str]]:
    """optimum's own paths; returns ({column: onnx path}, {path: error}) for what worked and what did not."""
    from optimum.onnxruntime import (
        AutoOptimizationConfig,
        AutoQuantizationConfig,
        ORTModelForSequenceClassification,
        ORTOptimizer,
        ORTQuantizer,
    )

    paths, errors = {}, {}
    plain = work / "optimum"
    ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(plain)
    qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=per_channel)
    try:
        optimizer = ORTOptimizer.from_pretrained(plain)
        optimizer.optimize(save_dir=work / "optimum-o2", optimization_config=AutoOptimizationConfig.O2())
        paths["optimum O2"] = work / "optimum-o2" / "model_optimized.onnx"
    except Exception as exc:  # record, do not hide: the table says which path failed and why
        errors["optimum O2"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    try:
        ORTQuantizer.from_pretrained(plain).quantize(save_dir=work / "optimum-int8", quantization_config=qconfig)
        paths["optimum INT8"] = work / "optimum-int8" / "model_quantized.onnx"
    except Exception as exc:
        errors["optimum INT8"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if "optimum O2" in paths:
        try:
            quantizer = ORTQuantizer.from_pretrained(work / "optimum-o2", file_name="model_optimized.onnx")
            quantizer.quantize(save_dir=work / "optimum-o2-int8", quantization_config=qconfig)
            paths["optimum O2+INT8"] = work / "optimum-o2-int8" / "model_optimized_quantized.onnx"
        except Exception as exc:
            errors["optimum O2+INT8"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return paths, errors


def measure_torch(model, parity_set, inputs: dict[int, dict], task, args, bf16: bool) -> dict:
    import torch

    from ladc.data.metrics import metrics_from_logits

    def forward(feed):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.float().numpy()

    logits = np.concatenate([forward(batch) for batch in parity_set.batches])
    result = {"metrics": metrics_from_logits(task, logits, parity_set.labels), "logits": logits}
    for batch, feed in inputs.items():
        result[f"p50_ms_b{batch}"] = p50_ms(lambda feed=feed: forward(feed), args.iters, args.warmup)
    return result


def measure_onnx(path: Path, parity_set, inputs: dict[int, dict], task, args) -> dict:
    from ladc.data.metrics import metrics_from_logits
    from ladc.deploy.runners import predict_logits
    from ladc.engines.onnxruntime_session import OrtRunner, open_session

    session = open_session(path, threads=args.threads)
    logits, _ = predict_logits(OrtRunner(session), parity_set.batches)
    names = [i.name for i in session.get_inputs()]
    result = {"metrics": metrics_from_logits(task, logits, parity_set.labels)}
    result["logits"] = logits
    for batch, feed in inputs.items():
        sub = {n: feed[n] for n in names}
        result[f"p50_ms_b{batch}"] = p50_ms(lambda sub=sub: session.run(["logits"], sub), args.iters, args.warmup)
    result["size_mb"] = round(path.stat().st_size / 2**20, 2)
    return result


def machine() -> dict:
    import os

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": os.cpu_count(), "loadavg_at_start": load, "python": platform.python_version()}


def run(args: argparse.Namespace) -> dict:
    import tempfile

    import torch

    from ladc.data.tasks import get_task
    from ladc.deploy.export import export_onnx
    from ladc.deploy.parity import load_parity_set
    from ladc.runs.export_manifest import is_export_dir, read_export_manifest
    from ladc.training.models import load_classifier, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task(args.task)
    started = machine()
    tmp = tempfile.TemporaryDirectory(prefix="ladc-bench-export-") if args.work_dir is None else None
    work = Path(args.work_dir or tmp.name)
    cfg = ExportConfig(
        model=args.model_dir, output=str(work / "ladc"), task=task.name, data_dir=args.data_dir, optimize=True,
        quantize="dynamic", per_channel=args.per_channel, parity_samples=args.dev_limit, allow_drop=100.0,
        overwrite=True,
    )  # fmt: skip
    if args.reuse and is_export_dir(work / "ladc") and (work / "optimum.json").is_file():
        saved = json.loads((work / "optimum.json").read_text())
        optimum_paths, optimum_errors = {k: Path(v) for k, v in saved["paths"].items()}, saved["errors"]
    else:
        export_onnx(cfg)  # allow_drop=100: the benchmark reports drift instead of stopping on it
        optimum_paths, optimum_errors = export_optimum(args.model_dir, work, args.per_channel)
        paths = {k: str(v) for k, v in optimum_paths.items()}
        (work / "optimum.json").write_text(json.dumps({"paths": paths, "errors": optimum_errors}))

    manifest = read_export_manifest(work / "ladc")
    tokenizer = load_tokenizer(args.model_dir)
    model = load_classifier(args.model_dir, task).eval()
    data = DataConfig(task=task.name, data_dir=args.data_dir, dev_limit=args.dev_limit)
    parity_set = load_parity_set(data, tokenizer, task)
    inputs = {b: timing_inputs(tokenizer, args.data_dir, task, b) for b in (1, 32)}

    columns: dict[str, dict] = {}
    columns["PyTorch fp32"] = measure_torch(model, parity_set, inputs, task, args, bf16=False)
    weights = Path(args.model_dir) / "model.safetensors"
    columns["PyTorch fp32"]["size_mb"] = round(weights.stat().st_size / 2**20, 2) if weights.is_file() else None
    columns["PyTorch bf16"] = measure_torch(model, parity_set, inputs, task, args, bf16=True)
    columns["PyTorch bf16"]["size_mb"] = columns["PyTorch fp32"]["size_mb"]
    for column, name in LADC_COLUMNS.items():
        columns[column] = measure_onnx(work / "ladc" / manifest.artifact(name)["path"], parity_set, inputs, task, args)
    for column, path in optimum_paths.items():
        columns[column] = measure_onnx(path, parity_set, inputs, task, args)

    reference = columns["PyTorch fp32"]
    headline = task.headline_metric
    reference_labels = reference["logits"].argmax(-1)
    for result in columns.values():
        result["agreement_pct"] = round(float((result.pop("logits").argmax(-1) == reference_labels).mean() * 100), 2)
    candidates = [c for c in optimum_paths if reference["metrics"][headline] - columns[c]["metrics"][headline] <= 0.01]
    best = min(candidates or optimum_paths, key=lambda c: columns[c]["p50_ms_b32"])
    ours = columns["ORT fused+INT8"]
    ratios = {
        "optimum_best": best,
        "speedup_b1": round(columns[best]["p50_ms_b1"] / ours["p50_ms_b1"], 3),
        "speedup_b32": round(columns[best]["p50_ms_b32"] / ours["p50_ms_b32"], 3),
        "size_ratio": round(ours["size_mb"] / columns[best]["size_mb"], 3),
        "accuracy_delta_points": round((ours["metrics"][headline] - columns[best]["metrics"][headline]) * 100, 2),
    }
    return {
        "command": " ".join(["python", *sys.argv]),
        "model_dir": str(Path(args.model_dir).resolve()),
        "task": task.name,
        "dev_examples": len(parity_set.labels),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {**started, "loadavg_at_end": machine()["loadavg_at_start"]},
        "settings": {
            "iters": args.iters,
            "warmup": args.warmup,
            "threads": args.threads or torch.get_num_threads(),
            "per_channel": args.per_channel,
            "seq_len": 128,
        },  # fmt: skip
        "columns": columns,
        "optimum_errors": optimum_errors,
        "fused_int8_vs_optimum_best": ratios,
        "ladc_parity": {
            a["path"]: {k: a["parity"][k] for k in ("max_abs_diff", "label_agreement_pct", "within_tolerance")}
            for a in manifest.artifacts
        },  # fmt: skip
        "versions": manifest.versions,
    }


def markdown(result: dict) -> str:
    """The result as a markdown table (the form RESULTS.md records)."""
    headline = next(iter(result["columns"]["PyTorch fp32"]["metrics"]))
    names = list(result["columns"])
    rows = [
        (f"dev {headline} (%)", lambda c: f"{c['metrics'][headline] * 100:.2f}"),
        ("agreement with PyTorch fp32 (%)", lambda c: f"{c['agreement_pct']:.2f}"),
        ("p50 ms, batch 1 / seq 128", lambda c: f"{c['p50_ms_b1']:.2f}"),
        ("p50 ms, batch 32 / seq 128", lambda c: f"{c['p50_ms_b32']:.1f}"),
        ("size MiB", lambda c: "-" if c.get("size_mb") is None else f"{c['size_mb']:.1f}"),
    ]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(result["columns"][n]) for n in names) + " |")
    ratios = result["fused_int8_vs_optimum_best"]
    lines.append("")
    lines.append(
        f"ladc fused+INT8 vs optimum best ({ratios['optimum_best']}): {ratios['speedup_b1']}x at batch 1, "
        f"{ratios['speedup_b32']}x at batch 32, size x{ratios['size_ratio']}, "
        f"{headline} {ratios['accuracy_delta_points']:+.2f} points"
    )
    for path, error in result["optimum_errors"].items():
        lines.append(f"{path} failed: {error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    output = Path(args.output or Path(__file__).parent / "results" / f"export_onnx-{Path(args.model_dir).name}.json")
    from ladc.runs.io import atomic_write_json

    atomic_write_json(output, result)
    print(markdown(result))
    print(f"\nJSON written to {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
