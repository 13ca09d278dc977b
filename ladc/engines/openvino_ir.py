"""OpenVINO artifacts of an exported classifier: IR converted from the fp32 ONNX, and NNCF post-training INT8.

Layout: `openvino_model.xml/.bin` (+ `openvino_model_int8.xml/.bin`) beside model.onnx, config.json and the
tokenizer: the directory layout `optimum.intel.OVModelForSequenceClassification.from_pretrained(OUT)` loads (the INT8
one via `file_name=`). ladc does not depend on optimum-intel: its releases that support OpenVINO 2026 pin
optimum~=2.3 and torchvision, while optimum-onnx 0.1.0 (our ONNX exporter) needs optimum 2.1 and transformers<4.58.

Needs the optional extra `ladc[openvino]` (openvino, nncf).
"""

from __future__ import annotations

from pathlib import Path

from ladc.errors import LadcError

__all__ = ["IR_FILE", "IR_INT8_FILE", "openvino_missing", "convert_to_ir", "quantize_ir", "compile_ir"]

IR_FILE = "openvino_model.xml"
IR_INT8_FILE = "openvino_model_int8.xml"


def openvino_missing(with_nncf: bool = False) -> str | None:
    """None when openvino (and nncf) import, else why not, as a user-facing hint."""
    import importlib.util

    missing = [name for name in ("openvino", "nncf")[: 2 if with_nncf else 1] if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed; pip install 'ladc[openvino]'"


def _require(with_nncf: bool = False) -> None:
    reason = openvino_missing(with_nncf)
    if reason:
        raise LadcError(f"the OpenVINO backend needs {reason}")


def convert_to_ir(onnx_path: Path, target: Path) -> None:
    """`ov.convert_model` of an fp32 ONNX graph, saved with fp32 weights (OpenVINO compresses to fp16 by default,
    which would make the "f32" artifact an fp16-weight one)."""
    _require()
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(target), compress_to_fp16=False)


def quantize_ir(source: Path, target: Path, calibration: list[dict], subset_size: int) -> None:
    """NNCF post-training static INT8 of an IR, calibrated on `calibration` (feeds of (B, S) int64 arrays).

    `model_type=TRANSFORMER` keeps softmax, LayerNorm and the other accuracy-sensitive ops in float (NNCF's preset
    for transformer encoders); weights int8 per channel, activations int8 per tensor (MIXED preset).
    """
    _require(with_nncf=True)
    import nncf
    import openvino as ov

    if not calibration:
        raise LadcError("INT8 calibration for OpenVINO needs at least one train example")
    model = ov.Core().read_model(str(source))
    names = {port.get_any_name() for port in model.inputs}
    dataset = nncf.Dataset(calibration, lambda feed: {k: v for k, v in feed.items() if k in names})
    quantized = nncf.quantize(
        model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=subset_size,
        preset=nncf.QuantizationPreset.MIXED,
    )  # fmt: skip
    ov.save_model(quantized, str(target), compress_to_fp16=False)


def compile_ir(path: Path, device: str = "CPU", threads: int | None = None, inference_precision: str | None = None):
    """A compiled OpenVINO model tuned for one synchronous request at a time (what a latency bench measures).

    Args:
        path: the .xml IR (or an .onnx file: OpenVINO reads both).
        device: OpenVINO device name (CPU, GPU).
        threads: INFERENCE_NUM_THREADS (None: the plugin's default, all cores).
        inference_precision: None keeps the plugin's default (bf16 on AMX CPUs, f32 elsewhere), or f32 / bf16 / f16.

    Raises:
        LadcError: openvino missing, or the file is not a model OpenVINO can read.
    """
    _require()
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    if inference_precision:
        config["INFERENCE_PRECISION_HINT"] = inference_precision
    try:
        return ov.Core().compile_model(str(path), device, config)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"{path} could not be loaded by OpenVINO: {first}") from None
