"""The only place that runs a model on a batch: one runner protocol for every engine (PyTorch, onnxruntime,
OpenVINO), one session opener per engine, `predict_logits` over a loader, and `load_runner` for bench targets.
Export parity, `--select fastest`, bench, `ladc evaluate` and training eval all go through here.

A runner maps a batch of model inputs (numpy or torch, (B, S); extra keys such as labels are ignored) to logits
(B, C) float32 numpy. It splits each call into `prepare` (host->device copies, kept out of timings), `run` (the timed
part, device-synchronised) and `to_numpy`; a runner whose outputs are sharded across processes also has `gather`.
A new engine is one runner class and one opener in `OPENERS`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ladc.data.tasks import TaskSpec
from ladc.deploy.targets import (
    MODEL_INPUTS,
    ORT_INT_TYPES,
    BenchTarget,
    check_onnx_io,
    check_openvino_io,
    check_provider,
    check_tokenizer,
)
from ladc.errors import LadcError

__all__ = [
    "ORT_GRAPH_LEVELS",
    "Provider",
    "TorchRunner",
    "OrtRunner",
    "OvRunner",
    "predict_logits",
    "open_session",
    "open_openvino",
    "open_artifact",
    "check_provider",
    "load_runner",
]

ORT_GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                    "all": "ORT_ENABLE_ALL"}  # fmt: skip


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


def predict_logits(runner, loader) -> tuple[np.ndarray, np.ndarray | None]:
    """Run a runner over every batch of a loader, in loader order.

    Args:
        runner: any runner of this module.
        loader: an iterable of batches {input_ids, attention_mask[, token_type_ids]: (B, S)[, labels: (B,)]}
            (a DataLoader with shuffle=False, or a list of numpy batches).

    Returns:
        (logits (N, C) float32, labels (N,) as the loader gave them, or None when its batches carry none).
    """
    gather = getattr(runner, "gather", None)
    all_logits, all_labels = [], []
    for batch in loader:
        output, labels = runner.run(runner.prepare(batch)), batch.get("labels")
        if gather is not None:
            output, labels = gather(output, labels)
        all_logits.append(runner.to_numpy(output))
        if labels is not None:
            all_labels.append(labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels))
    labels = np.concatenate(all_labels) if all_labels else None
    return np.concatenate(all_logits).astype(np.float32), labels


class TorchRunner:
    """A PyTorch sequence classifier as a runner (optionally under bf16 autocast, or under an accelerate
    Accelerator during training, whose mixed precision and cross-process gathering it then uses)."""

    def __init__(self, model: torch.nn.Module, device: str | None = None, bf16: bool = False, accelerator=None):
        self.accelerator = accelerator
        if accelerator is not None:
            self.device = accelerator.device  # the model is already prepared (and maybe DDP-wrapped): leave it there
            self.model = model.eval()
        else:
            self.device = torch.device(device) if device else next(model.parameters()).device
            self.model = model.to(self.device).eval()
        self.bf16 = bf16

    def prepare(self, batch: dict) -> dict[str, torch.Tensor]:
        tensors = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
                   for k, v in batch.items() if k in MODEL_INPUTS}  # fmt: skip
        return {k: v.to(self.device) for k, v in tensors.items()}

    def _contexts(self):
        if self.accelerator is not None:
            # no_grad, not inference_mode: DDP syncs buffers in forward, and inference tensors would leak into training
            return torch.no_grad(), self.accelerator.autocast()
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        return torch.inference_mode(), autocast

    def run(self, prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        grad_mode, autocast = self._contexts()
        with grad_mode, autocast:
            logits = self.model(**prepared).logits
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # kernels are asynchronous; without this we would time the launch only
        return logits

    def gather(self, output: torch.Tensor, labels):
        """Logits and labels of every process, the sampler's padding rows dropped (identity without accelerate)."""
        if self.accelerator is None:
            return output, labels
        return self.accelerator.gather_for_metrics((output, labels))

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
    """An OvRunner on the CPU plugin (see ladc.deploy.openvino_ir.compile_ir)."""
    from ladc.deploy.openvino_ir import compile_ir

    return OvRunner(compile_ir(Path(path), "CPU", threads, inference_precision))


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
    from ladc.training.models import load_classifier, load_config, load_tokenizer

    tokenizer = load_tokenizer(target.model_dir)
    if target.kind == "torch":
        model = load_classifier(target.model_dir, task)
        check_tokenizer(tokenizer, model.config, target)
        runner = TorchRunner(model, device=provider, bf16=target.precision == "bf16-autocast")
        settings = {"engine": f"torch {torch.__version__}", "device": provider, "threads": torch.get_num_threads()}
        return runner, tokenizer, model.config, settings
    config = load_config(target.model_dir)
    check_tokenizer(tokenizer, config, target)
    if config.num_labels != task.num_labels:
        raise LadcError(
            f"ONNX target {target.path}: {target.model_dir}/config.json has {config.num_labels} labels "
            f"but task {task.name} has {task.num_labels}"
        )
    if target.kind == "openvino":
        runner = open_openvino(target.path, threads, target.runtime.get("inference_precision"))
        check_openvino_io(runner, tokenizer, target, task)
        settings = {"engine": f"openvino {_ov_version()}", "device": "CPU", "inference_num_threads": threads,
                    "inference_precision": runner.inference_precision, "performance_hint": "LATENCY",
                    "num_streams": 1}  # fmt: skip
        return runner, tokenizer, config, settings
    import onnxruntime as ort

    session = open_session(target.path, Provider(provider, tensorrt, target.precision == "fp16"), threads, graph_level,
                           spinning)  # fmt: skip
    check_onnx_io(session, tokenizer, target, task)
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


def _open_ort_artifact(path: Path, entry: dict, threads, spinning, expected_inputs) -> OrtRunner:
    return OrtRunner(open_session(path, Provider.of_entry(entry), threads, "all", spinning, expected_inputs))


def _open_ov_artifact(path: Path, entry: dict, threads, spinning, expected_inputs) -> OvRunner:
    return open_openvino(path, threads, (entry.get("runtime") or {}).get("inference_precision"))


def _open_torch_artifact(path: Path, entry: dict, threads, spinning, expected_inputs) -> TorchRunner:
    from transformers import AutoModelForSequenceClassification

    from ladc.training.models import load_config

    model = AutoModelForSequenceClassification.from_pretrained(path.parent, config=load_config(str(path.parent)))
    return TorchRunner(model, device="cpu", bf16=entry.get("precision") == "bf16")


# export.json `engine` -> opener(path, entry, threads, spinning, expected_inputs): a new engine adds one line here
OPENERS = {"onnxruntime": _open_ort_artifact, "openvino": _open_ov_artifact, "torch": _open_torch_artifact}


def open_artifact(
    root: Path, entry: dict, threads: int | None = None, spinning: bool = True, expected_inputs: list[str] | None = None
):
    """A runner for one export.json artifact entry (engine, path, provider, precision, runtime).

    `expected_inputs` (onnxruntime graphs): the input names the caller feeds; see `open_session`.

    Raises:
        LadcError: the file is missing or unreadable, or its engine is unknown or not installed.
    """
    path = Path(root) / entry["path"]
    if not path.is_file():
        raise LadcError(f"{path} does not exist")
    engine = entry.get("engine", "onnxruntime")
    if engine not in OPENERS:
        raise LadcError(f"{path}: unknown engine {engine!r}; expected one of {', '.join(OPENERS)}")
    return OPENERS[engine](path, entry, threads, spinning, expected_inputs)
