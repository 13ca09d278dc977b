"""What `ladc bench` can time: HF model dirs, model files and `ladc export` dirs, resolved into BenchTargets.

An export dir contributes every artifact its export.json lists, whatever the engine; which engine opens a file, a dir
or an `ENGINE:FILE` argument, and what the target says about it, each engine declares (ladc/engines/).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ladc.engines import ENGINES, entry_engine
from ladc.engines.base import BenchTarget
from ladc.errors import LadcError, did_you_mean
from ladc.runs.export_manifest import EXPORT_MANIFEST, is_export_dir, read_export_manifest
from ladc.runs.runs import infer_task

__all__ = ["resolve_targets", "resolve_baseline", "infer_task", "check_provider"]


def _export_target(export_dir: Path, artifact: dict, manifest_path: Path) -> BenchTarget:
    path = export_dir / str(artifact.get("path", ""))
    if not path.is_file():
        raise LadcError(f"{manifest_path} lists artifact path {artifact.get('path')!r} but {path} does not exist")
    engine = entry_engine(artifact)
    if engine not in ENGINES:
        raise LadcError(f"{manifest_path}: artifact {artifact.get('name')!r} has unknown engine {engine!r}")
    name = f"{export_dir.name}/{artifact.get('name', path.stem)}"
    return ENGINES[engine].export_target(export_dir, artifact, path, name)


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


def _prefixed_target(arg: str) -> BenchTarget | None:
    """`ENGINE:FILE` (e.g. openvino:runs/onnx/model.onnx): that engine on a file, where the engine takes one."""
    name, sep, rest = arg.partition(":")
    engine = ENGINES.get(name) if sep else None
    if engine is None or engine.prefixed_target is None:
        return None
    return engine.prefixed_target(arg, Path(rest))


def _targets_of(arg: str, torch_bf16: bool) -> list[BenchTarget]:
    if "@" in Path(arg).name and not Path(arg).exists():
        return [_export_artifact_target(arg)]
    prefixed = _prefixed_target(arg)
    if prefixed is not None:
        return [prefixed]
    path = Path(arg)
    if not path.exists():
        raise LadcError(f"target {arg} does not exist; expected an HF model dir, an .onnx file or a `ladc export` dir")
    if path.is_dir() and is_export_dir(path):
        return _export_targets(path)
    if path.is_file():
        engine = next((e for e in ENGINES.values() if path.suffix in e.suffixes and e.file_target), None)
        if engine is not None:
            return [engine.file_target(path, arg)]
    for engine in ENGINES.values() if path.is_dir() else ():
        targets = engine.dir_targets(path, arg, torch_bf16)
        if targets:
            return targets
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


def check_provider(provider: str, engines: set[str], tensorrt: bool = False) -> None:
    """Fail before loading anything when --provider cuda cannot work on this machine for these engines' targets.

    Raises:
        LadcError: an engine cannot run on CUDA here (PyTorch sees no CUDA device, onnxruntime lacks the CUDA or
            TensorRT provider).
    """
    if provider != "cuda":
        return
    problems = [problem for name, engine in ENGINES.items() if name in engines
                for problem in engine.cuda_problems(tensorrt)]  # fmt: skip
    if problems:
        raise LadcError(
            f"--provider cuda: {'; '.join(problems)}; run on a CUDA machine with onnxruntime-gpu "
            "(pip install 'ladc[gpu]') or use --provider cpu"
        )
