"""Config dataclasses for every command, YAML loading with validation, presets, and saving into run dirs.

A config is built in one place for every caller (`build_config` / `resolve_config`): the CLI, a YAML file given
with --config and the pipeline's sections all go through it, so a default or a preset applies the same way whatever
the entry point.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ladc.errors import LadcError
from ladc.runs.schema import dotted_get, dotted_keys, from_dict, replace, shown, to_dict

__all__ = [
    "DataConfig",
    "OptimConfig",
    "LossWeights",
    "check_optim",
    "SELECT_ON",
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
    "resolve_config",
    "with_preset",
    "dotted_keys",
    "dotted_get",
    "shown",
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
    train_limit: int | None = None  # rows trained on: a seeded subset of train outside the holdout, e.g. 8000 on CPU
    dev_limit: int | None = None  # first N dev examples; None = the full dev set
    cache_dir: str | None = None  # tokenized-dataset cache; None -> ~/.cache/ladc


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings shared by tune-teacher and distill."""

    # a number, or `auto`: chosen from the model's width and role by ladc.training.lr.auto_lr, recorded in ladc.json
    lr: float | Literal["auto"] = "auto"
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
    # which checkpoint is kept: `train-holdout` (a seeded slice of train, never trained on, picks it; dev is scored
    # once, at the end), `dev` (pick on dev, as papers do; the reported dev score is then optimistic), `last`
    select_on: str = "train-holdout"
    holdout_size: int | None = None  # train-holdout rows; None -> 10 % of the whole train split, 1 to 2,000
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
    output: str | None = None  # None -> ladc.runs.runs.default_output: runs/teacher
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    overwrite: bool = False
    resume: bool = False


@dataclass(frozen=True)
class ExportConfig:
    """`ladc export --onnx`: ONNX artifacts of a fine-tuned classifier, each checked against PyTorch on dev data."""

    model: str = ""  # fine-tuned HF sequence-classifier dir (tune-teacher / distill output)
    output: str | None = None  # None -> ladc.runs.runs.default_output: onnx-NAME beside the model dir
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
    allow_drop: float | None = None  # accept a headline-metric drop <= this many points (only the drop is relaxed)
    # engines to build for (ladc.engines.ENGINES): onnxruntime | openvino (ladc[openvino]) | torch (bf16 autocast)
    backends: tuple[str, ...] = ("onnxruntime",)
    # `fastest`: build every available backend x precision, drop parity failures, time the rest on this machine and
    # rank them in export.json (per batch size and sequence length); None: build what the flags ask, time nothing
    select: str | None = None
    calibration_samples: int = 300  # train examples for static INT8 calibration (OpenVINO/NNCF); NNCF's default
    select_iterations: int = 20  # timed runs per artifact and shape under --select, in interleaved rounds of 3
    threads: int | None = None  # intra-op threads when timing under --select; None -> physical cores
    overwrite: bool = False


@dataclass(frozen=True)
class LossWeights:
    """Weights of the distillation loss terms; defaults are the LAD reference's GLUE settings.

    Attributes:
        hard: weight of the label loss (reference --hard_weight 0.5).
        soft: weight of the soft-target loss (reference --soft_weight 0.5).
        temperature: softmax temperature tau of the soft targets (reference --softmax_temp 10; 20 for SST-2).
        mu: LAD hidden-MSE weight (reference --hidden_mse_weight: 1000 for QNLI/SST-2, 500 for MRPC).
        beta: BERT-PKD patient-loss weight (tuned per task by Sun et al. 2019; 100 is a mid-range start).
    """

    hard: float = 0.5
    soft: float = 0.5
    temperature: float = 10.0
    mu: float = 1000.0
    beta: float = 100.0

    def __post_init__(self):
        for name in ("hard", "soft", "mu", "beta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise LadcError(f"loss weight {name}={value!r} must be a finite number >= 0")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise LadcError(f"loss weight temperature={self.temperature!r} must be > 0")


@dataclass(frozen=True)
class DistillConfig:
    """`ladc distill`: LAD (or a baseline) from a fine-tuned teacher into a shallower student.

    The loss weights are `LossWeights` (`loss_weights`), kept as flat keys (`mu: 250`, `--mu`) because saved run
    configs, shipped YAML files and ladc.json already spell them that way; their defaults come from `LossWeights`.
    """

    teacher: str = "runs/teacher"  # fine-tuned teacher run dir (HF sequence classifier)
    output: str | None = None  # None -> ladc.runs.runs.default_output: runs/student
    method: str = "lad"  # a key of ladc.training.methods.METHODS: lad | pkd | kd | none
    student_layers: int | None = None  # None -> half the teacher's layers (12 -> 6, 6 -> 3)
    # the student's width (ladc.training.pruning.student_shape); None -> the teacher's hidden size
    student_hidden: int | None = None
    student_intermediate: int | None = None  # FFN size; None -> the teacher's FFN ratio at the student's width
    student_heads: int | None = None  # None -> the teacher's head size at the student's width (192 / 32 -> 6)
    # one of ladc.training.models.STUDENT_INITS: even | first | teacher | prune | random; None -> even at the teacher's width,
    # prune when the student is narrower (Minitron: slicing the teacher beats training the small shape from scratch)
    student_init: str | None = None
    prune_samples: int = 2048  # train examples whose teacher activations rank the channels, heads and neurons kept
    projection_lr: float = 1e-4  # learning rate of the student -> teacher width projection (narrower students only)
    # learned: TinyBERT's W_h, started at the kept channels; fixed: those channels alone, never trained (pruned only)
    projection: str = "learned"
    init_from: str | None = None  # pretrained checkpoint for even/first; None -> the teacher's base model
    preset: str | None = None  # `paper`: the LAD paper's per-task hyperparameters (ladc.data.tasks.PRESETS)
    hard_weight: float = LossWeights.hard
    soft_weight: float = LossWeights.soft
    temperature: float = LossWeights.temperature
    mu: float = LossWeights.mu
    beta: float = LossWeights.beta
    gate_lr: float = 1e-6  # paper: 1e-6 (QNLI, SST-2), 5e-6 MRPC, 3e-5 RTE
    reverse_gates: bool = False  # aggregate from the top teacher layer down
    # teacher layers the layer loss reads (ladc.training.methods.Method.layer_choices): pkd `skip` (default, PKD-Skip: 12->3
    # reads 4, 8) or `last` (PKD-Last: 10, 11, the PKD authors' 3-layer script); lad offers `skip`; None -> default
    layer_choice: str | None = None
    teacher_device: str | None = None  # e.g. cuda:1; None -> the accelerator's device
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=4.0))  # paper's QNLI epochs
    overwrite: bool = False
    resume: bool = False

    @property
    def loss_weights(self) -> LossWeights:
        """The weights as one checked record (LadcError for a negative weight or a temperature <= 0)."""
        return LossWeights(self.hard_weight, self.soft_weight, self.temperature, self.mu, self.beta)


@dataclass(frozen=True)
class BenchConfig:
    """`ladc bench`: latency, throughput, accuracy and memory of model variants side by side."""

    targets: tuple[str, ...] = ()  # HF model dirs, .onnx files, `ladc export` dirs (every artifact in export.json)
    data: DataConfig = field(default_factory=DataConfig)  # task and dev set for accuracy and --real timing
    output: str | None = None  # None -> ladc.runs.runs.default_output: runs/bench-<task>
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
    # time export-dir artifacts here even where their export's --select fastest timed the same shape (by default
    # those rows reuse the selection's latencies: same batch, length, threads and CPU model; no second timing)
    retime: bool = False
    overwrite: bool = False


# ----------------------------------------------------------------------------- generic (de)serialisation

# optimisation settings that must be > 0 when set (None = unset), and those that must be >= 0
_POSITIVE = (
    "batch_size", "grad_accum", "eval_batch_size", "log_steps", "max_steps", "eval_steps", "save_steps", "holdout_size",
)  # fmt: skip
SELECT_ON = ("train-holdout", "dev", "last")
_NON_NEGATIVE = ("weight_decay", "max_grad_norm", "num_workers", "warmup_steps")


def check_optim(optim: OptimConfig) -> None:
    """Raise LadcError for an optimisation setting out of range (before any model loads)."""
    from ladc.training.lr import parse_lr

    parse_lr(optim.lr)
    for name in _POSITIVE:
        value = getattr(optim, name)
        if value is not None and value <= 0:
            raise LadcError(f"{name} must be positive, got {value}")
    for name in _NON_NEGATIVE:
        value = getattr(optim, name)
        if value is not None and value < 0:
            raise LadcError(f"{name} must be >= 0, got {value}")
    if not 0 <= optim.seed < 2**32:  # numpy's and the data order's seeding take 32-bit unsigned seeds
        raise LadcError(f"seed must be in [0, 2**32), got {optim.seed}")
    if optim.max_steps is None and optim.epochs <= 0:
        raise LadcError(f"epochs must be positive, got {optim.epochs}")
    if not 0 <= optim.warmup_ratio < 1:
        raise LadcError(f"warmup_ratio must be in [0, 1), got {optim.warmup_ratio}")
    if optim.mixed_precision not in ("no", "bf16", "fp16", "auto"):
        raise LadcError(f"mixed_precision '{optim.mixed_precision}' is not one of: no, bf16, fp16, auto")
    if optim.select_on not in SELECT_ON:
        raise LadcError(f"select_on '{optim.select_on}' is not one of: {', '.join(SELECT_ON)}")
    if optim.holdout_size is not None and optim.select_on != "train-holdout":
        raise LadcError(f"holdout_size is set but select_on is '{optim.select_on}'; it needs select_on train-holdout")


# ----------------------------------------------------------------------------- YAML


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


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    import yaml

    from ladc.runs.io import read_text

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

    from ladc.runs.io import atomic_write_text

    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    text = yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(Path(path), (f"# {header}\n" if header else "") + text)


# ----------------------------------------------------------------------------- building a config


def with_preset(values: dict, task: str) -> dict:
    """`values` (a distill config mapping) with its `preset` filled in underneath: the preset sets only what the
    mapping leaves unset. Unchanged when no preset is named.

    Raises:
        LadcError: an unknown preset.
    """
    from ladc.data.tasks import preset_values

    if not values.get("preset"):
        return values
    return _merge(preset_values(values["preset"], task), values)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_config(cls: type, raw: dict, overrides: dict, yaml_path: str | Path | None = None) -> Any:
    """defaults < preset < YAML (`raw`) < CLI flags (`overrides`, dotted keys, None = not given).

    The one place a config is decided: the CLI, --config files and the pipeline's sections all come through here.

    Raises:
        LadcError: a bad key or value, naming the YAML file and line when there is one.
    """
    # fields without a default (evaluate's model dir) come from the command line: seed them so the class builds
    required = [f.name for f in dataclasses.fields(cls) if f.default is f.default_factory is dataclasses.MISSING]
    raw = {**{name: overrides[name] for name in required if overrides.get(name) is not None}, **raw}
    cfg = from_yaml_dict(cls, raw, yaml_path)  # keys and types checked before a preset is looked up
    preset = overrides.get("preset") or getattr(cfg, "preset", None)
    if preset:
        task = overrides.get("data.task") or cfg.data.task
        try:
            values = with_preset({**raw, "preset": preset}, task)
        except LadcError as exc:
            if yaml_path is None or overrides.get("preset"):
                raise
            raise LadcError(f"config file {yaml_path}{_yaml_line(Path(yaml_path), 'preset')}: {exc}") from None
        cfg = from_yaml_dict(cls, values, yaml_path)
    return replace(cfg, overrides)


def build_config(cls: type, yaml_path: str | Path | None, overrides: dict, raw: dict | None = None) -> Any:
    """`resolve_config` of the YAML file at `yaml_path` (if any; `raw` when the caller already read it)."""
    if raw is None:
        raw = load_yaml(yaml_path) if yaml_path else {}
    return resolve_config(cls, raw, overrides, yaml_path)
