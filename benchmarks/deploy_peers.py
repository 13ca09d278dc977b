"""Peers benchmark: ladc's artifacts against what a user could deploy without ladc, in one isolated `ladc bench` run.

Targets (all timed with the same harness, one at a time, same threads):
- the teacher under PyTorch fp32 and bf16 autocast (bf16 only where the CPU has it natively; emulated bf16 on an
  AVX2-only CPU is ~40x slower than fp32 and would take most of an hour here, see ladc/runs/hardware.py);
- the student's plain `model.onnx` under optimum's dynamic INT8 (`ORTQuantizer` + `AutoQuantizationConfig` for
  this CPU: avx512_vnni where present, else avx2), i.e. what an optimum user does;
- OpenVINO's CPU plugin reading the student's plain `model.onnx` (`openvino:` target);
- every artifact of ladc's export dir, and the one `--select fastest` chose (from export.json).

Shapes: batch 1 and 32 at seq 128 (synthetic ids), and real dev sentences with dynamic padding (`--real`); dev
accuracy for every target; `--roofline` roofs. Then the isolation check: the chosen artifact and `model_int8` timed
alone, compared with their figures in the group.

Usage (repo root, after `ladc pipeline --config benchmarks/peers-sst2.yaml`):
    python benchmarks/deploy_peers.py runs/peers-sst2 --data-dir ../shared/glue --output benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ladc.runs.config import BenchConfig, DataConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a `ladc pipeline` run dir with teacher/, student/ and onnx/")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default="../shared/glue")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--output", default="benchmarks/results")
    return parser.parse_args(argv)


def optimum_int8(onnx_dir: Path, out: Path, flags: list[str]) -> Path:
    """optimum's dynamic INT8 of the plain model.onnx, with the config preset for this CPU; returns the .onnx."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    from ladc.runs.export_manifest import EXPORT_MANIFEST

    if out.exists():
        shutil.rmtree(out)
    preset = "avx512_vnni" if "avx512_vnni" in flags else "avx2"
    qconfig = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=False)
    ORTQuantizer.from_pretrained(onnx_dir, file_name="model.onnx").quantize(save_dir=out, quantization_config=qconfig)
    for name in onnx_dir.iterdir():  # config.json and the tokenizer, so `ladc bench` can feed it
        if name.suffix in (".json", ".txt") and name.name != EXPORT_MANIFEST and not (out / name.name).exists():
            shutil.copy(name, out / name.name)
    return next(out.glob("*.onnx"))


def p50s(report: dict) -> dict[tuple[str, str], float]:
    from ladc.bench.report import shape_label

    return {(row["target"], shape_label(row)): row["p50_ms"] for row in report["timings"]}


def main(argv: list[str] | None = None) -> None:
    import dataclasses

    from ladc.bench.bench import run_bench
    from ladc.runs.export_manifest import read_export_manifest
    from ladc.runs.hardware import cpu_flags, cpu_model, native_bf16

    args = parse_args(argv)
    run_dir, output = Path(args.run_dir), Path(args.output)
    flags = cpu_flags()
    export = read_export_manifest(run_dir / "onnx")
    chosen = export.chosen
    optimum_path = optimum_int8(run_dir / "onnx", run_dir / "optimum-int8", flags)
    targets = (str(run_dir / "teacher"), str(optimum_path), f"openvino:{run_dir / 'onnx' / 'model.onnx'}",
               str(run_dir / "onnx"))  # fmt: skip
    data = DataConfig(task=args.task, data_dir=args.data_dir)
    cfg = BenchConfig(
        targets=targets, data=data, output=str(run_dir / "bench-peers"), batch_sizes=(1, 32), seq_lens=(128,),
        real=True, iterations=args.iterations, torch_bf16=native_bf16(flags), roofline=True, overwrite=True,
    )  # fmt: skip
    group = run_bench(cfg)
    alone = {}
    for name in dict.fromkeys([chosen, "int8"]):
        entry = export.artifact(name)
        single = run_bench(dataclasses.replace(cfg, targets=(str(run_dir / "onnx" / entry["path"]),), real=False,
                                               skip_accuracy=True, roofline=False, torch_bf16=False,
                                               output=str(run_dir / f"bench-alone-{name}")))  # fmt: skip
        alone[name] = {shape: p50 for (_, shape), p50 in p50s(single).items()}
    group_p50 = p50s(group)
    check = {name: {shape: {"alone_ms": ms, "group_ms": group_p50[(f"onnx/{name}", shape)],
                            "ratio": round(group_p50[(f"onnx/{name}", shape)] / ms, 3)}
                    for shape, ms in shapes.items()} for name, shapes in alone.items()}  # fmt: skip
    result = {
        "machine": {"cpu": cpu_model(), "cpu_flags": flags}, "chosen": chosen, "selection": export.selection,
        "bf16_targets": "included" if native_bf16(flags) else "skipped: no native bf16 on this CPU",
        "bench": {k: group[k] for k in ("targets", "timings", "roofline", "runtime", "machine")},
        "isolation_check": check,
    }  # fmt: skip
    for target in result["bench"]["timings"]:
        target.pop("latencies_ms", None)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"deploy_peers-{args.task}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print((Path(group["output"]) / "bench.md").read_text())
    print(json.dumps({"chosen": chosen, "isolation_check": check}, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
