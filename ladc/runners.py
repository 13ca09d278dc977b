"""Benchmark targets (HF dirs, .onnx files, `ladc export` dirs) and the runners that call them (PyTorch, ORT).

A runner maps a batch of model inputs (numpy or torch, (B, S)) to logits (B, C) float32 numpy. It splits each call
into `prepare` (host->device copies, kept out of timings), `run` (the timed part, device-synchronised) and `to_numpy`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ladc.errors import LadcError, did_you_mean
from ladc.io import read_json
from ladc.tasks import TaskSpec

__all__ = [
    "MODEL_INPUTS",
    "ORT_GRAPH_LEVELS",
    "BenchTarget",
    "TorchRunner",
    "OrtRunner",
    "resolve_targets",
    "resolve_baseline",
    "open_session",
    "check_provider",
    "load_runner",
]

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# ops that only appear in quantized / fused graphs; they describe a bare .onnx file that has no manifest
INT8_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "DynamicQuantizeMatMul", "QAttention"}
FUSED_OPS = {
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
    "FastGelu",
    "BiasGelu",
}
ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
ORT_GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                    "all": "ORT_ENABLE_ALL"}  # fmt: skip


@dataclass(frozen=True)
class BenchTarget:
    """One model variant to benchmark.

    Attributes:
        name: unique display name, e.g. `onnx-student-sst2/model_int8` or `student-sst2+bf16`.
        kind: `torch` (HF model dir) or `onnx` (one .onnx file).
        path: the HF model dir or the .onnx file.
        model_dir: directory holding config.json and the tokenizer.
        precision: fp32 | bf16-autocast | fp16 | int8.
        size_mb: weights on disk (MB = 1e6 bytes), external ONNX data included.
        optimized: graph already fused (ORT transformer optimizer).
    """

    name: str
    kind: str
    path: str
    model_dir: str
    precision: str
    size_mb: float
    optimized: bool = False


def _size_mb(paths) -> float:
    return round(sum(Path(p).stat().st_size for p in paths if Path(p).is_file()) / 1e6, 3)


def _describe_onnx(path: Path) -> tuple[str, bool, float]:
    """(precision, optimized, size_mb) of an .onnx file, read from its graph (external data not loaded)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors share no base class but Exception
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"{path} is not a valid ONNX model: {first}") from None
    ops = {node.op_type for node in proto.graph.node}
    initializers = proto.graph.initializer
    external = {e.value for init in initializers for e in init.external_data if e.key == "location"}
    fp16_count = sum(init.data_type == onnx.TensorProto.FLOAT16 for init in initializers)
    precision = "int8" if ops & INT8_OPS else "fp16" if fp16_count > len(initializers) // 2 else "fp32"
    return precision, bool(ops & FUSED_OPS), _size_mb([path, *(path.parent / name for name in external)])


def _export_targets(export_dir: Path) -> list[BenchTarget]:
    """Every artifact listed in a `ladc export` manifest (export.json), in manifest order."""
    manifest_path = export_dir / "export.json"
    manifest = read_json(manifest_path)
    artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not artifacts or not isinstance(artifacts, list):
        raise LadcError(f"{manifest_path} has no 'artifacts' list; re-run `ladc export`")
    targets = []
    for artifact in artifacts:
        path = export_dir / str(artifact.get("path", ""))
        if not path.is_file():
            raise LadcError(f"{manifest_path} lists artifact path {artifact.get('path')!r} but {path} does not exist")
        precision, optimized, size_mb = _describe_onnx(path)
        targets.append(
            BenchTarget(
                name=f"{export_dir.name}/{artifact.get('name', path.stem)}", kind="onnx", path=str(path),
                model_dir=str(export_dir), precision=str(artifact.get("precision", precision)), size_mb=size_mb,
                optimized=bool(artifact.get("optimized", optimized)),
            )
        )  # fmt: skip
    return targets


def _targets_of(arg: str, torch_bf16: bool) -> list[BenchTarget]:
    path = Path(arg)
    if not path.exists():
        raise LadcError(f"target {arg} does not exist; expected an HF model dir, an .onnx file or a `ladc export` dir")
    if path.is_dir() and (path / "export.json").is_file():
        return _export_targets(path)
    if path.is_file() and path.suffix == ".onnx":
        precision, optimized, size_mb = _describe_onnx(path)
        return [BenchTarget(f"{path.parent.name}/{path.stem}", "onnx", arg, str(path.parent), precision, size_mb,
                            optimized)]  # fmt: skip
    has_weights = any((path / f).is_file() or (path / f"{f}.index.json").is_file() for f in WEIGHT_FILES)
    if path.is_dir() and (path / "config.json").is_file() and has_weights:
        size_mb = _size_mb(path / f for f in WEIGHT_FILES)
        targets = [BenchTarget(path.name, "torch", arg, arg, "fp32", size_mb)]
        if torch_bf16:
            targets.append(BenchTarget(f"{path.name}+bf16", "torch", arg, arg, "bf16-autocast", size_mb))
        return targets
    onnx_files = sorted(path.glob("*.onnx")) if path.is_dir() else []
    if onnx_files and (path / "config.json").is_file():  # an optimum/ORTModel dir without a ladc manifest
        return [target for file in onnx_files for target in _targets_of(str(file), torch_bf16)]
    raise LadcError(
        f"target {arg} is neither an HF model dir (config.json + model.safetensors), an .onnx file, "
        "nor a `ladc export` dir (export.json)"
    )


def resolve_targets(paths: list[str] | tuple[str, ...], torch_bf16: bool = False) -> list[BenchTarget]:
    """Turn TARGET arguments into benchmark targets; repeated names get `#2`, `#3` suffixes.

    Args:
        paths: HF model dirs, .onnx files or `ladc export` dirs.
        torch_bf16: add a PyTorch bf16-autocast target after each HF model dir's fp32 one.

    Raises:
        LadcError: a path that does not exist or is none of the three kinds; a broken export manifest.
    """
    if not paths:
        raise LadcError("no targets given; pass at least one HF model dir, .onnx file or `ladc export` dir")
    targets = [target for arg in paths for target in _targets_of(str(arg), torch_bf16)]
    counts: dict[str, int] = {}
    unique = []
    for target in targets:
        counts[target.name] = counts.get(target.name, 0) + 1
        unique.append(
            target if counts[target.name] == 1 else replace(target, name=f"{target.name}#{counts[target.name]}")
        )
    return unique


def resolve_baseline(baseline: str | None, names: list[str]) -> int:
    """Index of the baseline: a target name, a 0-based index, or None for the first target.

    Raises:
        LadcError: neither a target name nor an index in range.
    """
    if baseline is None:
        return 0
    if baseline in names:
        return names.index(baseline)
    if baseline.isdigit() and int(baseline) < len(names):
        return int(baseline)
    raise LadcError(
        f"--baseline '{baseline}' is neither a target name nor an index 0..{len(names) - 1}"
        f"{did_you_mean(baseline, names)}; targets: {', '.join(names)}"
    )


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


def open_session(path: str | Path, providers: list, threads: int, graph_level: str = "all"):
    """An InferenceSession with explicit threading and optimisation settings, and one-line load errors.

    `intra_op_num_threads=threads`, one inter-op thread, sequential execution: BERT has no parallel branches worth
    a second pool, and a fixed pool keeps runs comparable.

    Raises:
        LadcError: corrupted/unreadable file, or a requested GPU provider that onnxruntime silently dropped.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
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
    import onnxruntime as ort

    session = open_session(target.path, _providers(provider, tensorrt, target.precision), threads, graph_level)
    _check_session_io(session, tokenizer, target, task)
    settings = {
        "engine": f"onnxruntime {ort.__version__}",
        "providers": session.get_providers(),
        "graph_optimization_level": ORT_GRAPH_LEVELS[graph_level],
        "execution_mode": "ORT_SEQUENTIAL",
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "io_binding": provider == "cuda",
    }
    return OrtRunner(session, io_binding=provider == "cuda"), tokenizer, config, settings
