"""The records an engine module fills in: the `Engine` itself, its artifact rows (`Artifact`, `Tolerance`,
`BuildContext`), the targets it opens (`BenchTarget`, `LoadOptions`), and the checks every engine shares.

Kept apart from ladc/engines/__init__.py so the engine modules can import these types while `__init__` imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ladc.errors import LadcError
from ladc.runs.config import ExportConfig

__all__ = [
    "MODEL_INPUTS",
    "WEIGHT_FILES",
    "Tolerance",
    "BuildContext",
    "Artifact",
    "BenchTarget",
    "LoadOptions",
    "Engine",
    "size_mb",
    "has_weights",
    "check_tokenizer",
    "file_model_config",
]

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Tolerance:
    """Bounds an artifact must meet against PyTorch fp32 on dev data; None = not checked.

    Attributes:
        max_abs_diff: max |Δlogit| over the parity set.
        min_agreement_pct: % of examples with the same predicted label (classification).
        max_metric_drop_points: PyTorch's headline metric minus the artifact's, x100.
        min_score_correlation: Pearson r of the artifact's scores with PyTorch's (regression: STS-B has no labels to
            agree on, and its metric alone would pass an artifact whose scores are noise around the right mean).
    """

    max_abs_diff: float | None = None
    min_agreement_pct: float | None = None
    max_metric_drop_points: float | None = None
    min_score_correlation: float | None = None


@dataclass
class BuildContext:
    """What a builder may read and write.

    Attributes:
        cfg: the export settings.
        build: the (temporary) export directory; model.onnx is already in it.
        model: the PyTorch source classifier (fp32, CPU).
        calibration: callable returning train-split feeds {name: (B, S) int64} for static quantization.
    """

    cfg: ExportConfig
    build: Path
    model: object
    calibration: Callable[[], list[dict]]


@dataclass(frozen=True)
class Artifact:
    """One deployable variant: a row of the artifact table (ladc/deploy/artifacts.py), declared by its engine.

    Attributes:
        name: manifest name (`fp32`, `fused_int8`, `openvino_int8`, ...).
        engine: the name of the engine that builds and opens it (its `--backend`).
        file: path inside the export dir.
        precision: fp32 | fp16 | int8 | bf16 | auto (the engine picks; parity judges what it picked).
        build: writes `file` (and returns extra manifest fields), or None when another row's file is reused.
        wanted: whether this config asks for the row (beyond its engine being selected).
        required: built whatever `--backend` says (model.onnx: export writes it, and other engines convert from it).
        optimized: graph fused.
        quantized: weights int8.
        runtime: engine options (e.g. OpenVINO's inference precision), recorded in export.json.
        cuda: runs on CUDA (fp16) rather than the CPU.
        tolerance: what parity demands; None = `TOLERANCES` of the precision the engine ran.
    """

    name: str
    engine: str
    file: str
    precision: str
    build: Callable[[BuildContext], dict] | None
    wanted: Callable[[ExportConfig], bool] = lambda cfg: True
    required: bool = False
    optimized: bool = False
    quantized: bool = False
    runtime: dict = field(default_factory=dict)
    cuda: bool = False
    tolerance: Tolerance | None = None


@dataclass(frozen=True)
class BenchTarget:
    """One model variant to open: a bench target, or what predict and serve run.

    Attributes:
        name: unique display name, e.g. `onnx-student-sst2/fused_int8` or `student-sst2+bf16`.
        engine: the name of the engine that opens it (onnxruntime, openvino, torch).
        path: the model file, or the HF model dir.
        model_dir: directory holding config.json and the tokenizer.
        precision: fp32 | bf16-autocast | fp16 | int8 | auto (the engine's default, e.g. OpenVINO's plugin's).
        size_mb: weights on disk (MB = 1e6 bytes), external data included.
        optimized: graph already fused (ORT transformer optimizer).
        runtime: engine options from export.json (e.g. {"inference_precision": "f32"} for OpenVINO).
        artifact: its name in export.json when it comes from an export dir (bench reuses that dir's selection timings).
    """

    name: str
    engine: str
    path: str
    model_dir: str
    precision: str
    size_mb: float
    optimized: bool = False
    runtime: dict = field(default_factory=dict)
    artifact: str | None = None


@dataclass(frozen=True)
class LoadOptions:
    """How bench, predict and serve open a target.

    Attributes:
        provider: cpu | cuda.
        threads: intra-op threads (None: the engine's default, one per physical core).
        graph_level: onnxruntime graph optimisation (disable | basic | extended | all).
        tensorrt: with provider cuda, TensorRT first.
        spinning: whether thread pools may spin after a run (only when no other target is timed in between).
    """

    provider: str = "cpu"
    threads: int | None = 1
    graph_level: str = "all"
    tensorrt: bool = False
    spinning: bool = True


def _nothing(*args) -> None:
    return None


def _no_problems(*args) -> list[str]:
    return []


def _no_targets(*args) -> list[BenchTarget]:
    return []


@dataclass(frozen=True)
class Engine:
    """Everything ladc knows about one engine. The rest of ladc loops over these records and names no engine.

    Attributes:
        name: its one word: the `--backend` value, export.json's artifact `engine`, a BenchTarget's `engine`.
        label: its name in reports ("ONNX Runtime").
        artifacts: its rows of the artifact table, in build order (each row's `engine` is `name`).
        missing: (build) -> None when this machine can run it (build=True: and build its artifacts), else why not.
        open_artifact: (path, entry, threads, spinning, expected_inputs) -> runner of an export.json entry.
        load: (target, task, tokenizer, LoadOptions) -> (runner, model config, settings): a target checked against
            the task (inputs, label count, tokenizer); settings are recorded in bench.json.
        export_target: (export_dir, entry, path, name) -> the BenchTarget of an export.json entry.
        bench_kind: bench.json's older word for its targets' `kind` (kept so existing readers of bench.json work).
        files: (model file) -> the files it occupies on disk (an IR's .xml and .bin).
        suffixes: model files it opens when given one bare (".onnx").
        file_target: (path, name) -> BenchTarget of such a file.
        prefixed_target: (arg, path) -> BenchTarget of a `NAME:FILE` target, or None when it takes none.
        dir_targets: (path, arg, torch_bf16) -> targets of a model dir it runs as it is ([] when not its kind).
        cpu_only: why ladc runs it on the CPU only (None: `--provider cuda` runs it on the GPU).
        cuda_problems: (tensorrt) -> why `--provider cuda` cannot run it on this machine ([] when it can).
        export_on_cuda: its unquantized artifacts run on CUDA when export's `--device` is cuda.
        check_export: (cfg) -> None, or LadcError when the export config asks it for what this machine lacks.
        select_skip: (cfg) -> why `--select fastest` leaves it out here, or None (default: `missing(build=True)`).
        inspect: (cfg, build, [(row, entry)], model) -> None: adds its own figures to its built entries, checks them.
        profile: (target, runner, feed, threads, graph_level, runs) -> per-op-type rows (ladc/bench/profiling.py).
        no_profile: what bench's profile says for its targets when `profile` is None.
        check_bench: (bench cfg) -> None, or LadcError for its own bench options.
        bench_runtime: (bench cfg, threads) -> its settings in bench.json's `runtime` block.
        runtime_text: (runtime block) -> its part of bench.md's settings line, or None.
        reuses_selection: (bench cfg) -> whether export's `--select fastest` timings stand for what bench would time.
        packages: distributions whose versions bench records.
        card_tag: a model-card tag of export dirs holding its artifacts.
    """

    name: str
    label: str
    artifacts: tuple[Artifact, ...]
    missing: Callable[[bool], str | None]
    open_artifact: Callable
    load: Callable
    export_target: Callable[[Path, dict, Path, str], BenchTarget]
    bench_kind: str = ""
    files: Callable[[Path], list[Path]] = lambda path: [path]
    suffixes: tuple[str, ...] = ()
    file_target: Callable[[Path, str], BenchTarget] | None = None
    prefixed_target: Callable[[str, Path], BenchTarget] | None = None
    dir_targets: Callable[[Path, str, bool], list[BenchTarget]] = _no_targets
    cpu_only: str | None = None
    cuda_problems: Callable[[bool], list[str]] = _no_problems
    export_on_cuda: bool = False
    check_export: Callable = _nothing
    select_skip: Callable | None = None
    inspect: Callable = _nothing
    profile: Callable | None = None
    no_profile: str = ""
    check_bench: Callable = _nothing
    bench_runtime: Callable[[object, int], dict] = lambda cfg, threads: {}
    runtime_text: Callable[[dict], str | None] = _nothing
    reuses_selection: Callable[[object], bool] = lambda cfg: True
    packages: tuple[str, ...] = ()
    card_tag: str | None = None

    def __post_init__(self):
        strays = [row.name for row in self.artifacts if row.engine != self.name]
        if strays:  # a programming error in an engine module, not a user error
            raise ValueError(f"engine {self.name!r} declares rows of another engine: {strays}")
        if not self.bench_kind:
            object.__setattr__(self, "bench_kind", self.name)

    def available(self, build: bool = False) -> bool:
        """Whether this machine can run it (build=True: and build its artifacts)."""
        return self.missing(build) is None

    def skip_reason(self, cfg) -> str | None:
        """Why `--select fastest` leaves it out on this machine, or None."""
        return self.select_skip(cfg) if self.select_skip is not None else self.missing(True)


# ----------------------------------------------------------------------------- shared by the engine modules


def size_mb(paths) -> float:
    """Bytes on disk of the files that exist among `paths`, in MB (1e6 bytes)."""
    return round(sum(Path(p).stat().st_size for p in paths if Path(p).is_file()) / 1e6, 3)


def has_weights(path: Path) -> bool:
    """Whether a dir holds HF PyTorch weights (one file or a sharded index)."""
    return any((path / f).is_file() or (path / f"{f}.index.json").is_file() for f in WEIGHT_FILES)


def check_tokenizer(tokenizer, config, target: BenchTarget) -> None:
    if len(tokenizer) > config.vocab_size:
        raise LadcError(
            f"target {target.name}: the tokenizer in {target.model_dir} has {len(tokenizer)} tokens but the model's "
            f"vocab_size is {config.vocab_size} (tokenizer from another model?)"
        )


def file_model_config(target: BenchTarget, task, tokenizer):
    """The HF config beside a model file, checked against its tokenizer and the task's label count.

    Raises:
        LadcError: a tokenizer bigger than the vocabulary, or a label count other than the task's.
    """
    from ladc.training.models import load_config

    config = load_config(target.model_dir)
    check_tokenizer(tokenizer, config, target)
    if config.num_labels != task.num_labels:
        raise LadcError(
            f"ONNX target {target.path}: {target.model_dir}/config.json has {config.num_labels} labels "
            f"but task {task.name} has {task.num_labels}"
        )
    return config
