"""`ladc export --onnx`: optimum-onnx export, onnxruntime fusion, dynamic INT8 and fp16, each checked on dev data.

Artifacts (all in one directory that `ORTModelForSequenceClassification.from_pretrained(OUT)` loads; it picks
`model.onnx`, the others via `file_name=`):

- model.onnx             fp32, `optimum.exporters.onnx.main_export` (TorchScript exporter, SDPA attention, so
                         opset >= 14), dynamic batch/sequence axes.
- model_fused.onnx       --optimize: `onnxruntime.transformers.optimizer.optimize_model(model_type='bert')` with
                         num_heads/hidden_size from config.json -> Attention, SkipLayerNormalization, BiasGelu,
                         EmbedLayerNormalization. We count the fused ops in the graph and fail if attention did not fuse.
- model_int8.onnx        --quantize dynamic: `quantize_dynamic` of the UNFUSED graph (MatMul/Gemm -> MatMulInteger,
                         embedding Gathers -> int8 tables + DequantizeLinear).
- model_fused_int8.onnx  --optimize --quantize dynamic: fuse FIRST, then `quantize_dynamic` with op types
                         MatMul/Gemm/Attention/EmbedLayerNormalization and extra_options={'DefaultTensorType': FLOAT}
                         -> QAttention, QEmbedLayerNormalization and MatMulInteger around the fused
                         SkipLayerNormalization/BiasGelu.
- model_fp16.onnx        --fp16 (CUDA): fused with use_gpu=True, then float16 weights with fp32 inputs/outputs.

Why this order for fused + INT8 (measured with onnxruntime 1.32, optimum 2.1, optimum-onnx 0.1.0):
- Quantize, then fuse: the fusion patterns look for MatMul+Add sub-graphs; after quantization those are
  DynamicQuantizeLinear/MatMulInteger/Mul chains, so no Attention fuses (only SkipLayerNormalization/Gelu).
- Fuse, then quantize with defaults (what optimum's ORTQuantizer does on an O2 graph): the quantizer asks ONNX shape
  inference for the element type of every tensor it touches, and shape inference knows nothing about the
  com.microsoft outputs (SkipLayerNormalization...), so it raises `Unable to find data type for weight_name=...`.
- Fuse, then quantize with DefaultTensorType=FLOAT: the quantizer assumes float for those tensors, which is true
  of every activation in an fp32 BERT graph (only the int64 graph inputs are not float, and their types are known).
  The result keeps every fusion and quantizes QKV (QAttention) and all dense layers (MatMulInteger).

Every artifact is then compared with PyTorch on real dev data (ladc/parity.py); a miss raises LadcError after the
directory and its export.json (which records the failure) are in place.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from ladc.config import DataConfig, ExportConfig, to_dict
from ladc.errors import LadcError

__all__ = [
    "MANIFEST",
    "MIN_OPSET",
    "MAX_OPSET",
    "FUSED_OPS",
    "HEAD_PATTERNS",
    "export_onnx",
    "verify_export",
    "op_counts",
    "fuse_graph",
    "quantize_graph",
    "convert_fp16",
]

MANIFEST = "export.json"
MIN_OPSET = 14  # torch exports scaled_dot_product_attention (BERT's default SDPA attention) from opset 14 on
MAX_OPSET = 20  # the TorchScript exporter optimum-onnx uses stops at 20
# contrib ops produced by onnxruntime's fusion and quantization: what "optimized"/"quantized" means in a graph
FUSED_OPS = (
    "Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu", "FastGelu",
    "Gelu", "QAttention", "QEmbedLayerNormalization", "MatMulInteger", "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul", "DequantizeLinear",
)  # fmt: skip
# the embedding tables are ~half of a small BERT's weights: int8 embeddings (Gather / QEmbedLayerNormalization) cut
# MiniLM's INT8 file from 56 to 22 MiB and sped it up, at the same label agreement on SST-2 dev (measured)
INT8_OPS_UNFUSED = ("MatMul", "Gemm", "Gather")
INT8_OPS_FUSED = ("MatMul", "Gemm", "Attention", "EmbedLayerNormalization")
HEAD_PATTERNS = ("*classifier*", "*pooler*")  # --keep-head-fp32: BERT's pooler + classifier (RoBERTa: classifier.*)
# (file, precision, optimized, quantized) per artifact name
ARTIFACTS = {
    "fp32": ("model.onnx", "fp32", False, False),
    "fused": ("model_fused.onnx", "fp32", True, False),
    "int8": ("model_int8.onnx", "int8", False, True),
    "fused_int8": ("model_fused_int8.onnx", "int8", True, True),
    "fp16": ("model_fp16.onnx", "fp16", True, False),
}


# ----------------------------------------------------------------------------- graph operations


def op_counts(path: str | Path) -> dict[str, int]:
    """Count of every op type in the graph (weights are not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def fuse_graph(source: Path, target: Path, model_config, use_gpu: bool = False) -> dict[str, int]:
    """onnxruntime transformer fusions of `source` into `target`; returns the fused-op counts it reports."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(source),
        model_type="bert",  # onnxruntime's BERT fusions cover the family (RoBERTa, ELECTRA share the graph)
        num_heads=model_config.num_attention_heads,
        hidden_size=model_config.hidden_size,
        use_gpu=use_gpu,
    )
    optimized.save_model_to_file(str(target))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def convert_fp16(source: Path, target: Path, model_config) -> None:
    """Fuse for GPU, then cast weights to float16 keeping fp32 inputs/outputs (logits stay float32)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(source),
        model_type="bert",
        num_heads=model_config.num_attention_heads,
        hidden_size=model_config.hidden_size,
        use_gpu=True,
        opt_level=0,  # python fusions only: ORT's level-1 pass would need a CUDA session here
    )
    optimized.convert_float_to_float16(keep_io_types=True)
    optimized.save_model_to_file(str(target))


def _match_nodes(path: Path, patterns: tuple[str, ...]) -> list[str]:
    """Names of the nodes matching any glob; a Gemm also gives `<name>_MatMul`, the node quantize_dynamic turns it
    into (it rewrites Gemm as MatMul + Add before it reads nodes_to_exclude)."""
    import onnx

    matched = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if any(fnmatch.fnmatchcase(node.name, pattern) for pattern in patterns):
            matched += [node.name, f"{node.name}_MatMul"] if node.op_type == "Gemm" else [node.name]
    return matched


def quantize_graph(
    source: Path, target: Path, *, fused: bool, per_channel: bool, exclude: tuple[str, ...]
) -> list[str]:
    """Dynamic INT8 (weights int8, activations quantized per batch) of an unfused or fused fp32 graph.

    Args:
        source: fp32 .onnx (model.onnx or model_fused.onnx).
        target: where to write the quantized graph.
        fused: `source` went through `fuse_graph` (quantize its Attention/EmbedLayerNormalization ops too).
        per_channel: one scale per output channel of each weight instead of one per tensor.
        exclude: node-name globs (fnmatch) kept in fp32.

    Returns:
        The node names excluded from quantization.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = _match_nodes(source, exclude) if exclude else []
    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=list(INT8_OPS_FUSED if fused else INT8_OPS_UNFUSED),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        # the fused graph's com.microsoft outputs have no inferred type; all of them are float (see module doc)
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return excluded


def _check_attention_fused(path: Path, counts: dict[str, int], num_layers: int) -> None:
    attention = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0) + counts.get("QAttention", 0)
    if attention != num_layers:
        import onnxruntime

        raise LadcError(
            f"{path.name}: attention fusion failed ({attention} attention ops for {num_layers} layers, "
            f"onnxruntime {onnxruntime.__version__}); fused ops: {counts}. Upgrade onnxruntime or drop --optimize"
        )


# ----------------------------------------------------------------------------- config checks


def _check_config(cfg: ExportConfig) -> None:
    if not MIN_OPSET <= cfg.opset <= MAX_OPSET:
        raise LadcError(
            f"--opset {cfg.opset} is not supported: BERT's SDPA attention exports from opset {MIN_OPSET} and "
            f"torch's TorchScript exporter stops at {MAX_OPSET}; use {MIN_OPSET}..{MAX_OPSET} (default 17)"
        )
    if cfg.device not in ("cpu", "cuda"):
        raise LadcError(f"--device '{cfg.device}' is not supported; expected cpu or cuda")
    if cfg.quantize not in (None, "dynamic"):
        raise LadcError(f"--quantize '{cfg.quantize}' is not supported; expected 'dynamic' (static needs calibration)")
    if (cfg.exclude_nodes or cfg.keep_head_fp32) and cfg.quantize is None:
        raise LadcError("--exclude-nodes/--keep-head-fp32 need --quantize dynamic")
    if cfg.parity_samples is not None and cfg.parity_samples <= 0:
        raise LadcError(f"--parity-samples must be positive, got {cfg.parity_samples}")
    if cfg.allow_drop is not None and cfg.allow_drop < 0:
        raise LadcError(f"--allow-drop must be >= 0 metric points, got {cfg.allow_drop}")
    if cfg.device == "cuda" or cfg.fp16:
        _check_cuda("--fp16" if cfg.fp16 else "--device cuda")
    output = Path(cfg.output)
    if output.exists() and not cfg.overwrite:
        raise LadcError(f"output {output} already exists; pass --overwrite to replace it")
    if output.exists() and not output.is_dir():
        raise LadcError(f"output {output} exists and is not a directory")


def _check_cuda(flag: str) -> None:
    import onnxruntime
    import torch

    if not torch.cuda.is_available() or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise LadcError(
            f"{flag} needs a CUDA GPU with torch CUDA and onnxruntime-gpu (providers here: "
            f"{onnxruntime.get_available_providers()}); on CPU use --quantize dynamic instead"
        )


def _data_config(cfg: ExportConfig) -> DataConfig:
    """Task and data dir: explicit flags win, else the model dir's ladc.json (tune-teacher and distill write it)."""
    import dataclasses

    from ladc.evaluate import data_config_from_run

    manifest = Path(cfg.model) / "ladc.json"
    task = cfg.task
    if task is None and manifest.is_file():
        try:
            task = json.loads(manifest.read_text()).get("task")
        except json.JSONDecodeError as exc:
            raise LadcError(f"{manifest}: invalid JSON at line {exc.lineno} ({exc.msg})") from None
    data = data_config_from_run(cfg.model, task, cfg.data_dir)
    return dataclasses.replace(data, dev_limit=cfg.parity_samples, cache_dir=cfg.cache_dir or data.cache_dir)


# ----------------------------------------------------------------------------- export


@contextmanager
def _quiet_optimum():
    """optimum warns that opset 17 is below its recommended 18 and logs its own (random-input) validation;
    our parity on dev data replaces both, so keep the console for what matters."""
    loggers = [logging.getLogger(name) for name in ("optimum", "optimum.exporters.onnx", "optimum.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_fp32(cfg: ExportConfig, build: Path) -> None:
    from optimum.exporters.onnx import main_export

    with _quiet_optimum():
        main_export(
            cfg.model,
            build,
            task="text-classification",
            opset=cfg.opset,
            device=cfg.device,
            atol=1e-4,  # optimum-onnx 0.1.0 defaults BERT to 1e-5; ours is the DESIGN bound (and parity reruns it)
            library_name="transformers",
        )


def _build_artifacts(cfg: ExportConfig, build: Path, model_config) -> list[dict]:
    """Write every requested artifact into `build`; returns their manifest entries (without parity)."""
    fp32 = build / ARTIFACTS["fp32"][0]
    _export_fp32(cfg, build)
    entries = [{"name": "fp32"}]
    patterns = tuple(cfg.exclude_nodes) + (HEAD_PATTERNS if cfg.keep_head_fp32 else ())
    excluded_all: list[str] = []
    if cfg.optimize:
        fuse_graph(fp32, build / ARTIFACTS["fused"][0], model_config)
        entries.append({"name": "fused"})
    if cfg.quantize:
        excluded = quantize_graph(
            fp32, build / ARTIFACTS["int8"][0], fused=False, per_channel=cfg.per_channel, exclude=patterns
        )
        entries.append({"name": "int8", "excluded_nodes": excluded})
        excluded_all += excluded
    if cfg.quantize and cfg.optimize:
        fused = build / ARTIFACTS["fused"][0]
        excluded = quantize_graph(
            fused, build / ARTIFACTS["fused_int8"][0], fused=True, per_channel=cfg.per_channel, exclude=patterns
        )
        entries.append({"name": "fused_int8", "excluded_nodes": excluded})
        excluded_all += excluded
    if patterns and not excluded_all:
        raise LadcError(f"--exclude-nodes/--keep-head-fp32 patterns {list(patterns)} match no node of the graphs")
    if cfg.fp16:
        convert_fp16(fp32, build / ARTIFACTS["fp16"][0], model_config)
        entries.append({"name": "fp16"})
    for entry in entries:
        entry.update(_describe(build, entry["name"], model_config, cfg))
        if entry["optimized"]:
            _check_attention_fused(build / entry["path"], entry["fused_op_counts"], model_config.num_hidden_layers)
    return entries


def _describe(root: Path, name: str, model_config, cfg: ExportConfig) -> dict:
    file_name, precision, optimized, quantized = ARTIFACTS[name]
    counts = op_counts(root / file_name)
    entry = {
        "path": file_name,
        "size_mb": round((root / file_name).stat().st_size / 2**20, 3),  # MiB
        "precision": precision,
        "optimized": optimized,
        "quantized": quantized,
        # dynamic INT8 kernels exist on CPU only (on CUDA they fall back): run int8 on CPU, fp16 on CUDA
        "provider": "CPUExecutionProvider" if quantized or cfg.device == "cpu" else "CUDAExecutionProvider",
        "op_counts": counts,
        "fused_op_counts": {op: counts[op] for op in FUSED_OPS if op in counts},
    }
    if quantized:
        entry["quantization"] = {"mode": "dynamic", "weight_type": "int8", "per_channel": cfg.per_channel}
    return entry


# ----------------------------------------------------------------------------- entry points


def _parity_inputs(data: DataConfig, model_dir: str, batch_size: int):
    from ladc.models import load_classifier, load_tokenizer
    from ladc.parity import load_parity_set
    from ladc.tasks import get_task

    task = get_task(data.task)
    model = load_classifier(model_dir, task)  # LadcError: not a sequence classifier, label count mismatch
    tokenizer = load_tokenizer(model_dir)
    return task, model, load_parity_set(data, tokenizer, task, batch_size)


def export_onnx(cfg: ExportConfig, console=None) -> dict:
    """Export `cfg.model` to ONNX artifacts in `cfg.output` and check each against PyTorch on dev data.

    Args:
        cfg: the export settings (see ExportConfig).
        console: a rich Console for the parity table (default: stdout).

    Returns:
        The manifest written to OUT/export.json.

    Raises:
        LadcError: bad input (missing model dir, not a classifier, opset, --fp16 without CUDA, existing output),
            attention not fused under --optimize, or an artifact outside its parity tolerance (after OUT is written).
    """
    from ladc.io import atomic_dir, atomic_write_json
    from ladc.parity import print_parity_table, raise_on_failure, run_parity
    from ladc.teacher import versions

    if not Path(cfg.model).is_dir():
        raise LadcError(f"model dir {cfg.model} does not exist (expected a fine-tuned HF sequence-classifier dir)")
    _check_config(cfg)
    data = _data_config(cfg)
    task, model, parity_set = _parity_inputs(data, cfg.model, cfg.parity_batch_size)
    output = Path(cfg.output)
    started = time.perf_counter()
    with atomic_dir(output) as build:
        manifest = {
            "kind": "onnx-export",
            "source_model": str(Path(cfg.model).resolve()),
            "task": task.name,
            "opset": cfg.opset,
            "device": cfg.device,
            "config": to_dict(cfg),
            "versions": versions(),
            "parity_set": {
                "data_dir": data.data_dir,
                "max_seq_len": data.max_seq_len,
                "batch_size": cfg.parity_batch_size,
            },
            "artifacts": _build_artifacts(cfg, build, model.config),
        }
        manifest["export_s"] = round(time.perf_counter() - started, 2)
        run_parity(manifest, build, model, parity_set, task, cfg.allow_drop)
        manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(build / MANIFEST, manifest)
    print_parity_table(manifest, console)
    raise_on_failure(manifest, output)
    return manifest


def verify_export(
    out_dir: str | Path,
    *,
    allow_drop: float | None = None,
    parity_samples: int | None = None,
    data_dir: str | None = None,
    console=None,
) -> dict:
    """Re-run the parity check of an existing export dir (e.g. after editing or copying its graphs).

    The source model, task and parity settings come from OUT/export.json; the manifest is rewritten with the new
    figures. Raises LadcError like `export_onnx` when an artifact is outside its tolerance.
    """
    import dataclasses

    from ladc.config import from_dict
    from ladc.io import atomic_write_json, read_json
    from ladc.parity import print_parity_table, raise_on_failure, run_parity

    out_dir = Path(out_dir)
    manifest = read_json(out_dir / MANIFEST)
    cfg = from_dict(ExportConfig, manifest["config"], "export.json:config")
    cfg = dataclasses.replace(
        cfg,
        model=manifest["source_model"],
        task=manifest["task"],
        allow_drop=allow_drop,
        parity_samples=parity_samples if parity_samples is not None else cfg.parity_samples,
        data_dir=data_dir if data_dir is not None else cfg.data_dir,
    )
    data = _data_config(cfg)
    task, model, parity_set = _parity_inputs(data, cfg.model, cfg.parity_batch_size)
    run_parity(manifest, out_dir, model, parity_set, task, allow_drop)
    manifest["verified"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(out_dir / MANIFEST, manifest)
    print_parity_table(manifest, console)
    raise_on_failure(manifest, out_dir)
    return manifest
