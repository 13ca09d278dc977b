"""The deployable variants `ladc export` can build, as one table: export builds the rows, parity checks them against
each row's tolerance, bench and `--select fastest` time them, the compression report shows them. A new precision is
one row plus one builder function; a new engine is also one `ENGINES` entry here and one runner in ladc/deploy/runners.py.

Backends (`--backend`, comma-separated): onnxruntime (fp32, fused, int8, fused_int8, fp16), openvino (the plugin's
default precision, explicit f32, NNCF INT8) and torch (the HF model under bf16 autocast).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ladc.errors import LadcError
from ladc.runs.config import ExportConfig

__all__ = [
    "BACKENDS",
    "Engine",
    "ENGINES",
    "Tolerance",
    "TOLERANCES",
    "Artifact",
    "BuildContext",
    "ARTIFACTS",
    "artifact",
    "tolerance_of",
    "wanted_artifacts",
]

BACKENDS = ("onnxruntime", "openvino", "torch")


@dataclass(frozen=True)
class Engine:
    """What runs an artifact file.

    Attributes:
        label: its name in reports.
        target_kind: the `BenchTarget.kind` bench loads it as.
    """

    label: str
    target_kind: str


ENGINES: dict[str, Engine] = {
    "onnxruntime": Engine("ONNX Runtime", "onnx"),
    "openvino": Engine("OpenVINO", "openvino"),
    "torch": Engine("PyTorch", "torch"),
}


@dataclass(frozen=True)
class Tolerance:
    """Bounds an artifact must meet against PyTorch fp32 on dev data; None = not checked.

    Attributes:
        max_abs_diff: max |Δlogit| over the parity set.
        min_agreement_pct: % of examples with the same predicted label (classification).
        max_metric_drop_points: PyTorch's headline metric minus the artifact's, x100.
        min_score_correlation: Pearson r of the artifact's scores with PyTorch's (regression: STS-B has no labels to
            agree on, and its metric alone would pass an artifact whose scores are noise around the right mean).
    """

    max_abs_diff: float | None = None
    min_agreement_pct: float | None = None
    max_metric_drop_points: float | None = None
    min_score_correlation: float | None = None


# per precision an engine ran in (see ladc/deploy/parity.py for why these bounds); a row may carry its own instead
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_diff=1e-4),
    "fp16": Tolerance(min_agreement_pct=97.0, max_metric_drop_points=1.0, min_score_correlation=0.99),
    "bf16": Tolerance(min_agreement_pct=97.0, max_metric_drop_points=1.0, min_score_correlation=0.99),
    "int8": Tolerance(min_agreement_pct=97.0, max_metric_drop_points=1.0, min_score_correlation=0.99),
}


@dataclass
class BuildContext:
    """What a builder may read and write.

    Attributes:
        cfg: the export settings.
        build: the (temporary) export directory; model.onnx is already in it.
        model: the PyTorch source classifier (fp32, CPU).
        calibration: callable returning train-split feeds {name: (B, S) int64} for static quantization.
    """

    cfg: ExportConfig
    build: Path
    model: object
    calibration: Callable[[], list[dict]]


@dataclass(frozen=True)
class Artifact:
    """One deployable variant.

    Attributes:
        name: manifest name (`fp32`, `fused_int8`, `openvino_int8`, ...).
        engine: onnxruntime | openvino | torch: which runner opens it.
        file: path inside the export dir.
        precision: fp32 | fp16 | int8 | bf16 | auto (the engine picks; parity judges what it picked).
        backend: the `--backend` that builds it.
        build: writes `file` (and returns extra manifest fields), or None when another row's file is reused.
        wanted: whether this config asks for the row (beyond its backend being selected).
        optimized: graph fused.
        quantized: weights int8.
        runtime: engine options (e.g. OpenVINO's inference precision), recorded in export.json.
        cuda: runs on CUDA (fp16) rather than the CPU.
        tolerance: what parity demands; None = `TOLERANCES` of the precision the engine ran.
    """

    name: str
    engine: str
    file: str
    precision: str
    backend: str
    build: Callable[[BuildContext], dict] | None
    wanted: Callable[[ExportConfig], bool] = lambda cfg: True
    optimized: bool = False
    quantized: bool = False
    runtime: dict = field(default_factory=dict)
    cuda: bool = False
    tolerance: Tolerance | None = None


# ----------------------------------------------------------------------------- builders


def _patterns(cfg: ExportConfig) -> tuple[str, ...]:
    from ladc.deploy.onnx_graphs import HEAD_PATTERNS

    return tuple(cfg.exclude_nodes) + (HEAD_PATTERNS if cfg.keep_head_fp32 else ())


def _build_fused(ctx: BuildContext) -> dict:
    from ladc.deploy.onnx_graphs import fuse_graph

    fuse_graph(ctx.build / "model.onnx", ctx.build / "model_fused.onnx", ctx.model.config)
    return {}


def _quantizer(source: str, fused: bool) -> Callable[[BuildContext], dict]:
    def build(ctx: BuildContext) -> dict:
        from ladc.deploy.onnx_graphs import quantize_graph

        target = ctx.build / ("model_fused_int8.onnx" if fused else "model_int8.onnx")
        excluded = quantize_graph(
            ctx.build / source, target, fused=fused, per_channel=ctx.cfg.per_channel, exclude=_patterns(ctx.cfg)
        )
        return {
            "excluded_nodes": excluded,
            "quantization": {"mode": "dynamic", "weight_type": "int8", "per_channel": ctx.cfg.per_channel},
        }

    return build


def _build_fp16(ctx: BuildContext) -> dict:
    from ladc.deploy.onnx_graphs import convert_fp16

    convert_fp16(ctx.build / "model.onnx", ctx.build / "model_fp16.onnx", ctx.model.config)
    return {}


def _build_ir(ctx: BuildContext) -> dict:
    from ladc.deploy.openvino_ir import IR_FILE, convert_to_ir

    convert_to_ir(ctx.build / "model.onnx", ctx.build / IR_FILE)
    return {}


def _build_ir_int8(ctx: BuildContext) -> dict:
    from ladc.deploy.openvino_ir import IR_FILE, IR_INT8_FILE, quantize_ir

    calibration = ctx.calibration()
    samples = sum(len(feed["input_ids"]) for feed in calibration)
    quantize_ir(ctx.build / IR_FILE, ctx.build / IR_INT8_FILE, calibration, subset_size=len(calibration))
    return {"quantization": {"mode": "static", "tool": "nncf", "model_type": "TRANSFORMER", "preset": "MIXED",
                             "calibration_split": "train", "calibration_samples": samples}}  # fmt: skip


def _build_torch(ctx: BuildContext) -> dict:
    ctx.model.save_pretrained(ctx.build, safe_serialization=True)  # config.json is rewritten identically
    return {}


def _quantize(cfg: ExportConfig) -> bool:
    return cfg.quantize is not None


# ----------------------------------------------------------------------------- the table (build order)

ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("fp32", "onnxruntime", "model.onnx", "fp32", "onnxruntime", None),  # built first, by export itself
    Artifact("fused", "onnxruntime", "model_fused.onnx", "fp32", "onnxruntime", _build_fused,
             wanted=lambda cfg: cfg.optimize, optimized=True),
    Artifact("int8", "onnxruntime", "model_int8.onnx", "int8", "onnxruntime", _quantizer("model.onnx", False),
             wanted=_quantize, quantized=True),
    Artifact("fused_int8", "onnxruntime", "model_fused_int8.onnx", "int8", "onnxruntime",
             _quantizer("model_fused.onnx", True), wanted=lambda cfg: cfg.optimize and _quantize(cfg),
             optimized=True, quantized=True),
    Artifact("fp16", "onnxruntime", "model_fp16.onnx", "fp16", "onnxruntime", _build_fp16,
             wanted=lambda cfg: cfg.fp16, optimized=True, cuda=True),
    Artifact("openvino", "openvino", "openvino_model.xml", "auto", "openvino", _build_ir),
    Artifact("openvino_f32", "openvino", "openvino_model.xml", "fp32", "openvino", None,
             runtime={"inference_precision": "f32"}),
    Artifact("openvino_int8", "openvino", "openvino_model_int8.xml", "int8", "openvino", _build_ir_int8,
             quantized=True),
    Artifact("torch_bf16", "torch", "model.safetensors", "bf16", "torch", _build_torch),
)  # fmt: skip


def artifact(name: str) -> Artifact:
    """The table row called `name` (KeyError if none)."""
    return {row.name: row for row in ARTIFACTS}[name]  # module global read at call time: tests may extend the table


def tolerance_of(entry: dict) -> Tolerance:
    """The parity bounds of an export.json artifact entry: its row's own, else those of the precision it ran in
    (`inference_precision` when the engine chose, e.g. OpenVINO's default).

    Raises:
        LadcError: neither its row nor its precision has a tolerance.
    """
    row = {row.name: row for row in ARTIFACTS}.get(entry.get("name"))
    if row is not None and row.tolerance is not None:
        return row.tolerance
    precision = entry.get("inference_precision", entry["precision"])
    if precision not in TOLERANCES:
        raise LadcError(f"artifact {entry.get('name')!r} ran in {precision!r}, which has no parity tolerance; "
                        f"expected one of {', '.join(TOLERANCES)} or a table row with its own")  # fmt: skip
    return TOLERANCES[precision]


def wanted_artifacts(cfg: ExportConfig, table: tuple[Artifact, ...] | None = None) -> list[Artifact]:
    """Rows this config builds, in table order: fp32 always, the rest by backend and their own flags."""
    rows = ARTIFACTS if table is None else table
    return [row for row in rows if row.name == "fp32" or (row.backend in cfg.backends and row.wanted(cfg))]
