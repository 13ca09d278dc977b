"""The OpenVINO engine: IR converted from the fp32 ONNX (the plugin's default precision, and explicit f32) and NNCF
static INT8, run by OpenVINO's CPU plugin. Needs the optional extra `ladc[openvino]`; conversion and quantization live
in ladc/engines/openvino_ir.py. Its files in an export dir:

- openvino_model.xml     --backend openvino: `ov.convert_model` of model.onnx, fp32 weights; run with the CPU plugin's
                         default precision (`openvino`: bf16 on AMX) and with f32 forced (`openvino_f32`).
- openvino_model_int8.xml --backend openvino: NNCF post-training INT8 calibrated on train sentences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ladc.engines.base import MODEL_INPUTS, Artifact, BenchTarget, BuildContext, Engine, LoadOptions, file_model_config
from ladc.engines.base import size_mb as sum_mb
from ladc.engines.openvino_ir import IR_FILE, IR_INT8_FILE, openvino_missing
from ladc.errors import LadcError

__all__ = ["NAME", "ENGINE", "OvRunner", "open_openvino", "check_openvino_io"]

NAME = "openvino"


# ----------------------------------------------------------------------------- builders


def _build_ir(ctx: BuildContext) -> dict:
    from ladc.engines.openvino_ir import convert_to_ir

    convert_to_ir(ctx.build / "model.onnx", ctx.build / IR_FILE)
    return {}


def _build_ir_int8(ctx: BuildContext) -> dict:
    from ladc.engines.openvino_ir import quantize_ir

    calibration = ctx.calibration()
    samples = sum(len(feed["input_ids"]) for feed in calibration)
    quantize_ir(ctx.build / IR_FILE, ctx.build / IR_INT8_FILE, calibration, subset_size=len(calibration))
    return {"quantization": {"mode": "static", "tool": "nncf", "model_type": "TRANSFORMER", "preset": "MIXED",
                             "calibration_split": "train", "calibration_samples": samples}}  # fmt: skip


ROWS = (
    Artifact("openvino", NAME, IR_FILE, "auto", _build_ir),
    Artifact("openvino_f32", NAME, IR_FILE, "fp32", None, runtime={"inference_precision": "f32"}),
    Artifact("openvino_int8", NAME, IR_INT8_FILE, "int8", _build_ir_int8, quantized=True),
)


# ----------------------------------------------------------------------------- the runner


class OvRunner:
    """A compiled OpenVINO model as a runner: one synchronous infer request, inputs fed by name."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in compiled.inputs]
        outputs = [port.get_any_name() for port in compiled.outputs]
        self.output = compiled.outputs[outputs.index("logits") if "logits" in outputs else 0]

    def prepare(self, batch: dict) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(np.asarray(batch[name]), dtype=np.int64) for name in self.input_names}

    def run(self, prepared: dict[str, np.ndarray]) -> np.ndarray:
        return self.request.infer(prepared)[self.output]

    def to_numpy(self, output) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)

    def __call__(self, batch: dict) -> np.ndarray:
        return self.to_numpy(self.run(self.prepare(batch)))

    @property
    def inference_precision(self) -> str:
        """What the plugin computes in: fp32, bf16 or fp16 (its default depends on the CPU: bf16 on AMX)."""
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        value = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(value, value)


def open_openvino(path: str | Path, threads: int | None, inference_precision: str | None = None) -> OvRunner:
    """An OvRunner on the CPU plugin (see ladc.engines.openvino_ir.compile_ir)."""
    from ladc.engines.openvino_ir import compile_ir

    return OvRunner(compile_ir(Path(path), "CPU", threads, inference_precision))


def check_openvino_io(runner: OvRunner, tokenizer, target: BenchTarget, task) -> None:
    provided = [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]
    if "input_ids" not in runner.input_names or not set(runner.input_names) <= set(provided):
        raise LadcError(
            f"OpenVINO target {target.path} expects inputs {runner.input_names} but its tokenizer gives {provided}; "
            "expected a sequence classifier exported with `ladc export --backend openvino`"
        )
    width = runner.output.get_partial_shape()[-1]
    if width.is_static and width.get_length() != task.num_labels:
        raise LadcError(
            f"OpenVINO target {target.path} outputs {width} labels but task {task.name} has {task.num_labels}"
        )


# ----------------------------------------------------------------------------- opening


def _open_artifact(path: Path, entry: dict, threads, spinning, expected_inputs) -> OvRunner:
    return open_openvino(path, threads, (entry.get("runtime") or {}).get("inference_precision"))


def _load(target: BenchTarget, task, tokenizer, options: LoadOptions):
    from importlib.metadata import version

    config = file_model_config(target, task, tokenizer)
    runner = open_openvino(target.path, options.threads, target.runtime.get("inference_precision"))
    check_openvino_io(runner, tokenizer, target, task)
    settings = {"engine": f"openvino {version('openvino')}", "device": "CPU", "inference_num_threads": options.threads,
                "inference_precision": runner.inference_precision, "performance_hint": "LATENCY",
                "num_streams": 1}  # fmt: skip
    return runner, config, settings


def _files(path: Path) -> list[Path]:
    return [path, path.with_suffix(".bin")]


# ----------------------------------------------------------------------------- targets


def _export_target(export_dir: Path, entry: dict, path: Path, name: str) -> BenchTarget:
    return BenchTarget(name, NAME, str(path), str(export_dir), str(entry.get("precision", "fp32")),
                       sum_mb(_files(path)), runtime=dict(entry.get("runtime") or {}))  # fmt: skip


def _file_target(path: Path, arg: str) -> BenchTarget:
    return BenchTarget(f"{path.parent.name}/{path.stem}", NAME, arg, str(path.parent), "auto", sum_mb(_files(path)))


def _prefixed_target(arg: str, path: Path) -> BenchTarget:
    """`openvino:FILE`: OpenVINO's CPU plugin on any ONNX or IR file (e.g. openvino:runs/onnx/model.onnx)."""
    if not path.is_file() or path.suffix not in (".onnx", ".xml"):
        raise LadcError(f"target {arg}: expected openvino:FILE with an existing .onnx or .xml file")
    files = _files(path) if path.suffix == ".xml" else [path]
    return BenchTarget(f"{path.parent.name}/{path.stem}@openvino", NAME, str(path), str(path.parent), "auto",
                       sum_mb(files))  # fmt: skip


# ----------------------------------------------------------------------------- bench


def _profile(target: BenchTarget, runner: OvRunner, feed: dict, threads: int, graph_level: str, runs: int):
    """(layer type, µs) of every executed layer in `runs` inferences, from OpenVINO's performance counters
    (PERF_COUNT), in a compiled model of its own."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "PERF_COUNT": "YES",
              "INFERENCE_NUM_THREADS": str(threads)}  # fmt: skip
    precision = target.runtime.get("inference_precision")
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    request = ov.Core().compile_model(target.path, "CPU", config).create_infer_request()
    inputs = runner.prepare(feed)
    request.infer(inputs)
    samples: list[tuple[str, float]] = []
    for _ in range(runs):
        request.infer(inputs)
        samples += [(info.node_type, info.real_time.total_seconds() * 1e6) for info in request.profiling_info
                    if info.status == info.Status.EXECUTED]  # fmt: skip
    return samples


ENGINE = Engine(
    name=NAME,
    label="OpenVINO",
    artifacts=ROWS,
    missing=lambda build=False: openvino_missing(with_nncf=build),  # NNCF only quantizes: running needs openvino
    open_artifact=_open_artifact,
    load=_load,
    export_target=_export_target,
    files=_files,
    suffixes=(".xml",),
    file_target=_file_target,
    prefixed_target=_prefixed_target,
    cpu_only="OpenVINO artifacts run on the CPU plugin",
    profile=_profile,
    packages=("openvino", "nncf"),
    card_tag="openvino",
)
