"""The only place that runs a model on a batch: one runner per engine (PyTorch, onnxruntime, OpenVINO), one opener
per engine, and `load_runner` for bench targets. Export parity, `--select fastest` and bench all go through here.

A runner maps a batch of model inputs (numpy or torch, (B, S)) to logits (B, C) float32 numpy. It splits each call
into `prepare` (host->device copies, kept out of timings), `run` (the timed part, device-synchronised) and `to_numpy`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from ladc.errors import LadcError
from ladc.targets import BenchTarget, resolve_baseline, resolve_targets
from ladc.tasks import TaskSpec

__all__ = [
    "MODEL_INPUTS",
    "ORT_GRAPH_LEVELS",
    "BenchTarget",
    "TorchRunner",
    "OrtRunner",
    "OvRunner",
    "resolve_targets",
    "resolve_baseline",
    "open_session",
    "open_openvino",
    "check_provider",
    "load_runner",
]

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
ORT_GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                    "all": "ORT_ENABLE_ALL"}  # fmt: skip


class TorchRunner:
    """A PyTorch sequence classifier as a runner (optionally under bf16 autocast)."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu", bf16: bool = False):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.bf16 = bf16

    def prepare(self, batch: dict) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(np.asarray(batch[k])).to(self.device) for k in MODEL_INPUTS if k in batch}

    def run(self, prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            logits = self.model(**prepared).logits
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # kernels are asynchronous; without this we would time the launch only
        return logits

    def to_numpy(self, output: torch.Tensor) -> np.ndarray:
        return output.float().cpu().numpy()

    def __call__(self, batch: dict) -> np.ndarray:
        return self.to_numpy(self.run(self.prepare(batch)))


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
    """An OvRunner on the CPU plugin (see ladc.openvino_ir.compile_ir)."""
    from ladc.openvino_ir import compile_ir

    return OvRunner(compile_ir(Path(path), "CPU", threads, inference_precision))


def _providers(provider: str, tensorrt: bool, precision: str) -> list:
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [("TensorrtExecutionProvider", {"trt_fp16_enable": precision == "fp16"}), *cuda] if tensorrt else cuda


def check_provider(provider: str, kinds: set[str], tensorrt: bool = False) -> None:
    """Fail before loading anything when --provider cuda cannot work on this machine (kinds: torch and/or onnx).

    Raises:
        LadcError: PyTorch sees no CUDA device, or onnxruntime lacks the CUDA (or TensorRT) provider.
    """
    if provider != "cuda":
        return
    import onnxruntime as ort

    problems = []
    if "torch" in kinds and not torch.cuda.is_available():
        problems.append("PyTorch sees no CUDA device")
    available = ort.get_available_providers()
    for needed in ["CUDAExecutionProvider"] + (["TensorrtExecutionProvider"] if tensorrt else []):
        if "onnx" in kinds and needed not in available:
            problems.append(f"onnxruntime has no {needed} (available: {', '.join(available)})")
    if problems:
        raise LadcError(
            f"--provider cuda: {'; '.join(problems)}; run on a CUDA machine with onnxruntime-gpu "
            "(pip install 'ladc[gpu]') or use --provider cpu"
        )


def open_session(
    path: str | Path, providers: list, threads: int | None, graph_level: str = "all", spinning: bool = True
):
    """An InferenceSession with explicit threading and optimisation settings, and one-line load errors.

    `intra_op_num_threads=threads`, one inter-op thread, sequential execution: BERT has no parallel branches worth
    a second pool, and a fixed pool keeps runs comparable. `spinning=False` stops the pool's threads from spinning
    after a run (slower alone, but they then steal no cores from other sessions timed in between).

    Raises:
        LadcError: corrupted/unreadable file, or a requested GPU provider that onnxruntime silently dropped.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_GRAPH_LEVELS[graph_level])
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT's InvalidProtobuf / Fail / InvalidGraph derive from Exception directly
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"{path} is not a valid ONNX model: {first}") from None
    wanted = [p if isinstance(p, str) else p[0] for p in providers]
    if wanted[0] not in session.get_providers():
        raise LadcError(
            f"{path}: onnxruntime fell back from {wanted[0]} to {session.get_providers()} (CUDA/cuDNN/TensorRT "
            "libraries missing?); install onnxruntime-gpu matching your CUDA or use --provider cpu"
        )
    return session


def _check_tokenizer(tokenizer, config, target: BenchTarget) -> None:
    if len(tokenizer) > config.vocab_size:
        raise LadcError(
            f"target {target.name}: the tokenizer in {target.model_dir} has {len(tokenizer)} tokens but the model's "
            f"vocab_size is {config.vocab_size} (tokenizer from another model?)"
        )


def _check_session_io(session, tokenizer, target: BenchTarget, task: TaskSpec) -> None:
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


def load_runner(
    target: BenchTarget,
    task: TaskSpec,
    provider: str = "cpu",
    threads: int = 1,
    graph_level: str = "all",
    tensorrt: bool = False,
    spinning: bool = True,
):
    """Load a target and check it fits the task (inputs, label count, tokenizer).

    Returns:
        (runner, tokenizer, model config, settings dict recorded in the report: engine, device, providers, threads).

    Raises:
        LadcError: label count differs from the task's, inputs the tokenizer cannot feed, tokenizer mismatch,
            corrupted ONNX file, or a provider fallback.
    """
    from ladc.models import load_classifier, load_config, load_tokenizer

    tokenizer = load_tokenizer(target.model_dir)
    if target.kind == "torch":
        model = load_classifier(target.model_dir, task)
        _check_tokenizer(tokenizer, model.config, target)
        runner = TorchRunner(model, device=provider, bf16=target.precision == "bf16-autocast")
        settings = {"engine": f"torch {torch.__version__}", "device": provider, "threads": torch.get_num_threads()}
        return runner, tokenizer, model.config, settings
    config = load_config(target.model_dir)
    _check_tokenizer(tokenizer, config, target)
    if config.num_labels != task.num_labels:
        raise LadcError(
            f"ONNX target {target.path}: {target.model_dir}/config.json has {config.num_labels} labels "
            f"but task {task.name} has {task.num_labels}"
        )
    if target.kind == "openvino":
        runner = open_openvino(target.path, threads, target.runtime.get("inference_precision"))
        _check_ov_io(runner, tokenizer, target, task)
        settings = {"engine": f"openvino {_ov_version()}", "device": "CPU", "inference_num_threads": threads,
                    "inference_precision": runner.inference_precision, "performance_hint": "LATENCY",
                    "num_streams": 1}  # fmt: skip
        return runner, tokenizer, config, settings
    import onnxruntime as ort

    providers = _providers(provider, tensorrt, target.precision)
    session = open_session(target.path, providers, threads, graph_level, spinning)
    _check_session_io(session, tokenizer, target, task)
    settings = {
        "engine": f"onnxruntime {ort.__version__}",
        "providers": session.get_providers(),
        "graph_optimization_level": ORT_GRAPH_LEVELS[graph_level],
        "execution_mode": "ORT_SEQUENTIAL",
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "intra_op_spinning": spinning,
        "io_binding": provider == "cuda",
    }
    return OrtRunner(session, io_binding=provider == "cuda"), tokenizer, config, settings


def _ov_version() -> str:
    from importlib.metadata import version

    return version("openvino")


def _check_ov_io(runner: OvRunner, tokenizer, target: BenchTarget, task: TaskSpec) -> None:
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


def open_artifact(root: Path, entry: dict, threads: int | None = None, spinning: bool = True):
    """A runner for one export.json artifact entry (engine, path, provider, precision, runtime).

    Raises:
        LadcError: the file is missing or unreadable, or its engine is not installed.
    """
    path = Path(root) / entry["path"]
    if not path.is_file():
        raise LadcError(f"{path} does not exist")
    engine = entry.get("engine", "onnxruntime")
    if engine == "openvino":
        return open_openvino(path, threads, (entry.get("runtime") or {}).get("inference_precision"))
    if engine == "torch":
        from transformers import AutoModelForSequenceClassification

        from ladc.models import load_config

        model = AutoModelForSequenceClassification.from_pretrained(path.parent, config=load_config(str(path.parent)))
        return TorchRunner(model, bf16=entry.get("precision") == "bf16")
    providers = _providers("cuda" if entry.get("provider") == "CUDAExecutionProvider" else "cpu", False, "")
    return OrtRunner(open_session(path, providers, threads, "all", spinning))
