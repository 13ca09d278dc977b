"""onnxruntime graph operations on exported BERT graphs: op counts, transformer fusion, dynamic INT8, fp16.

Why this order for fused + INT8 (measured with onnxruntime 1.32, optimum 2.1, optimum-onnx 0.1.0):
- Quantize, then fuse: the fusion patterns look for MatMul+Add sub-graphs; after quantization those are
  DynamicQuantizeLinear/MatMulInteger/Mul chains, so no Attention fuses (only SkipLayerNormalization/Gelu).
- Fuse, then quantize with defaults (what optimum's ORTQuantizer does on an O2 graph): the quantizer asks ONNX shape
  inference for the element type of every tensor it touches, and shape inference knows nothing about the
  com.microsoft outputs (SkipLayerNormalization...), so it raises `Unable to find data type for weight_name=...`.
- Fuse, then quantize with DefaultTensorType=FLOAT: the quantizer assumes float for those tensors, which is true
  of every activation in an fp32 BERT graph (only the int64 graph inputs are not float, and their types are known).
  The result keeps every fusion and quantizes QKV (QAttention) and all dense layers (MatMulInteger).
"""

from __future__ import annotations

import fnmatch
import logging
from collections import Counter
from pathlib import Path

from ladc.errors import LadcError

__all__ = [
    "FUSION_OPS",
    "INT8_OPS",
    "FUSED_OPS",
    "INT8_OPS_UNFUSED",
    "INT8_OPS_FUSED",
    "op_counts",
    "fuse_graph",
    "convert_fp16",
    "quantize_graph",
    "check_attention_fused",
]

# ops only onnxruntime's transformer fusion makes: a graph holding any of them is "optimized"
FUSION_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu",
              "FastGelu")  # fmt: skip
# ops only dynamic or static INT8 quantization makes: a graph holding any of them is int8
INT8_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "DynamicQuantizeMatMul", "QAttention")
# every contrib op fusion and quantization produce: export.json counts these per graph (`fused_op_counts`)
FUSED_OPS = (
    *FUSION_OPS, "Gelu", "QAttention", "QEmbedLayerNormalization", "MatMulInteger", "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul", "DequantizeLinear",
)  # fmt: skip
# the embedding tables are ~half of a small BERT's weights: int8 embeddings (Gather / QEmbedLayerNormalization) cut
# MiniLM's INT8 file from 56 to 22 MiB and sped it up, at the same label agreement on SST-2 dev (measured)
INT8_OPS_UNFUSED = ("MatMul", "Gemm", "Gather")
INT8_OPS_FUSED = ("MatMul", "Gemm", "Attention", "EmbedLayerNormalization")
HEAD_PATTERNS = ("*classifier*", "*pooler*")  # --keep-head-fp32: BERT's pooler + classifier (RoBERTa: classifier.*)


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
    root = logging.getLogger()
    level = root.level
    # quantize_dynamic logs "Please consider to run pre-processing" on the root logger for every graph it gets; ladc
    # quantizes the graphs as exported (parity then checks the result), so the line is noise in every export log
    root.setLevel(logging.ERROR)
    try:
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
    finally:
        root.setLevel(level)
    return excluded


def check_attention_fused(path: Path, counts: dict[str, int], num_layers: int) -> None:
    attention = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0) + counts.get("QAttention", 0)
    if attention != num_layers:
        import onnxruntime

        raise LadcError(
            f"{path.name}: attention fusion failed ({attention} attention ops for {num_layers} layers, "
            f"onnxruntime {onnxruntime.__version__}); fused ops: {counts}. Upgrade onnxruntime or drop --optimize"
        )
