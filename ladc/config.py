"""Config dataclasses for every command, YAML loading with validation, and saving into run dirs."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladc.errors import LadcError, did_you_mean

__all__ = [
    "DataConfig",
    "OptimConfig",
    "TuneTeacherConfig",
    "ExportConfig",
    "DistillConfig",
    "BenchConfig",
    "from_dict",
    "from_yaml_dict",
    "to_dict",
    "load_yaml",
    "save_yaml",
    "replace",
    "build_config",
    "dotted_keys",
    "load_saved_config",
    "check_resume",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are tokenized."""

    task: str = "sst2"
    # None -> the hub (`nyu-mll/glue`); a directory in the original GLUE TSV layout otherwise
    data_dir: str | None = None
    # generic CSV/JSONL files (override data_dir/hub for the splits given)
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    text_fields: tuple[str, ...] | None = None  # CSV/JSONL column names of the text(s)
    label_field: str = "label"
    max_seq_len: int = 128  # BERT fine-tuning default; dynamic padding pads only to the longest in a batch
    train_limit: int | None = None  # random subset of train (seeded), e.g. 8000 for quick CPU runs
    dev_limit: int | None = None  # first N dev examples; None = the full dev set
    cache_dir: str | None = None  # tokenized-dataset cache; None -> ~/.cache/ladc


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings shared by tune-teacher and distill."""

    lr: float = 2e-5  # BERT paper's fine-tuning range is 2e-5..5e-5
    batch_size: int = 32
    grad_accum: int = 1
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs when set
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_steps: int | None = None  # None -> evaluate once per epoch
    save_steps: int | None = None  # None -> checkpoint whenever we evaluate
    eval_batch_size: int = 64
    mixed_precision: str = "no"  # no | bf16 | fp16 (fp16 needs CUDA) | auto (bf16 where the CPU/GPU has it natively)
    group_by_length: bool = False  # batches of similar length waste less padding
    log_steps: int = 10
    num_workers: int = 0


@dataclass(frozen=True)
class TuneTeacherConfig:
    """`ladc tune-teacher`: fine-tune a BERT-style encoder on one GLUE task."""

    model: str = "bert-base-uncased"  # hub name, local HF dir, or the offline alias `minilm`
    output: str = "runs/teacher"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    overwrite: bool = False
    resume: bool = False


@dataclass(frozen=True)
class ExportConfig:
    """`ladc export --onnx`: ONNX artifacts of a fine-tuned classifier, each checked against PyTorch on dev data."""

    model: str = ""  # fine-tuned HF sequence-classifier dir (tune-teacher / distill output)
    output: str = "runs/onnx"
    task: str | None = None  # None -> the task recorded in MODEL/ladc.json
    data_dir: str | None = None  # None -> MODEL/ladc.json's data dir, else the hub
    cache_dir: str | None = None  # tokenized-dataset cache; None -> ~/.cache/ladc
    opset: int = 17  # >= 14 (SDPA attention); 17 is the first with a native LayerNormalization
    device: str = "cpu"  # cpu | cuda: where the export traces and fp32/fp16 graphs are checked
    optimize: bool = False  # + model_fused.onnx (onnxruntime transformer fusions)
    quantize: str | None = None  # 'dynamic' -> model_int8.onnx (+ model_fused_int8.onnx with optimize)
    fp16: bool = False  # + model_fp16.onnx: fused, fp16 weights, fp32 I/O; needs CUDA
    # int8 scale per output channel: per-tensor INT8 cost the MiniLM SST-2 teacher 2.6 points (96.2% agreement) and
    # failed parity; per-channel kept 98.4% agreement at the same speed (benchmarks/RESULTS.md)
    per_channel: bool = True
    exclude_nodes: tuple[str, ...] = ()  # node-name globs kept fp32 by quantization
    keep_head_fp32: bool = False  # keep pooler + classifier fp32 (adds their globs to exclude_nodes)
    parity_samples: int | None = None  # None = the full dev set
    parity_batch_size: int = 32  # dynamic padding per batch: batches have varied lengths
    allow_drop: float | None = None  # accept any artifact whose headline metric drops <= this many points
    # engines to build for (ladc.artifacts.BACKENDS): onnxruntime | openvino (ladc[openvino]) | torch (bf16 autocast)
    backends: tuple[str, ...] = ("onnxruntime",)
    # `fastest`: build every available backend x precision, drop parity failures, time the rest on this machine and
    # rank them in export.json (per batch size and sequence length); None: build what the flags ask, time nothing
    select: str | None = None
    calibration_samples: int = 300  # train examples for static INT8 calibration (OpenVINO/NNCF); NNCF's default
    select_iterations: int = 20  # timed runs per artifact and shape under --select (after 3 warm-up runs)
    threads: int | None = None  # intra-op threads when timing under --select; None -> physical cores
    overwrite: bool = False


@dataclass(frozen=True)
class DistillConfig:
    """`ladc distill`: LAD (or a baseline) from a fine-tuned teacher into a shallower student."""

    teacher: str = "runs/teacher"  # fine-tuned teacher run dir (HF sequence classifier)
    output: str = "runs/student"
    method: str = "lad"  # lad | pkd | kd | none
    student_layers: int | None = None  # None -> half the teacher's layers (12 -> 6, 6 -> 3)
    student_init: str = "even"  # even | first | teacher | random
    init_from: str | None = None  # pretrained checkpoint for even/first; None -> the teacher's base model
    preset: str | None = None  # `paper`: the LAD paper's per-task hyperparameters (see ladc.distill.PAPER_PRESETS)
    hard_weight: float = 0.5  # paper: hard_w = soft_w = 0.5
    soft_weight: float = 0.5
    temperature: float = 10.0  # paper: 10 (QNLI, MRPC, RTE), 20 (SST-2)
    mu: float = 1000.0  # LAD hidden-MSE weight; paper: 1000 (500 for MRPC)
    beta: float = 100.0  # PKD patient-loss weight (Sun et al. 2019 searched 10..1000)
    gate_lr: float = 1e-6  # paper: 1e-6 (QNLI, SST-2), 5e-6 MRPC, 3e-5 RTE
    reverse_gates: bool = False  # aggregate from the top teacher layer down
    teacher_device: str | None = None  # e.g. cuda:1; None -> the accelerator's device
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, epochs=4.0))  # paper's QNLI values
    overwrite: bool = False
    resume: bool = False


@dataclass(frozen=True)
class BenchConfig:
    """`ladc bench`: latency, throughput, accuracy and memory of model variants side by side."""

    targets: tuple[str, ...] = ()  # HF model dirs, .onnx files, `ladc export` dirs (every artifact in export.json)
    data: DataConfig = field(default_factory=DataConfig)  # task and dev set for accuracy and --real timing
    output: str | None = None  # None -> runs/bench-<task>
    batch_sizes: tuple[int, ...] = (1, 32)  # 1 = online latency, 32 = offline throughput
    seq_lens: tuple[int, ...] = (128,)  # fixed-length synthetic inputs; 128 = the fine-tuning max_seq_len
    real: bool = False  # also time real dev sentences with dynamic padding, per batch size
    warmup: int = 5  # untimed runs per target and shape (lazy init, arena growth)
    iterations: int | None = None  # timed runs per target and shape; None -> 30 unless min_duration_s is set
    min_duration_s: float | None = None  # time until every target has this many timed seconds per shape
    # isolated: one target at a time, after its own warm-up and a pause (a target's figure in a group equals its figure
    # alone); interleaved: round-robin blocks with non-spinning onnxruntime pools (drift hits all targets alike)
    isolation: str = "isolated"
    interleave_block: int = 5  # with isolation interleaved: iterations per target per round-robin turn
    threads: int | None = None  # None -> physical cores; torch threads and ORT intra_op_num_threads
    provider: str = "cpu"  # cpu | cuda
    tensorrt: bool = False  # with provider cuda: TensorrtExecutionProvider first
    torch_bf16: bool = False  # + a PyTorch bf16-autocast target per HF dir (AVX-512 BF16 CPUs, GPUs)
    ort_graph_optimization: str = "all"  # disable | basic | extended | all (onnxruntime's default)
    baseline: str | None = None  # target name or 0-based index; None -> the first target
    skip_accuracy: bool = False
    eval_batch_size: int = 64
    peak_gflops: float | None = None  # machine peak for the roofline fraction; never guessed
    roofline: bool = False  # measure this machine's fp32/bf16/int8 GEMM roofs at the model's shapes (roof_fraction)
    profile: bool = False  # per-op profile (onnxruntime profiler, OpenVINO perf counters) at batch 1, first seq len
    seed: int = 0  # synthetic token ids
    overwrite: bool = False


# ----------------------------------------------------------------------------- generic (de)serialisation


def _shown(value: Any, limit: int = 60) -> str:
    """repr of a user's value, clipped so an error message stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value against a dataclass field type; raise LadcError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except LadcError as exc:
                errors.append(str(exc))
        raise LadcError(errors[0] if errors else f"{where}: invalid value {_shown(value)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise LadcError(f"{where}: expected a list, got {_shown(value)}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise LadcError(f"{where}: expected a mapping of {tp.__name__} options, got {_shown(value)}")
        return from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise LadcError(f"{where}: expected true/false, got {_shown(value)}")
    if tp is int:
        if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
            return int(value)  # items of comma-separated CLI lists (`--batch-sizes 1,32`) arrive as strings
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise LadcError(f"{where}: expected an integer, got {_shown(value)}")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise LadcError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)  # YAML reads `1e-4` as a string; accept it
        except (TypeError, ValueError, OverflowError):
            raise LadcError(f"{where}: expected a number, got {_shown(value)}") from None
        if not math.isfinite(number):  # no option means anything at inf or nan; they only poison training
            raise LadcError(f"{where}: expected a finite number, got {_shown(value)}")
        return number
    if tp is str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise LadcError(f"{where}: expected a string, got {_shown(value)}")
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise LadcError(f"{where}: expected a mapping, got {_shown(value)}")
        return dict(value)
    return value


def from_dict(cls: type, values: dict, where: str = "config") -> Any:
    """Build dataclass `cls` from a (YAML) dict, rejecting unknown keys with a did-you-mean hint.

    Raises:
        LadcError: unknown key or a value of the wrong type, naming the dotted key path.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise LadcError(f"{where or 'config'}: expected a mapping, got {_shown(values)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            key_path = f"{where}.{key}" if where else str(key)
            error = LadcError(
                f"unknown key {_shown(key_path)}{did_you_mean(key, names)}; valid keys: {', '.join(sorted(names))}"
            )
            error.key = key_path
            raise error
        key_path = f"{where}.{key}" if where else key
        try:
            kwargs[key] = _coerce(value, hints[key], key_path)
        except LadcError as exc:
            exc.key = getattr(exc, "key", key_path)  # the innermost key: build_config finds its YAML line
            raise
    return cls(**kwargs)


def from_yaml_dict(cls: type, values: dict, yaml_path: str | Path | None) -> Any:
    """`from_dict(cls, values)` for a mapping read from `yaml_path`: an error names the file and the key's line."""
    try:
        return from_dict(cls, values, "")
    except LadcError as exc:
        if yaml_path is None:
            raise
        line = _yaml_line(Path(yaml_path), getattr(exc, "key", None))
        raise LadcError(f"config file {yaml_path}{line}: {exc}") from None


def _yaml_line(path: Path, key: str | None) -> str:
    """' line N' of dotted `key` in the YAML file (its deepest part that exists), or '' when it cannot be found."""
    import yaml

    if not key:
        return ""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8-sig"), Loader=yaml.SafeLoader)
    except (OSError, ValueError, yaml.YAMLError):
        return ""
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return f" line {line}" if line else ""


def to_dict(cfg: Any) -> dict:
    """Dataclass -> plain dict of YAML-safe values (tuples become lists)."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(cfg)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    import yaml

    from ladc.io import read_text

    path = Path(path)
    if not path.is_file():
        raise LadcError(f"config file {path} does not exist")
    text = read_text(path, "config file")  # UTF-8 only: a LadcError names the first other byte
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise LadcError(f"config file {path}{line}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LadcError(f"config file {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def save_yaml(cfg: Any, path: str | Path, header: str | None = None) -> None:
    """Write a dataclass (or dict) as YAML atomically."""
    import yaml

    from ladc.io import atomic_write_text

    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    text = yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(Path(path), (f"# {header}\n" if header else "") + text)


def replace(cfg: Any, overrides: dict) -> Any:
    """Apply non-None overrides, with dotted keys for nested dataclasses (`optim.lr`)."""
    nested: dict[str, dict] = {}
    flat = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:
            head, rest = key.split(".", 1)
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(cfg, head), sub)
    hints = typing.get_type_hints(type(cfg))
    checked = {k: (_coerce(v, hints[k], k) if not dataclasses.is_dataclass(v) else v) for k, v in flat.items()}
    return dataclasses.replace(cfg, **checked)


def build_config(cls: type, yaml_path: str | Path | None, overrides: dict) -> Any:
    """YAML file (if any) -> dataclass, then CLI overrides (None = not given) on top.

    Raises:
        LadcError: a bad YAML file, key or value; on --resume, an option that differs from the run's saved config.
    """
    raw = load_yaml(yaml_path) if yaml_path else {}
    cfg = replace(from_yaml_dict(cls, raw, yaml_path) if yaml_path else cls(), overrides)
    check_resume(cfg, [*dotted_keys(raw), *(key for key, value in overrides.items() if value is not None)])
    return cfg


def dotted_keys(values: dict, prefix: str = "") -> list[str]:
    """The leaf keys of a nested YAML mapping as dotted paths (`optim.lr`)."""
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        keys.extend(dotted_keys(value, f"{path}.") if isinstance(value, dict) else [path])
    return keys


_SAVED_CONFIG = "config.yaml"


def load_saved_config(cls: type, run_dir: str | Path) -> dict | None:
    """The config.yaml a training run saved in `run_dir` (None when there is none), checked to belong to `cls`.

    Raises:
        LadcError: the file is unreadable, or another command's config (e.g. a distill run given to tune-teacher).
    """
    path = Path(run_dir) / _SAVED_CONFIG
    if not path.is_file():
        return None
    saved = load_yaml(path)
    names = {f.name for f in dataclasses.fields(cls)}
    if not set(saved) <= names:
        commands = {"tune-teacher": TuneTeacherConfig, "distill": DistillConfig}
        other = next((c for c, k in commands.items() if set(saved) <= {f.name for f in dataclasses.fields(k)}), None)
        mine = next((c for c, k in commands.items() if k is cls), cls.__name__)
        if other is not None and other != mine:
            raise LadcError(
                f"{run_dir} is a `ladc {other}` run, not a `ladc {mine}` one; continue it with "
                f"`ladc {other} --resume --output {run_dir}`"
            )
        from_dict(cls, saved, "")  # names the first unknown key
    return saved


def check_resume(cfg: Any, given: list[str]) -> None:
    """On --resume the run continues with its saved config.yaml: refuse options given now that differ from it.

    `given` lists the dotted keys the user set (YAML and CLI flags); defaults are not compared, so repeating the
    original command with --resume, or `--resume --output DIR` alone, both continue the run.

    Raises:
        LadcError: naming each differing key with its saved and given values.
    """
    if not getattr(cfg, "resume", False):
        return
    saved = load_saved_config(type(cfg), cfg.output)
    if saved is None:
        return
    saved_cfg = from_dict(type(cfg), saved, "")
    differing = []
    for key in dict.fromkeys(given):
        if key.split(".")[0] in ("output", "resume", "overwrite"):
            continue
        now, before = _dotted_get(cfg, key), _dotted_get(saved_cfg, key)
        if now != before:
            differing.append(f"{key} (saved {_shown(before, 30)}, given {_shown(now, 30)})")
    if differing:
        raise LadcError(
            f"cannot resume {cfg.output}: it was started with other options: {', '.join(differing)}; drop them to "
            f"continue with its saved {_SAVED_CONFIG}, or pass --overwrite instead of --resume to start again"
        )


def _dotted_get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
