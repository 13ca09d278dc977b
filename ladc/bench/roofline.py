"""`ladc bench --roofline`: this machine's own GEMM throughput at the model's shapes, per precision, so each target is
reported as a fraction of what its precision can reach here (not of a datasheet peak).

fp32 and bf16 are PyTorch matmuls (oneDNN: AMX/AVX-512 BF16 where the CPU has them); int8 is onnxruntime's
MatMulInteger (u8 activations x s8 weights, what dynamic INT8 graphs run; VNNI/AMX where present). Shapes are a BERT
layer's: M = batch x seq tokens against K x N = H x H (Q, K, V, output), H x I and I x H (FFN).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["gemm_shapes", "measure_roofs", "roof_key"]


def gemm_shapes(config, batch_size: int, seq_len: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of one BERT layer's dense GEMMs at this batch and sequence length."""
    tokens, hidden, inter = batch_size * seq_len, config.hidden_size, config.intermediate_size
    return [(tokens, hidden, hidden)] * 4 + [(tokens, hidden, inter), (tokens, inter, hidden)]


def _best_seconds(call, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _torch_rate(shapes, dtype, threads: int, repeats: int) -> float:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        total_flops, total_s = 0.0, 0.0
        for m, k, n in dict.fromkeys(shapes):
            a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
            count = shapes.count((m, k, n))
            total_s += count * _best_seconds(lambda a=a, b=b: torch.matmul(a, b), repeats)
            total_flops += count * 2.0 * m * k * n
        return total_flops / total_s / 1e9
    finally:
        torch.set_num_threads(previous)


def _int8_session(k: int, n: int, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    weight = np.random.default_rng(0).integers(-127, 128, size=(k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["m", n])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _int8_rate(shapes, threads: int, repeats: int) -> float:
    total_ops, total_s = 0.0, 0.0
    for m, k, n in dict.fromkeys(shapes):
        session = _int8_session(k, n, threads)
        a = np.random.default_rng(1).integers(0, 256, size=(m, k), dtype=np.uint8)
        count = shapes.count((m, k, n))
        total_s += count * _best_seconds(lambda s=session, a=a: s.run(None, {"a": a}), repeats)
        total_ops += count * 2.0 * m * k * n
    return total_ops / total_s / 1e9


def measure_roofs(config, batch_size: int, seq_len: int, threads: int, repeats: int = 5) -> dict:
    """Best-of-`repeats` GEMM throughput (G(FL)OP/s) per precision at the model's shapes, with `threads` threads.

    Returns:
        {fp32, bf16, int8: G(FL)OP/s, shapes: [(M, K, N)], batch_size, seq_len, threads, method}.
    """
    import torch

    shapes = gemm_shapes(config, batch_size, seq_len)
    return {
        "fp32": round(_torch_rate(shapes, torch.float32, threads, repeats), 1),
        "bf16": round(_torch_rate(shapes, torch.bfloat16, threads, repeats), 1),
        "int8": round(_int8_rate(shapes, threads, repeats), 1),
        "shapes": [list(shape) for shape in dict.fromkeys(shapes)],
        "batch_size": batch_size, "seq_len": seq_len, "threads": threads,
        "method": f"best of {repeats} runs per shape, weighted by the shape's count per layer; fp32/bf16 "
                  "torch.matmul, int8 onnxruntime MatMulInteger (u8 x s8 -> s32)",
    }  # fmt: skip


def roof_key(precision: str, settings: dict) -> str | None:
    """Which roof a target's precision is measured against (None: no roof measured for it, e.g. fp16)."""
    if precision == "auto":
        precision = settings.get("inference_precision", "fp32")
    return {"fp32": "fp32", "int8": "int8", "bf16": "bf16", "bf16-autocast": "bf16"}.get(precision)
