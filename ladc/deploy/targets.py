"""What `ladc bench` can time: HF model dirs, .onnx/.xml files and `ladc export` dirs, resolved into BenchTargets.

An export dir contributes every artifact its export.json lists, whatever the engine (onnxruntime, OpenVINO, PyTorch).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ladc.deploy.artifacts import ENGINES
from ladc.deploy.onnx_graphs import FUSION_OPS, INT8_OPS
from ladc.errors import LadcError, did_you_mean
from ladc.runs.export_manifest import EXPORT_MANIFEST, is_export_dir, read_export_manifest
from ladc.runs.runs import infer_task

__all__ = [
    "BenchTarget",
    "resolve_targets",
    "resolve_baseline",
    "describe_onnx",
    "infer_task",
    "check_provider",
    "check_tokenizer",
    "check_onnx_io",
    "check_openvino_io",
]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


@dataclass(frozen=True)
class BenchTarget:
    """One model variant to benchmark.

    Attributes:
        name: unique display name, e.g. `onnx-student-sst2/fused_int8` or `student-sst2+bf16`.
        kind: `torch` (HF model dir), `onnx` (one .onnx file, onnxruntime) or `openvino` (an IR .xml file).
        path: the HF model dir or the model file.
        model_dir: directory holding config.json and the tokenizer.
        precision: fp32 | bf16-autocast | fp16 | int8 | auto (OpenVINO's plugin default).
        size_mb: weights on disk (MB = 1e6 bytes), external data included.
        optimized: graph already fused (ORT transformer optimizer).
        runtime: engine options from export.json (e.g. {"inference_precision": "f32"} for OpenVINO).
        artifact: its name in export.json when it comes from an export dir (bench reuses that dir's selection timings).
    """

    name: str
    kind: str
    path: str
    model_dir: str
    precision: str
    size_mb: float
    optimized: bool = False
    runtime: dict = field(default_factory=dict)
    artifact: str | None = None


def _size_mb(paths) -> float:
    return round(sum(Path(p).stat().st_size for p in paths if Path(p).is_file()) / 1e6, 3)


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
    return precision, bool(ops & set(FUSION_OPS)), _size_mb([path, *(path.parent / name for name in external)])


def _export_target(export_dir: Path, artifact: dict, manifest_path: Path) -> BenchTarget:
    path = export_dir / str(artifact.get("path", ""))
    if not path.is_file():
        raise LadcError(f"{manifest_path} lists artifact path {artifact.get('path')!r} but {path} does not exist")
    engine = str(artifact.get("engine", "onnxruntime"))
    if engine not in ENGINES:
        raise LadcError(f"{manifest_path}: artifact {artifact.get('name')!r} has unknown engine {engine!r}")
    name = f"{export_dir.name}/{artifact.get('name', path.stem)}"
    precision = str(artifact.get("precision", "fp32"))
    kind = ENGINES[engine].target_kind
    if kind == "onnx":
        described, optimized, size_mb = describe_onnx(path)
        return BenchTarget(name, kind, str(path), str(export_dir), str(artifact.get("precision", described)), size_mb,
                           bool(artifact.get("optimized", optimized)))  # fmt: skip
    if kind == "openvino":
        size_mb = _size_mb([path, path.with_suffix(".bin")])
        return BenchTarget(name, kind, str(path), str(export_dir), precision, size_mb,
                           runtime=dict(artifact.get("runtime") or {}))  # fmt: skip
    precision = "bf16-autocast" if precision == "bf16" else precision
    return BenchTarget(name, kind, str(export_dir), str(export_dir), precision, _size_mb([path]))


def _export_targets(export_dir: Path) -> list[BenchTarget]:
    """Every artifact listed in a `ladc export` manifest (export.json), in manifest order."""
    manifest_path = export_dir / EXPORT_MANIFEST
    manifest = read_export_manifest(export_dir)
    if not manifest.artifacts:
        raise LadcError(f"{manifest_path} has no 'artifacts' list; re-run `ladc export`")
    return [replace(_export_target(export_dir, artifact, manifest_path), artifact=str(artifact.get("name")))
            for artifact in manifest.artifacts]  # fmt: skip


def _export_artifact_target(arg: str) -> BenchTarget:
    """`EXPORT_DIR@NAME`: one artifact of an export dir; `EXPORT_DIR@chosen` is the one `--select fastest` chose."""
    directory, _, name = arg.rpartition("@")
    export_dir = Path(directory)
    manifest_path = export_dir / EXPORT_MANIFEST
    if not is_export_dir(export_dir):
        raise LadcError(f"target {arg}: {directory} is not a `ladc export` dir (no {EXPORT_MANIFEST})")
    manifest = read_export_manifest(export_dir)
    if name == "chosen":
        name = manifest.chosen
        if not name:
            raise LadcError(f"target {arg}: {manifest_path} names no chosen artifact; export with --select fastest")
    names = manifest.names()
    if name not in names:
        raise LadcError(
            f"target {arg}: {manifest_path} has no artifact '{name}'{did_you_mean(name, names)}; it has "
            f"{', '.join(names)}"
        )
    return replace(_export_target(export_dir, manifest.artifacts[names.index(name)], manifest_path), artifact=name)


def _targets_of(arg: str, torch_bf16: bool) -> list[BenchTarget]:
    if "@" in Path(arg).name and not Path(arg).exists():
        return [_export_artifact_target(arg)]
    if arg.startswith("openvino:"):  # e.g. openvino:runs/onnx/model.onnx: OpenVINO's CPU plugin on any ONNX/IR file
        path = Path(arg.removeprefix("openvino:"))
        if not path.is_file() or path.suffix not in (".onnx", ".xml"):
            raise LadcError(f"target {arg}: expected openvino:FILE with an existing .onnx or .xml file")
        size_mb = _size_mb([path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path])
        return [BenchTarget(f"{path.parent.name}/{path.stem}@openvino", "openvino", str(path), str(path.parent),
                            "auto", size_mb)]  # fmt: skip
    path = Path(arg)
    if not path.exists():
        raise LadcError(f"target {arg} does not exist; expected an HF model dir, an .onnx file or a `ladc export` dir")
    if path.is_dir() and is_export_dir(path):
        return _export_targets(path)
    if path.is_file() and path.suffix == ".onnx":
        precision, optimized, size_mb = describe_onnx(path)
        return [BenchTarget(f"{path.parent.name}/{path.stem}", "onnx", arg, str(path.parent), precision, size_mb,
                            optimized)]  # fmt: skip
    if path.is_file() and path.suffix == ".xml":
        size_mb = _size_mb([path, path.with_suffix(".bin")])
        return [BenchTarget(f"{path.parent.name}/{path.stem}", "openvino", arg, str(path.parent), "auto", size_mb)]
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
        f"target {arg} is neither an HF model dir (config.json + model.safetensors), an .onnx or OpenVINO .xml file, "
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


# ----------------------------------------------------------------------------- does a loaded target fit the task


def check_provider(provider: str, kinds: set[str], tensorrt: bool = False) -> None:
    """Fail before loading anything when --provider cuda cannot work on this machine (kinds: torch and/or onnx).

    Raises:
        LadcError: PyTorch sees no CUDA device, or onnxruntime lacks the CUDA (or TensorRT) provider.
    """
    if provider != "cuda":
        return
    import onnxruntime as ort
    import torch

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


def check_tokenizer(tokenizer, config, target: BenchTarget) -> None:
    if len(tokenizer) > config.vocab_size:
        raise LadcError(
            f"target {target.name}: the tokenizer in {target.model_dir} has {len(tokenizer)} tokens but the model's "
            f"vocab_size is {config.vocab_size} (tokenizer from another model?)"
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


def check_openvino_io(runner, tokenizer, target: BenchTarget, task) -> None:
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
