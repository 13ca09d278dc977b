"""The onnxruntime engine: the ONNX graphs (fp32, fused, dynamic INT8, fp16) ladc builds and onnxruntime runs, on the
CPU or with CUDA/TensorRT. Its sessions, runner and graph checks live in ladc/engines/onnxruntime_session.py, the graph
operations in ladc/engines/onnx_graphs.py (which says why fused + INT8 fuses first). Its files in an export dir:

- model.onnx             fp32, `optimum.exporters.onnx.main_export` (TorchScript exporter, SDPA attention, so
                         opset >= 14), dynamic batch/sequence axes.
- model_fused.onnx       --optimize: `onnxruntime.transformers.optimizer.optimize_model(model_type='bert')` with
                         num_heads/hidden_size from config.json -> Attention, SkipLayerNormalization, BiasGelu,
                         EmbedLayerNormalization. We count the fused ops in the graph and fail if attention did not
                         fuse.
- model_int8.onnx        --quantize dynamic: `quantize_dynamic` of the UNFUSED graph (MatMul/Gemm -> MatMulInteger,
                         embedding Gathers -> int8 tables + DequantizeLinear).
- model_fused_int8.onnx  --optimize --quantize dynamic: fuse FIRST, then `quantize_dynamic` with op types
                         MatMul/Gemm/Attention/EmbedLayerNormalization and extra_options={'DefaultTensorType': FLOAT}
                         -> QAttention, QEmbedLayerNormalization and MatMulInteger around the fused
                         SkipLayerNormalization/BiasGelu.
- model_fp16.onnx        --fp16 (CUDA): fused with use_gpu=True, then float16 weights with fp32 inputs/outputs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ladc.engines.base import Artifact, BenchTarget, BuildContext, Engine, LoadOptions, file_model_config, has_weights
from ladc.engines.onnxruntime_session import (
    ORT_GRAPH_LEVELS,
    OrtRunner,
    Provider,
    check_onnx_io,
    describe_onnx,
    open_session,
    profile_onnxruntime,
)
from ladc.errors import LadcError
from ladc.runs.config import ExportConfig

__all__ = ["NAME", "ENGINE"]

NAME = "onnxruntime"


# ----------------------------------------------------------------------------- builders


def _patterns(cfg: ExportConfig) -> tuple[str, ...]:
    from ladc.engines.onnx_graphs import HEAD_PATTERNS

    return tuple(cfg.exclude_nodes) + (HEAD_PATTERNS if cfg.keep_head_fp32 else ())


def _build_fused(ctx: BuildContext) -> dict:
    from ladc.engines.onnx_graphs import fuse_graph

    fuse_graph(ctx.build / "model.onnx", ctx.build / "model_fused.onnx", ctx.model.config)
    return {}


def _quantizer(source: str, fused: bool) -> Callable[[BuildContext], dict]:
    def build(ctx: BuildContext) -> dict:
        from ladc.engines.onnx_graphs import quantize_graph

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
    from ladc.engines.onnx_graphs import convert_fp16

    convert_fp16(ctx.build / "model.onnx", ctx.build / "model_fp16.onnx", ctx.model.config)
    return {}


def _quantize(cfg: ExportConfig) -> bool:
    return cfg.quantize is not None


# build order; fp32 is written first, by export itself (optimum's exporter), and every other engine converts from it
ROWS = (
    Artifact("fp32", NAME, "model.onnx", "fp32", None, required=True),
    Artifact("fused", NAME, "model_fused.onnx", "fp32", _build_fused, wanted=lambda cfg: cfg.optimize, optimized=True),
    Artifact("int8", NAME, "model_int8.onnx", "int8", _quantizer("model.onnx", False), wanted=_quantize,
             quantized=True),
    Artifact("fused_int8", NAME, "model_fused_int8.onnx", "int8", _quantizer("model_fused.onnx", True),
             wanted=lambda cfg: cfg.optimize and _quantize(cfg), optimized=True, quantized=True),
    Artifact("fp16", NAME, "model_fp16.onnx", "fp16", _build_fp16, wanted=lambda cfg: cfg.fp16, optimized=True,
             cuda=True),
)  # fmt: skip


# ----------------------------------------------------------------------------- export


def _check_export(cfg: ExportConfig) -> None:
    if cfg.device == "cuda" or cfg.fp16:
        flag = "--fp16" if cfg.fp16 else "--device cuda"
        import onnxruntime
        import torch

        if not torch.cuda.is_available() or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise LadcError(
                f"{flag} needs a CUDA GPU with torch CUDA and onnxruntime-gpu (providers here: "
                f"{onnxruntime.get_available_providers()}); on CPU use --quantize dynamic instead"
            )


def _inspect(cfg: ExportConfig, build: Path, built: list[tuple[Artifact, dict]], model) -> None:
    """Op counts of each graph in its entry; fusion must have fused attention, and exclusion patterns match a node."""
    from ladc.engines.onnx_graphs import FUSED_OPS, check_attention_fused, op_counts

    patterns = _patterns(cfg)
    if patterns and not any(entry.get("excluded_nodes") for _, entry in built):
        raise LadcError(f"--exclude-nodes/--keep-head-fp32 patterns {list(patterns)} match no node of the graphs")
    for row, entry in built:
        counts = op_counts(build / row.file)
        entry["op_counts"] = counts
        entry["fused_op_counts"] = {op: counts[op] for op in FUSED_OPS if op in counts}
        if row.optimized:
            check_attention_fused(build / row.file, entry["fused_op_counts"], model.config.num_hidden_layers)


# ----------------------------------------------------------------------------- opening


def _missing(build: bool = False) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime not installed; pip install onnxruntime"
    return None


def _open_artifact(path: Path, entry: dict, threads, spinning, expected_inputs) -> OrtRunner:
    return OrtRunner(open_session(path, Provider.of_entry(entry), threads, "all", spinning, expected_inputs))


def _load(target: BenchTarget, task, tokenizer, options: LoadOptions):
    import onnxruntime as ort

    config = file_model_config(target, task, tokenizer)
    provider = Provider(options.provider, options.tensorrt, target.precision == "fp16")
    session = open_session(target.path, provider, options.threads, options.graph_level, options.spinning)
    check_onnx_io(session, tokenizer, target, task)
    settings = {
        "engine": f"onnxruntime {ort.__version__}",
        "providers": session.get_providers(),
        "graph_optimization_level": ORT_GRAPH_LEVELS[options.graph_level],
        "execution_mode": "ORT_SEQUENTIAL",
        "intra_op_threads": options.threads,
        "inter_op_threads": 1,
        "intra_op_spinning": options.spinning,
        "io_binding": options.provider == "cuda",
    }
    return OrtRunner(session, io_binding=options.provider == "cuda"), config, settings


def _cuda_problems(tensorrt: bool) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    needed = ["CUDAExecutionProvider"] + (["TensorrtExecutionProvider"] if tensorrt else [])
    missing = [name for name in needed if name not in available]
    return [f"onnxruntime has no {name} (available: {', '.join(available)})" for name in missing]


# ----------------------------------------------------------------------------- targets


def _export_target(export_dir: Path, entry: dict, path: Path, name: str) -> BenchTarget:
    described, optimized, size_mb = describe_onnx(path)
    return BenchTarget(name, NAME, str(path), str(export_dir), str(entry.get("precision", described)), size_mb,
                       bool(entry.get("optimized", optimized)))  # fmt: skip


def _file_target(path: Path, arg: str) -> BenchTarget:
    precision, optimized, size_mb = describe_onnx(path)
    return BenchTarget(f"{path.parent.name}/{path.stem}", NAME, arg, str(path.parent), precision, size_mb, optimized)


def _dir_targets(path: Path, arg: str, torch_bf16: bool) -> list[BenchTarget]:
    """Every graph of an optimum/ORTModel dir without a ladc manifest (a dir with PyTorch weights is an HF model dir,
    which the engine that runs those takes as it is)."""
    onnx_files = sorted(path.glob("*.onnx"))
    if not onnx_files or not (path / "config.json").is_file() or has_weights(path):
        return []
    return [_file_target(file, str(file)) for file in onnx_files]


# ----------------------------------------------------------------------------- bench


def _profile(target: BenchTarget, runner, feed: dict, threads: int, graph_level: str, runs: int):
    return profile_onnxruntime(target.path, feed, threads, graph_level, runs)


def _check_bench(cfg) -> None:
    if cfg.ort_graph_optimization not in ORT_GRAPH_LEVELS:
        raise LadcError(
            f"ort_graph_optimization '{cfg.ort_graph_optimization}' is not one of: {', '.join(ORT_GRAPH_LEVELS)}"
        )


def _bench_runtime(cfg, threads: int) -> dict:
    return {
        "ort_graph_optimization_level": ORT_GRAPH_LEVELS[cfg.ort_graph_optimization],
        "ort_execution_mode": "ORT_SEQUENTIAL",
        "ort_intra_op_threads": threads,
        "ort_inter_op_threads": 1,
    }


def _runtime_text(runtime: dict) -> str:
    return (f"onnxruntime {runtime['ort_graph_optimization_level']}, {runtime['ort_execution_mode']}, intra-op "
            f"{runtime['ort_intra_op_threads']}, inter-op {runtime['ort_inter_op_threads']}")  # fmt: skip


ENGINE = Engine(
    name=NAME,
    label="ONNX Runtime",
    bench_kind="onnx",
    artifacts=ROWS,
    missing=_missing,
    open_artifact=_open_artifact,
    load=_load,
    export_target=_export_target,
    suffixes=(".onnx",),
    file_target=_file_target,
    dir_targets=_dir_targets,
    cuda_problems=_cuda_problems,
    export_on_cuda=True,
    check_export=_check_export,
    inspect=_inspect,
    profile=_profile,
    check_bench=_check_bench,
    bench_runtime=_bench_runtime,
    runtime_text=_runtime_text,
    # select_fastest opens sessions at graph level "all": timings at another level are not the same measurement
    reuses_selection=lambda cfg: cfg.ort_graph_optimization == "all",
    packages=("onnxruntime", "onnxruntime-gpu"),
    card_tag="onnx",
)
