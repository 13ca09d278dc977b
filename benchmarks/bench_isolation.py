"""Does a target's figure in a multi-target `ladc bench` equal its figure alone? Isolated vs interleaved timing.

For each artifact of an export dir: p50 at batch 1 and 32 (seq 128) timed alone, then in a group of all of them,
under `--isolation isolated` (the default), `--isolation interleaved` (non-spinning onnxruntime pools) and the old
behaviour (interleaved with spinning pools, what `ladc bench` did before). Every configuration is repeated and the
median of the repeats' p50s is reported, so run-to-run noise is visible next to the group/alone ratio.

Usage (repo root; nothing else running):
    python benchmarks/bench_isolation.py runs/peers-sst2/onnx --artifacts int8,fused_int8,fp32,openvino_f32 \
        --data-dir ../shared/glue --repeats 3 --output benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from ladc.runs.config import BenchConfig, DataConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--artifacts", default="int8,fused_int8,fp32,openvino_f32")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default="../shared/glue")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--output", default="benchmarks/results")
    return parser.parse_args(argv)


def _p50s(report: dict) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for row in report["timings"]:
        out.setdefault(row["target"].rsplit("/", 1)[-1], {})[row["batch_size"]] = row["p50_ms"]
    return out


def main(argv: list[str] | None = None) -> None:
    import ladc.bench.bench
    from ladc.bench.bench import run_bench
    from ladc.runs.export_manifest import read_export_manifest
    from ladc.runs.hardware import cpu_flags, cpu_model

    args = parse_args(argv)
    export_dir = Path(args.export_dir)
    manifest = read_export_manifest(export_dir)
    names = args.artifacts.split(",")
    base = BenchConfig(
        data=DataConfig(task=args.task, data_dir=args.data_dir), batch_sizes=(1, 32), seq_lens=(128,),
        iterations=args.iterations, skip_accuracy=True, overwrite=True, output="/tmp/ladc-bench-isolation",
    )  # fmt: skip

    def target(name: str) -> str:
        entry = manifest.artifact(name)
        path = export_dir / entry["path"]
        return f"openvino:{path}" if entry.get("engine") == "openvino" and path.suffix == ".onnx" else str(path)

    runs: dict[str, list[dict]] = {"alone": [], "isolated": [], "interleaved": [], "interleaved_spinning": []}
    spinning = ladc.bench.bench._spinning
    for _ in range(args.repeats):
        alone = {}
        for name in names:
            (single,) = _p50s(run_bench(dataclasses.replace(base, targets=(target(name),)))).values()
            alone[name] = single
        runs["alone"].append(alone)
        group = tuple(target(name) for name in names)
        runs["isolated"].append(_p50s(run_bench(dataclasses.replace(base, targets=group))))
        runs["interleaved"].append(_p50s(run_bench(dataclasses.replace(base, targets=group, isolation="interleaved"))))
        ladc.bench.bench._spinning = lambda cfg: True  # the behaviour before isolation: interleaved, pools spinning
        try:
            runs["interleaved_spinning"].append(
                _p50s(run_bench(dataclasses.replace(base, targets=group, isolation="interleaved")))
            )
        finally:
            ladc.bench.bench._spinning = spinning
    # names of OpenVINO-on-ONNX targets carry '@openvino'; map group keys back by the file stem order
    table = []
    for mode, reps in runs.items():
        for index, name in enumerate(names):
            for batch in (1, 32):
                values = [list(rep.values())[index][batch] for rep in reps]
                table.append({"mode": mode, "artifact": name, "batch_size": batch, "p50_ms_median": round(
                    statistics.median(values), 3), "p50_ms_runs": [round(v, 3) for v in values]})  # fmt: skip
    alone = {(r["artifact"], r["batch_size"]): r["p50_ms_median"] for r in table if r["mode"] == "alone"}
    for row in table:
        row["ratio_to_alone"] = round(row["p50_ms_median"] / alone[(row["artifact"], row["batch_size"])], 3)
    result = {"machine": {"cpu": cpu_model(), "cpu_flags": cpu_flags()}, "export_dir": str(export_dir),
              "repeats": args.repeats, "iterations": args.iterations, "rows": table}  # fmt: skip
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench_isolation.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| mode | artifact | batch | p50 ms (median of runs) | runs | vs alone |")
    print("|---|---|---:|---:|---|---:|")
    for row in table:
        print(f"| {row['mode']} | {row['artifact']} | {row['batch_size']} | {row['p50_ms_median']:.2f} | "
              f"{', '.join(f'{v:.2f}' for v in row['p50_ms_runs'])} | {row['ratio_to_alone']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
