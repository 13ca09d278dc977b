"""Config dataclasses for every command: each field is one knob, with its default, CLI help and check
(ladc/runs/knobs.py); the CLI's options are made from them (ladc/cli_options.py).

Configs are built in one place for every caller (ladc/runs/resolve.py, re-exported here): the CLI, a YAML file given
with --config and the pipeline's sections all go through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ladc.errors import LadcError
from ladc.runs.knobs import Check, at_least, check_config, knob, one_of, positive
from ladc.runs.resolve import build_config, from_yaml_dict, load_yaml, resolve_config, save_yaml, with_preset
from ladc.runs.schema import dotted_get, dotted_keys, from_dict, replace, shown, to_dict

__all__ = [
    "AUTO", "parse_lr", "EVAL_BATCH_SIZE", "DEFAULT_ITERATIONS", "SELECT_ON", "MIN_OPSET", "MAX_OPSET",
    "DataConfig", "OptimConfig", "LossWeights", "TuneTeacherConfig", "DistillConfig", "EvaluateConfig", "ExportConfig",
    "BenchConfig", "check_config", "from_dict", "from_yaml_dict", "to_dict", "load_yaml", "save_yaml", "replace",
    "build_config", "resolve_config", "with_preset", "dotted_keys", "dotted_get", "shown",
]  # fmt: skip

AUTO = "auto"  # `--lr auto`: ladc.training.lr.auto_lr picks the rate from the model's width and role
EVAL_BATCH_SIZE = 64  # every dev-set pass (training's evaluation, `ladc evaluate`, bench's accuracy pass)
DEFAULT_ITERATIONS = 30  # bench's timed runs per target and shape when neither --iterations nor --min-duration is set
SELECT_ON = ("train-holdout", "dev", "last")
MIN_OPSET = 14  # torch exports scaled_dot_product_attention (BERT's default SDPA attention) from opset 14 on
MAX_OPSET = 20  # the TorchScript exporter optimum-onnx uses stops at 20
_OPSET = 17  # the first opset with a native LayerNormalization


def parse_lr(value: float | str | None) -> float | str | None:
    """A user's --lr / YAML `lr:`: a positive number, or `auto` (None passes through: not given).

    Raises:
        LadcError: anything else, naming the value.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LadcError(
            f"lr {value!r} is not a learning rate; expected a positive number such as 1e-4, or auto"
        ) from None
    if not (number > 0 and number < float("inf")):
        raise LadcError(f"lr must be positive, got {number!r}; pass a number such as 1e-4, or auto")
    return number


def _problem(key: str, message: str) -> LadcError:
    """A cross-field check's error, blaming the field `key` (a YAML error then names its line)."""
    error = LadcError(message)
    error.key = key
    return error


_GLUE_DIR = "Directory in the GLUE TSV layout (DIR/SST-2/train.tsv)."
_NON_NEGATIVE = "{name} must be >= 0, got {value}"


# knobs read as a table, one or two lines each (ruff would spread each over five)
# fmt: off
@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are tokenized."""

    task: str = knob("sst2", "GLUE task (sst2, qnli, ...).")
    data_dir: str | None = knob(None, _GLUE_DIR, unset="the hub (nyu-mll/glue)", path=True)
    # generic CSV/JSONL files (override data_dir/hub for the splits given)
    train_file: str | None = knob(None, "Generic CSV/JSONL train file.")
    dev_file: str | None = knob(None, "Generic CSV/JSONL dev file.")
    test_file: str | None = knob(None, "Generic CSV/JSONL test file.")
    text_fields: tuple[str, ...] | None = knob(None, "Comma-separated text columns of CSV/JSONL files.")
    label_field: str = knob("label", "Label column of CSV/JSONL files.")
    # BERT fine-tuning's length; dynamic padding pads only to the longest in a batch
    max_seq_len: int = knob(128, "Max tokens per example.")
    # e.g. 8000 on CPU; drawn outside the selection holdout
    train_limit: int | None = knob(None, "Rows trained on: a seeded subset of train.", unset="all of train")
    dev_limit: int | None = knob(None, "First N dev examples.", unset="the full dev set")
    cache_dir: str | None = knob(None, "Tokenized-dataset cache.", unset="~/.cache/ladc")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings shared by tune-teacher and distill."""

    lr: float | Literal["auto"] = knob(AUTO, "Peak learning rate: a number, or auto (from the model's width and role, "
                                       "ladc/training/lr.py; recorded in ladc.json).", check=parse_lr)
    batch_size: int = knob(32, "Per-device batch size.", check=positive())
    grad_accum: int = knob(1, "Gradient accumulation steps.", check=positive())
    epochs: float = knob(3.0, "Epochs.")
    max_steps: int | None = knob(None, "Optimizer steps; overrides --epochs.", check=positive())
    warmup_ratio: float = knob(0.1, "Warm-up fraction of steps.",
                               check=Check(lambda ratio: 0 <= ratio < 1, "{name} must be in [0, 1), got {value}"))
    warmup_steps: int | None = knob(None, "Warm-up steps; overrides --warmup-ratio.", check=at_least(0, _NON_NEGATIVE))
    weight_decay: float = knob(0.01, "AdamW weight decay.", check=at_least(0, _NON_NEGATIVE))
    max_grad_norm: float = knob(1.0, "Gradient clipping norm.", check=at_least(0, _NON_NEGATIVE))
    # numpy's and the data order's seeding take 32-bit unsigned seeds
    seed: int = knob(42, "Random seed.", check=Check(lambda seed: 0 <= seed < 2**32,
                                                     "seed must be in [0, 2**32), got {value}"))
    eval_steps: int | None = knob(None, "Evaluate every N steps.", unset="each epoch", check=positive())
    # train-holdout: a seeded slice of train, never trained on, picks the checkpoint and dev is scored once, at the
    # end; dev: as papers do (the reported dev score is then optimistic); last: the last checkpoint
    select_on: str = knob("train-holdout", "Checkpoint kept: train-holdout (dev scored once at the end) | dev | last.",
                          check=one_of(SELECT_ON))
    holdout_size: int | None = knob(None, "Train rows held out to pick the checkpoint.",
                                    unset="10 % of the train split, 1 to 2,000", check=positive())
    save_steps: int | None = knob(None, "Checkpoint every N steps.", unset="at each evaluation", check=positive())
    eval_batch_size: int = knob(EVAL_BATCH_SIZE, "Batch size of dev-set evaluation.", check=positive())
    mixed_precision: str = knob("no", "no | bf16 (CPU AVX-512 BF16/AMX or GPU) | fp16 (GPU) | auto (bf16 where "
                                "native, else no).", check=one_of(("no", "bf16", "fp16", "auto")))
    group_by_length: bool = knob(False, "Batch examples of similar length (less padding).",
                                 flag="--group-by-length/--no-group-by-length")
    log_steps: int = knob(10, "Log every N steps.", check=positive())
    num_workers: int = knob(0, "DataLoader worker processes.", check=at_least(0, _NON_NEGATIVE))

    def check(self) -> None:
        """The rules between fields (ladc.runs.knobs.check_config runs them after each field's own)."""
        if self.max_steps is None and self.epochs <= 0:
            raise _problem("epochs", f"epochs must be positive, got {self.epochs}")
        if self.holdout_size is not None and self.select_on != "train-holdout":
            raise _problem("holdout_size", f"holdout_size is set but select_on is '{self.select_on}'; it needs "
                                           "select_on train-holdout")


_OVERWRITE = "Replace an existing output directory."
_RESUME = "Continue an interrupted run from its last checkpoint."


@dataclass(frozen=True)
class TuneTeacherConfig:
    """`ladc tune-teacher`: fine-tune a BERT-style encoder on one GLUE task."""

    model: str = knob("bert-base-uncased", "Hub name, HF model dir, or `minilm` (offline).")
    output: str | None = knob(None, "Run dir (HF model dir + metrics.json).", short="-o")
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    overwrite: bool = knob(False, _OVERWRITE)
    resume: bool = knob(False, _RESUME)


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


_AT_LEAST_1 = at_least(1)


@dataclass(frozen=True)
class DistillConfig:
    """`ladc distill`: LAD (or a baseline) from a fine-tuned teacher into a shallower student.

    The loss weights are `LossWeights` (`loss_weights`), kept as flat keys (`mu: 250`, `--mu`) because saved run
    configs, shipped YAML files and ladc.json already spell them that way; their defaults come from `LossWeights`,
    which checks them.
    """

    teacher: str = knob("runs/teacher", "Fine-tuned teacher run dir.")
    output: str | None = knob(None, "Student run dir.", short="-o")
    # a key of ladc.training.methods.METHODS, checked there by `ladc distill`
    method: str = knob("lad", "lad | pkd | kd | none.")
    student_layers: int | None = knob(None, "Student depth.", unset="half the teacher's", check=_AT_LEAST_1)
    # the student's width (ladc.training.pruning.student_shape fills in what is left unset)
    student_hidden: int | None = knob(None, "Student hidden size; narrower -> pruned from the teacher.",
                                      unset="the teacher's", check=_AT_LEAST_1)
    student_intermediate: int | None = knob(None, "Student FFN size.", unset="the teacher's FFN ratio at the "
                                            "student's width", check=_AT_LEAST_1)
    student_heads: int | None = knob(None, "Student attention heads.", unset="the teacher's head size at the "
                                     "student's width", check=_AT_LEAST_1)
    # one of ladc.training.models.STUDENT_INITS, checked there. Both defaults start from the fine-tuned teacher: its
    # own layers at its width (from the pretrained layers, `even`, a pair-task student stayed at chance for an
    # epoch), a slice of it when narrower (Minitron: slicing beats training the small shape from scratch)
    student_init: str | None = knob(None, "teacher | even | first | prune | random.",
                                    unset="teacher (its fine-tuned layers); even with --init-from; prune when narrower")
    prune_samples: int = knob(2048, "Train rows whose teacher activations rank what a pruned student keeps.",
                              check=_AT_LEAST_1)
    projection_lr: float = knob(1e-4, "Learning rate of the student -> teacher width projection (narrower students).",
                                check=positive())
    # learned: TinyBERT's W_h, started at the kept channels; fixed: those channels alone, never trained (pruned only)
    projection: str = knob("learned", "learned: TinyBERT's W_h | fixed: compare the kept teacher channels only.",
                           check=one_of(("learned", "fixed"), "{flag} '{value}' is unknown; expected learned or fixed"))
    init_from: str | None = knob(None, "Pretrained checkpoint for even/first init.", unset="the teacher's base model")
    preset: str | None = knob(None, "`paper`: the LAD paper's per-task hyperparameters (ladc/data/tasks.py).")
    hard_weight: float = knob(LossWeights.hard, "Weight of the label loss.")
    soft_weight: float = knob(LossWeights.soft, "Weight of the soft-label KL.")
    temperature: float = knob(LossWeights.temperature, "Soft-label temperature tau.")
    mu: float = knob(LossWeights.mu, "LAD hidden-MSE weight.")
    beta: float = knob(LossWeights.beta, "PKD patient-loss weight.")
    # paper: 1e-6 (QNLI, SST-2), 5e-6 MRPC, 3e-5 RTE
    gate_lr: float = knob(1e-6, "Learning rate of the highway gates.", check=positive())
    reverse_gates: bool = knob(False, "Aggregate from the top teacher layer down.",
                               flag="--reverse-gates/--forward-gates")
    # ladc.training.methods.Method.layer_choices: pkd `skip` (PKD-Skip: 12->3 reads 4, 8) or `last` (PKD-Last: 10,
    # 11, the PKD authors' 3-layer script); lad offers `skip`
    layer_choice: str | None = knob(None, "Teacher layers of the layer loss: skip | last (pkd: PKD-Last).",
                                    unset="the method's (skip)")
    teacher_device: str | None = knob(None, "Device for the frozen teacher, e.g. cuda:1.",
                                      unset="the accelerator's device")
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=4.0))  # the paper's QNLI epochs
    overwrite: bool = knob(False, _OVERWRITE)
    resume: bool = knob(False, _RESUME)

    @property
    def loss_weights(self) -> LossWeights:
        """The weights as one checked record (LadcError for a negative weight or a temperature <= 0)."""
        return LossWeights(self.hard_weight, self.soft_weight, self.temperature, self.mu, self.beta)


_RECORDED_TASK = "the task in MODEL_DIR/ladc.json"


@dataclass(frozen=True)
class EvaluateConfig:
    """`ladc evaluate`: a model dir's task metrics on dev, and GLUE-submission TSVs for test predictions."""

    model_dir: str = knob(help="HF sequence-classifier dir (teacher or student).")
    task: str | None = knob(None, "GLUE task.", unset=_RECORDED_TASK)
    data_dir: str | None = knob(None, _GLUE_DIR, unset="MODEL_DIR/ladc.json's, else the hub", path=True)
    split: str = knob("dev", "dev, or a dev split name such as validation_mismatched.")
    predict: str | None = knob(None, "`test`: write GLUE-submission TSVs.",
                               check=one_of(("test",), "{flag} '{value}' is not supported; expected 'test'"))
    output: str | None = knob(None, "Metrics JSON path.", unset="MODEL_DIR/eval-SPLIT.json", short="-o")
    batch_size: int = knob(EVAL_BATCH_SIZE, "Evaluation batch size.", check=positive("{flag} must be positive, got "
                                                                                      "{value}"))
    dev_limit: int | None = knob(None, "First N dev examples.", unset="the full dev set")
    max_seq_len: int | None = knob(None, "Max tokens per example.", unset="the model's training length")


_PAIRS = "{flag} {value}: need ints >= "
_AT_LEAST_1_WORDS = at_least(1, "{flag} must be >= 1, got {value}")


@dataclass(frozen=True)
class ExportConfig:
    """`ladc export`: ONNX (and OpenVINO, PyTorch bf16) artifacts of a fine-tuned classifier, each checked against
    PyTorch on dev data."""

    model: str = knob("", "Fine-tuned HF sequence-classifier dir (teacher or student).")
    output: str | None = knob(None, "Export dir.", unset="onnx-NAME beside MODEL_DIR", short="-o")
    task: str | None = knob(None, "GLUE task.", unset=_RECORDED_TASK)
    data_dir: str | None = knob(None, _GLUE_DIR, unset="MODEL_DIR/ladc.json's, else the hub", path=True)
    cache_dir: str | None = knob(None, "Tokenized-dataset cache.", unset="~/.cache/ladc")
    # >= 14 for SDPA attention; 17 is the first opset with a native LayerNormalization
    opset: int = knob(_OPSET, "ONNX opset.", check=Check(
        lambda opset: MIN_OPSET <= opset <= MAX_OPSET,
        f"{{flag}} {{value}} is not supported: BERT's SDPA attention exports from opset {MIN_OPSET} and torch's "
        f"TorchScript exporter stops at {MAX_OPSET}; use {MIN_OPSET}..{MAX_OPSET} (default {_OPSET})"))
    device: str = knob("cpu", "cpu | cuda: export device and fp32/fp16 check device.",
                       check=one_of(("cpu", "cuda"), "{flag} '{value}' is not supported; expected cpu or cuda"))
    optimize: bool = knob(False, "Add model_fused.onnx (onnxruntime fusions).")
    quantize: str | None = knob(None, "`dynamic`: add model_int8.onnx (+ model_fused_int8.onnx with --optimize).",
                                check=one_of(("dynamic",), "{flag} '{value}' is not supported; expected 'dynamic' "
                                             "(static needs calibration)"))
    fp16: bool = knob(False, "Add model_fp16.onnx (fused, fp16 weights, fp32 I/O; needs CUDA).")
    # per-tensor INT8 cost the MiniLM SST-2 teacher 2.6 points (96.2% agreement) and failed parity; per-channel kept
    # 98.4% agreement at the same speed (benchmarks/RESULTS.md)
    per_channel: bool = knob(True, "INT8 scale granularity.", flag="--per-channel/--per-tensor")
    exclude_nodes: tuple[str, ...] = knob((), "Node-name glob kept fp32 by quantization (repeatable, or a,b).",
                                          repeatable=True)
    keep_head_fp32: bool = knob(False, "Keep pooler + classifier fp32.")
    parity_samples: int | None = knob(None, "Cap on dev examples of the parity check.", unset="the full dev set",
                                      check=positive("{flag} must be positive, got {value}"))
    parity_batch_size: int = knob(32, "Parity-check batch size (dynamic padding: batches of varied lengths).",
                                  check=positive())
    allow_drop: float | None = knob(None,
                                    "Accept a headline-metric drop <= this many points (other checks still apply).",
                                    check=at_least(0, "{flag} must be >= 0 metric points, got {value}"))
    # the engines (ladc.deploy.artifacts.BACKENDS) are checked by ladc.deploy.export, which owns their list
    backends: tuple[str, ...] = knob(("onnxruntime",), "Engines, a,b: onnxruntime, openvino, torch.", flag="--backend")
    # fastest: build every available backend x precision, drop parity failures, time the rest here and rank them in
    # export.json (per batch size and sequence length); None: build what the flags ask, time nothing
    select: str | None = knob(None, "`fastest`: build all, drop parity failures, rank by speed.",
                              check=one_of(("fastest",), "{flag} '{value}' is not supported; expected 'fastest'"))
    # NNCF's default
    calibration_samples: int = knob(300, "Train examples for OpenVINO/NNCF INT8 calibration.", check=_AT_LEAST_1_WORDS)
    select_iterations: int = knob(20, "Timed runs per artifact and shape under --select (interleaved rounds of 3).",
                                  check=_AT_LEAST_1_WORDS)
    threads: int | None = knob(None, "Threads when timing under --select.", unset="physical cores",
                               check=_AT_LEAST_1_WORDS)
    overwrite: bool = knob(False, _OVERWRITE)


@dataclass(frozen=True)
class BenchConfig:
    """`ladc bench`: latency, throughput, accuracy and memory of model variants side by side."""

    targets: tuple[str, ...] = knob((), "HF model dirs, .onnx/.xml files, `ladc export` dirs (all artifacts), "
                                    "openvino:FILE.onnx.")
    data: DataConfig = field(default_factory=DataConfig)  # task and dev set for accuracy and --real timing
    output: str | None = knob(None, "Report dir.", unset="runs/bench-TASK", short="-o")
    # 1 = online latency, 32 = offline throughput
    batch_sizes: tuple[int, ...] = knob((1, 32), "Comma-separated batch sizes.",
                                        check=Check(lambda sizes: bool(sizes) and min(sizes) >= 1, _PAIRS + "1"))
    # fixed-length synthetic inputs; 128 = the fine-tuning max_seq_len
    seq_lens: tuple[int, ...] = knob((128,), "Comma-separated synthetic lengths.",
                                     check=Check(lambda lengths: bool(lengths) and min(lengths) >= 2, _PAIRS + "2"))
    real: bool = knob(False, "Also time dev sentences with dynamic padding.")
    # lazy init, arena growth
    warmup: int = knob(5, "Untimed runs per target and shape.", check=at_least(0, _NON_NEGATIVE))
    iterations: int | None = knob(None, "Timed runs per target and shape.",
                                  check=at_least(1, "{flag} {value}: need >= 1"),
                                  unset=f"{DEFAULT_ITERATIONS} unless --min-duration is set")
    min_duration_s: float | None = knob(None, "Time each target at least this many s per shape.", flag="--min-duration",
                                        check=Check(lambda s: s > 0, "{flag} {value}: need > 0"))
    # isolated: one target at a time, after its own warm-up and a pause (a target's figure in a group equals its figure
    # alone); interleaved: round-robin blocks with non-spinning onnxruntime pools (drift hits all targets alike);
    # checked against ladc.measure.ISOLATION_MODES by bench
    isolation: str = knob("isolated", "isolated (one target at a time) | interleaved (round-robin).")
    interleave_block: int = knob(5, "With isolation interleaved: iterations per target per round-robin turn.",
                                 check=at_least(1, "{name} must be >= 1, got {value}"))
    threads: int | None = knob(None, "Intra-op threads (torch and onnxruntime).", unset="physical cores",
                               check=at_least(1, "{flag} {value}: need >= 1"))
    provider: str = knob("cpu", "cpu | cuda (onnxruntime provider, torch device).", check=one_of(("cpu", "cuda"),
                         "{flag} '{value}' is not one of: {choices}"))
    tensorrt: bool = knob(False, "With --provider cuda: TensorRT EP first.")
    torch_bf16: bool = knob(False, "Add PyTorch bf16-autocast targets (AVX-512 BF16 CPUs, GPUs).")
    # onnxruntime's default is all; checked against ladc.deploy.runners.ORT_GRAPH_LEVELS by bench
    ort_graph_optimization: str = knob("all", "onnxruntime graph optimisation: disable|basic|extended|all.",
                                       flag="--ort-opt-level")
    baseline: str | None = knob(None, "Speed-up reference: target name or 0-based index.", unset="the first target")
    skip_accuracy: bool = knob(False, "Time only; no dev-set metric.")
    eval_batch_size: int = knob(EVAL_BATCH_SIZE, "Batch size of the accuracy pass.", check=positive())
    peak_gflops: float | None = knob(None, "Machine peak GFLOP/s for the roofline fraction (never guessed).")
    roofline: bool = knob(False, "Measure fp32/bf16/int8 GEMM roofs here; report each target's share.")
    profile: bool = knob(False, "Per-op profile (onnxruntime, OpenVINO) of each target at batch 1.")
    seed: int = knob(0, "Seed of the synthetic token ids.")
    # by default export-dir rows reuse their --select fastest latencies (same batch, length, threads and CPU model)
    retime: bool = knob(False, "Time export artifacts here, not reusing their --select fastest timings.")
    overwrite: bool = knob(False, _OVERWRITE)

    def check(self) -> None:
        if self.tensorrt and self.provider != "cuda":
            raise _problem("tensorrt", "--tensorrt needs --provider cuda")


# fmt: on
