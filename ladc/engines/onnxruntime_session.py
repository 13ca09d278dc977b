"""onnxruntime sessions, as the onnxruntime engine (ladc/engines/onnxruntime_engine.py) opens, checks and profiles
them: the provider type, the one session opener, the runner, and what a graph says about itself."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ladc.engines.base import MODEL_INPUTS, BenchTarget, size_mb
from ladc.engines.onnx_graphs import FUSION_OPS, INT8_OPS
from ladc.errors import LadcError

__all__ = [
    "ORT_GRAPH_LEVELS",
    "ORT_INT_TYPES",
    "Provider",
    "OrtRunner",
    "open_session",
    "check_onnx_io",
    "describe_onnx",
    "profile_onnxruntime",
]

ORT_GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                    "all": "ORT_ENABLE_ALL"}  # fmt: skip
ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclass(frozen=True)
class Provider:
    """Where onnxruntime runs a graph, as export, parity and bench all name it.

    Attributes:
        device: cpu | cuda.
        tensorrt: put TensorRT before CUDA (cuda only).
        fp16: let TensorRT build fp16 kernels.
    """

    device: str = "cpu"
    tensorrt: bool = False
    fp16: bool = False

    @classmethod
    def of_entry(cls, entry: dict) -> Provider:
        """The provider an export.json artifact entry records (`provider`: CPUExecutionProvider | CUDA...)."""
        return cls("cuda" if entry.get("provider") == "CUDAExecutionProvider" else "cpu")

    def ort_providers(self) -> list:
        """The `providers` argument of `onnxruntime.InferenceSession`, preferred first."""
        if self.device == "cpu":
            return ["CPUExecutionProvider"]
        cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return [("TensorrtExecutionProvider", {"trt_fp16_enable": self.fp16}), *cuda] if self.tensorrt else cuda


class OrtRunner:
    """An onnxruntime session as a runner; with `io_binding` inputs and outputs stay on the CUDA device."""

    def __init__(self, session, io_binding: bool = False):
        self.session = session
        self.io_binding = io_binding
        self.input_types = {i.name: ORT_INT_TYPES[i.type] for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]

    def prepare(self, batch: dict):
        feed = {
            name: np.ascontiguousarray(np.asarray(batch[name]), dtype=dtype) for name, dtype in self.input_types.items()
        }
        if not self.io_binding:
            return feed
        import onnxruntime as ort

        binding = self.session.io_binding()
        values = {name: ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0) for name, array in feed.items()}
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.output_name, "cuda")
        return binding, values  # the device OrtValues must outlive the binding

    def run(self, prepared):
        if not self.io_binding:
            return self.session.run([self.output_name], prepared)[0]
        binding = prepared[0]
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding

    def to_numpy(self, output) -> np.ndarray:
        array = output.copy_outputs_to_cpu()[0] if self.io_binding else output
        return np.asarray(array, dtype=np.float32)  # fp16 graphs may emit fp16 logits

    def __call__(self, batch: dict) -> np.ndarray:
        return self.to_numpy(self.run(self.prepare(batch)))


def open_session(
    path: str | Path,
    provider: Provider = Provider(),
    threads: int | None = None,
    graph_level: str = "all",
    spinning: bool = True,
    expected_inputs: list[str] | None = None,
    profile_prefix: str | None = None,
):
    """An InferenceSession with explicit threading and optimisation settings, and one-line load errors.

    `intra_op_num_threads=threads` (None: onnxruntime's default, one per physical core), one inter-op thread,
    sequential execution: BERT has no parallel branches worth a second pool, and a fixed pool keeps runs comparable.
    `spinning=False` stops the pool's threads from spinning after a run (slower alone, but they then steal no cores
    from other sessions timed in between). `expected_inputs`: the input names the caller will feed; the graph must
    need no other. `profile_prefix`: record onnxruntime's profile there (`session.end_profiling()` names the file).

    Raises:
        LadcError: missing, corrupted or unreadable file, a requested GPU provider that onnxruntime silently dropped,
            or graph inputs the caller cannot feed.
    """
    import onnxruntime as ort

    if not Path(path).is_file():
        raise LadcError(f"{path} does not exist")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_GRAPH_LEVELS[graph_level])
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    providers = provider.ort_providers()
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT's InvalidProtobuf / Fail / InvalidGraph derive from Exception directly
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"{path} is not a valid ONNX model: {first}") from None
    wanted = [p if isinstance(p, str) else p[0] for p in providers]
    if wanted[0] not in session.get_providers():
        raise LadcError(
            f"{path}: onnxruntime fell back from {wanted[0]} to {session.get_providers()} (CUDA/cuDNN/TensorRT "
            "libraries missing?); install onnxruntime-gpu matching your CUDA or run on the CPU"
        )
    _check_feeds(session, path, expected_inputs)
    return session


def _check_feeds(session, path, expected_inputs: list[str] | None) -> None:
    if expected_inputs is None:
        return
    needed = [i.name for i in session.get_inputs()]
    missing = [name for name in needed if name not in expected_inputs]
    if missing:
        raise LadcError(
            f"{path} expects inputs {needed} but the tokenizer gives {list(expected_inputs)} "
            f"(missing: {missing}); was it exported from another model?"
        )


def check_onnx_io(session, tokenizer, target: BenchTarget, task) -> None:
    """Raise LadcError unless the graph takes (B, S) integer token inputs the tokenizer makes and emits C logits."""
    provided = [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    fits = "input_ids" in names and all(
        i.name in provided and i.type in ORT_INT_TYPES and len(i.shape) == 2 for i in inputs
    )
    if not fits:
        described = ", ".join(f"{i.name}: {i.type} {i.shape}" for i in inputs)
        raise LadcError(
            f"ONNX target {target.path} expects inputs [{described}] but its tokenizer gives {provided} as "
            "(batch, seq) integer tensors; expected a sequence classifier exported with `ladc export`"
        )
    width = session.get_outputs()[0].shape[-1]
    if isinstance(width, int) and width != task.num_labels:
        raise LadcError(f"ONNX target {target.path} outputs {width} labels but task {task.name} has {task.num_labels}")


def describe_onnx(path: Path) -> tuple[str, bool, float]:
    """(precision, optimized, size_mb) of an .onnx file, read from its graph (external data not loaded)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors share no base class but Exception
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"{path} is not a valid ONNX model: {first}") from None
    ops = {node.op_type for node in proto.graph.node}  # fused/int8 ops describe a bare .onnx file with no manifest
    initializers = proto.graph.initializer
    external = {e.value for init in initializers for e in init.external_data if e.key == "location"}
    fp16_count = sum(init.data_type == onnx.TensorProto.FLOAT16 for init in initializers)
    precision = "int8" if ops & set(INT8_OPS) else "fp16" if fp16_count > len(initializers) // 2 else "fp32"
    return precision, bool(ops & set(FUSION_OPS)), size_mb([path, *(path.parent / name for name in external)])


def profile_onnxruntime(path: str, feed: dict, threads: int, graph_level: str, runs: int) -> list[tuple[str, float]]:
    """(op type, µs) of every node run in `runs` inferences of an .onnx file, from onnxruntime's profiler (kernel
    events, op_name), in a session of its own so bench's timed sessions are not slowed by profiling."""
    with tempfile.TemporaryDirectory() as tmp:
        session = open_session(path, threads=threads, graph_level=graph_level, profile_prefix=str(Path(tmp) / "ort"))
        names = {i.name for i in session.get_inputs()}
        inputs = {k: v for k, v in feed.items() if k in names}
        session.run(None, inputs)  # warm-up, excluded below by counting only the last `runs` model runs
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(nodes) // (runs + 1)
    return [(e["args"].get("op_name", "?"), float(e["dur"])) for e in nodes[per_run:]]
