"""The `ladc` Typer app: parse options, build a config dataclass, call one library function. No logic here."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from ladc.cli_use import register_use_commands
from ladc.errors import LadcError
from ladc.runs.config import BenchConfig, DistillConfig, ExportConfig, TuneTeacherConfig

__all__ = ["app", "main"]

app = typer.Typer(
    name="ladc",
    help="Layer-wise Adaptive Distillation for BERT classifiers: tune a teacher, distil, export to ONNX, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# ----------------------------------------------------------------------------- options several commands share
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory in the GLUE TSV layout (DIR/SST-2/train.tsv). Default: the hub."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config; CLI flags override its values.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]


def user_errors(command: Callable) -> Callable:
    """Decorator for every command: a LadcError becomes one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LadcError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo(
                "interrupted; nothing half-written was kept: rerun the command (training: add --resume)", err=True
            )
            raise typer.Exit(130) from None

    return wrapper


@dataclass(frozen=True)
class Opt:
    """One CLI option that sets the config value at dotted `key`; `{default}` in the help shows the command's default."""

    key: str
    kind: type
    help: str
    decls: tuple[str, ...] = ()

    @property
    def name(self) -> str:  # the parameter, hence the flag: optim.batch_size -> --batch-size
        return self.key.rsplit(".", 1)[-1]


# the data and optimisation options of tune-teacher and distill, declared once for both
TRAINING_OPTIONS = (
    Opt("data.task", str, "GLUE task (sst2, qnli, ...).", ("--task",)),
    Opt("data.data_dir", Path, "Directory in the GLUE TSV layout (DIR/SST-2/train.tsv). Default: the hub.", ("--data-dir",)),
    Opt("data.train_file", str, "Generic CSV/JSONL train file."),
    Opt("data.dev_file", str, "Generic CSV/JSONL dev file."),
    Opt("data.text_fields", str, "Comma-separated text columns of CSV/JSONL files."),
    Opt("data.label_field", str, "Label column of CSV/JSONL files."),
    Opt("data.max_seq_len", int, "Max tokens per example (default {default})."),
    Opt("data.train_limit", int, "Rows trained on: a seeded subset of train, drawn outside the selection holdout."),
    Opt("data.dev_limit", int, "First N dev examples."),
    Opt("optim.lr", str, "Peak learning rate: a number, or auto (default: from the model's width, see ladc/training/lr.py)."),
    Opt("optim.batch_size", int, "Per-device batch size (default {default})."),
    Opt("optim.grad_accum", int, "Gradient accumulation steps."),
    Opt("optim.epochs", float, "Epochs (default {default:g})."),
    Opt("optim.max_steps", int, "Optimizer steps; overrides --epochs."),
    Opt("optim.warmup_ratio", float, "Warm-up fraction of steps (default {default:g})."),
    Opt("optim.warmup_steps", int, "Warm-up steps; overrides --warmup-ratio."),
    Opt("optim.eval_steps", int, "Evaluate every N steps (default: each epoch)."),
    Opt("optim.select_on", str, "Checkpoint kept: train-holdout (default; dev scored once at the end) | dev | last."),
    Opt("optim.holdout_size", int, "Train rows held out to pick the checkpoint (default 10 %, at most 2000)."),
    Opt("optim.save_steps", int, "Checkpoint every N steps (default: at each eval)."),
    Opt("optim.seed", int, "Random seed (default {default})."),
    Opt("optim.mixed_precision", str, "no | bf16 (CPU AVX-512 BF16/AMX or GPU) | fp16 (GPU) | auto (bf16 where native, "
        "else no).", ("--mixed-precision",)),
    Opt("optim.group_by_length", bool, "Batch examples of similar length.", ("--group-by-length/--no-group-by-length",)),
)  # fmt: skip

# distill's loss weights; their defaults are ladc.runs.config.LossWeights'
LOSS_OPTIONS = (
    Opt("hard_weight", float, "Weight of the label loss (default {default:g})."),
    Opt("soft_weight", float, "Weight of the soft-label KL (default {default:g})."),
    Opt("temperature", float, "Soft-label temperature tau (default {default:g})."),
    Opt("mu", float, "LAD hidden-MSE weight (default {default:g})."),
    Opt("beta", float, "PKD patient-loss weight (default {default:g})."),
    Opt("gate_lr", float, "Learning rate of the highway gates (default {default:g})."),
)

# the student's shape beside --student-layers (ladc.training.pruning.student_shape fills what is left unset)
SHAPE_OPTIONS = (
    Opt("student_hidden", int, "Student hidden size (default: the teacher's; narrower -> pruned from the teacher)."),
    Opt("student_intermediate", int, "Student FFN size (default: the teacher's FFN ratio at the student's width)."),
    Opt("student_heads", int, "Student attention heads (default: the teacher's head size at the student's width)."),
    Opt("prune_samples", int, "Train rows whose teacher activations rank what a pruned student keeps "
        "(default {default})."),
    Opt("projection_lr", float, "Learning rate of the student -> teacher width projection (default {default:g})."),
    Opt("projection", str, "learned (default): TinyBERT's W_h | fixed: compare the kept teacher channels only."),
)  # fmt: skip


def with_options(cfg_cls: type, options: tuple[Opt, ...]) -> Callable:
    """Add `options` to a command's signature; the command receives their values as `overrides` (dotted keys)."""
    from ladc.runs.config import dotted_get

    defaults = cfg_cls()

    def decorate(command: Callable) -> Callable:
        def parameter(opt: Opt) -> inspect.Parameter:
            text = opt.help.format(default=dotted_get(defaults, opt.key))
            annotation = Annotated[opt.kind | None, typer.Option(*opt.decls, help=text)]
            return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)

        @functools.wraps(command)
        def wrapper(**kwargs):
            overrides = {opt.key: kwargs.pop(opt.name) for opt in options}
            return command(**kwargs, overrides=overrides)

        own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "overrides"]
        wrapper.__signature__ = inspect.Signature([*own, *map(parameter, options)])
        return wrapper

    return decorate


def _report(message: str) -> None:
    """A training command's closing line, once: under torchrun / `accelerate launch` only the main process says it."""
    from ladc.runs.runlock import launcher_rank

    if launcher_rank() == 0:
        typer.echo(message)


@app.command("tune-teacher")
@user_errors
@with_options(TuneTeacherConfig, TRAINING_OPTIONS)
def tune_teacher_cmd(
    model: Annotated[str | None, typer.Option("--model", help="Hub name, HF model dir, or `minilm` (offline).")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Run dir (HF model dir + metrics.json).")] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    *,
    overrides: dict,
) -> None:
    """Fine-tune a BERT teacher on a GLUE task.

    Example: ladc tune-teacher --task sst2 --model minilm --data-dir ../shared/glue --train-limit 8000 --epochs 2
    --output runs/teacher-sst2
    """
    from ladc.commands.teacher import tune_teacher
    from ladc.runs.runs import build_run_config

    given = {"model": model, "output": output, "overwrite": overwrite or None, "resume": resume or None}
    cfg = build_run_config(TuneTeacherConfig, config, {**given, **overrides})
    metrics = tune_teacher(cfg)
    _report(f"teacher written to {cfg.output}: dev {metrics['dev']} (best step {metrics['best_step']})")


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    model_dir: Annotated[str, typer.Argument(help="HF sequence-classifier dir (teacher or student).")],
    task: Annotated[str | None, typer.Option("--task", help="Default: the task in MODEL_DIR/ladc.json.")] = None,
    data_dir: DataDirOpt = None,
    split: Annotated[str | None, typer.Option(help="dev, or a dev split name such as validation_mismatched.")] = None,
    predict: Annotated[str | None, typer.Option(help="`test`: write GLUE-submission TSVs.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Metrics JSON path.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Evaluation batch size (default 64).")] = None,
    dev_limit: Annotated[int | None, typer.Option(help="First N dev examples.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print a model's task metrics on dev and write them as JSON.

    Example: ladc evaluate runs/teacher-sst2 --task sst2 --data-dir ../shared/glue
    """
    from ladc.commands.evaluate import EvaluateConfig, run_evaluate
    from ladc.runs.runs import build_run_config

    overrides = {
        "model_dir": model_dir, "task": task, "data_dir": data_dir, "split": split, "predict": predict,
        "output": output, "batch_size": batch_size, "dev_limit": dev_limit,
    }  # fmt: skip
    result = run_evaluate(build_run_config(EvaluateConfig, config, overrides))
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items())
    typer.echo(f"{result['task']} {result['split']} ({result['examples']} examples): {metrics}")
    for path in result.get("predictions", []):
        typer.echo(f"predictions written to {path}")
    typer.echo(f"metrics written to {result['output']}")


@app.command("distill")
@user_errors
@with_options(DistillConfig, SHAPE_OPTIONS + LOSS_OPTIONS + TRAINING_OPTIONS)
def distill_cmd(
    teacher: Annotated[str | None, typer.Option("--teacher", help="Fine-tuned teacher run dir.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Student run dir.")] = None,
    method: Annotated[str | None, typer.Option("--method", help="lad (default) | pkd | kd | none.")] = None,
    student_layers: Annotated[int | None, typer.Option(help="Student depth (default: half the teacher's).")] = None,
    student_init: Annotated[
        str | None, typer.Option(help="even (default) | first | teacher | prune (default when narrower) | random.")
    ] = None,
    init_from: Annotated[str | None, typer.Option(help="Pretrained checkpoint for even/first init.")] = None,
    preset: Annotated[str | None, typer.Option(help="`paper`: the LAD paper's per-task hyperparameters.")] = None,
    reverse_gates: Annotated[bool | None, typer.Option("--reverse-gates/--forward-gates")] = None,
    teacher_device: Annotated[str | None, typer.Option(help="Device for the frozen teacher, e.g. cuda:1.")] = None,
    layer_choice: Annotated[
        str | None, typer.Option(help="Teacher layers of the layer loss: skip (default) | last (pkd: PKD-Last).")
    ] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    *,
    overrides: dict,
) -> None:
    """Distil a fine-tuned teacher into a smaller student with LAD (or the pkd / kd / none baselines).

    Example: ladc distill --task sst2 --teacher runs/teacher-sst2 --student-layers 3 --data-dir ../shared/glue
    --output runs/student-sst2

    Multi-GPU: accelerate launch -m ladc distill --task qnli --teacher runs/teacher-qnli --preset paper
    """
    from ladc.commands.distill import distill
    from ladc.runs.runs import build_run_config

    given = {
        "teacher": teacher, "output": output, "method": method, "student_layers": student_layers,
        "student_init": student_init, "init_from": init_from, "preset": preset, "reverse_gates": reverse_gates,
        "teacher_device": teacher_device, "layer_choice": layer_choice,
        "overwrite": overwrite or None, "resume": resume or None,
    }  # fmt: skip
    cfg = build_run_config(DistillConfig, config, {**given, **overrides})
    metrics = distill(cfg)
    retention = f", retention {metrics['retention']:.1%} of the teacher" if metrics.get("retention") else ""
    _report(f"student written to {cfg.output}: dev {metrics['dev']}{retention}")


@app.command("export")
@user_errors
def export_cmd(
    model_dir: Annotated[str, typer.Argument(help="Fine-tuned HF sequence-classifier dir (teacher or student).")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (always done; kept for compatibility).")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Default: onnx-NAME beside MODEL_DIR.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Default: the task in MODEL_DIR/ladc.json.")] = None,
    data_dir: DataDirOpt = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset, 14..20 (default 17).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda: export device and fp32/fp16 check device.")] = None,
    optimize: Annotated[bool, typer.Option("--optimize", help="Add model_fused.onnx (onnxruntime fusions).")] = False,
    quantize: Annotated[
        str | None, typer.Option(help="`dynamic`: add model_int8.onnx (+ model_fused_int8.onnx with --optimize).")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Add model_fp16.onnx (fused fp16; needs CUDA).")] = False,
    per_channel: Annotated[
        bool | None, typer.Option("--per-channel/--per-tensor", help="INT8 scale granularity.")
    ] = None,
    exclude_nodes: Annotated[
        list[str] | None, typer.Option("--exclude-nodes", help="Node-name glob kept fp32 (repeatable, or a,b).")
    ] = None,
    keep_head_fp32: Annotated[bool, typer.Option("--keep-head-fp32", help="Keep pooler + classifier fp32.")] = False,
    parity_samples: Annotated[int | None, typer.Option(help="Cap on dev examples (default: all).")] = None,
    allow_drop: Annotated[
        float | None, typer.Option(help="Accept a headline-metric drop <= this many points (other checks still apply).")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Engines, a,b: onnxruntime (default), openvino, torch.")] = None,
    select: Annotated[
        str | None, typer.Option(help="`fastest`: build all, drop parity failures, rank by speed.")
    ] = None,
    calibration_samples: Annotated[
        int | None, typer.Option(help="Train examples for OpenVINO/NNCF INT8 calibration (default 300).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Threads when timing under --select (default: cores).")] = None,
    push_to_hub: Annotated[
        str | None, typer.Option(help="Then upload the export dir to this hub repo (OWNER/NAME), as `ladc push`.")
    ] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export MODEL_DIR to ONNX (fp32, fused, INT8, fp16), OpenVINO IR and PyTorch bf16, and check every artifact
    against PyTorch on dev data; `--select fastest` also ranks them by speed on this machine.

    Example: ladc export runs/student-sst2 --select fastest --output runs/onnx-sst2
    """
    from ladc.deploy.export import export_onnx
    from ladc.runs.runs import build_run_config

    overrides = {
        "model": model_dir, "output": output, "task": task, "data_dir": data_dir,
        "opset": opset, "device": device, "optimize": optimize or None, "quantize": quantize, "fp16": fp16 or None,
        "per_channel": per_channel, "exclude_nodes": ",".join(exclude_nodes or []) or None, "keep_head_fp32": keep_head_fp32 or None,
        "parity_samples": parity_samples, "allow_drop": allow_drop, "overwrite": overwrite or None,
        "backends": backend, "select": select, "calibration_samples": calibration_samples, "threads": threads,
    }  # fmt: skip
    cfg = build_run_config(ExportConfig, config, overrides)
    manifest = export_onnx(cfg)
    chosen = f"; fastest here: {manifest['selection']['chosen']}" if "selection" in manifest else ""
    typer.echo(f"{len(manifest['artifacts'])} artifacts and export.json written to {cfg.output}{chosen}")
    if push_to_hub:
        from ladc.commands.push import push_to_hub as push

        typer.echo(f"pushed {cfg.output} to {push_to_hub}: {push(cfg.output, push_to_hub)}")


@app.command("bench")
@user_errors
def bench_cmd(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="HF model dirs, .onnx/.xml files, `ladc export` dirs (all artifacts), openvino:FILE.onnx."),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="GLUE task of the dev set (default: the one the targets record).")
    ] = None,
    data_dir: DataDirOpt = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Report dir (default runs/bench-TASK).")] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="Comma-separated batch sizes (default 1,32).")] = None,
    seq_lens: Annotated[str | None, typer.Option(help="Comma-separated synthetic lengths (default 128).")] = None,
    real: Annotated[bool, typer.Option("--real", help="Also time dev sentences with dynamic padding.")] = False,
    warmup: Annotated[int | None, typer.Option(help="Untimed runs per target and shape (default 5).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Timed runs per target and shape (default 30).")] = None,
    min_duration: Annotated[float | None, typer.Option(help="Time each target at least this many s per shape.")] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: physical cores).")] = None,
    provider: Annotated[str | None, typer.Option(help="cpu | cuda (onnxruntime provider, torch device).")] = None,
    tensorrt: Annotated[bool, typer.Option("--tensorrt", help="With --provider cuda: TensorRT EP first.")] = False,
    torch_bf16: Annotated[bool, typer.Option("--torch-bf16", help="Add PyTorch bf16-autocast targets.")] = False,
    baseline: Annotated[str | None, typer.Option(help="Speed-up reference: target name or 0-based index.")] = None,
    skip_accuracy: Annotated[bool, typer.Option("--skip-accuracy", help="Time only; no dev-set metric.")] = False,
    eval_batch_size: Annotated[int | None, typer.Option(help="Batch size of the accuracy pass (default 64).")] = None,
    peak_gflops: Annotated[float | None, typer.Option(help="Machine peak GFLOP/s for the roofline fraction.")] = None,
    ort_opt_level: Annotated[
        str | None, typer.Option(help="onnxruntime graph optimisation: disable|basic|extended|all.")
    ] = None,
    dev_limit: Annotated[int | None, typer.Option(help="First N dev examples (default: the full dev set).")] = None,
    isolation: Annotated[
        str | None, typer.Option(help="isolated (default: one target at a time) | interleaved (round-robin).")
    ] = None,
    roofline: Annotated[
        bool, typer.Option("--roofline", help="Measure fp32/bf16/int8 GEMM roofs here; report each target's share.")
    ] = False,
    profile: Annotated[
        bool, typer.Option("--profile", help="Per-op profile (onnxruntime, OpenVINO) of each target at batch 1.")
    ] = False,
    retime: Annotated[
        bool, typer.Option("--retime", help="Time export artifacts here, not reusing their --select fastest timings.")
    ] = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Latency, throughput, accuracy and memory of model variants side by side (bench.json, bench.md, bench.png).

    Example: ladc bench runs/onnx-student-sst2 runs/student-sst2 runs/teacher-sst2 --task sst2
    --data-dir ../shared/glue --torch-bf16 --output runs/bench-sst2
    """
    from ladc.bench.bench import run_bench
    from ladc.runs.runs import build_run_config

    overrides = {
        "targets": targets or None, "data.task": task, "data.data_dir": data_dir,
        "data.dev_limit": dev_limit, "output": output, "batch_sizes": batch_sizes, "seq_lens": seq_lens,
        "real": real or None, "warmup": warmup, "iterations": iterations, "min_duration_s": min_duration,
        "threads": threads, "provider": provider, "tensorrt": tensorrt or None, "torch_bf16": torch_bf16 or None,
        "baseline": baseline, "skip_accuracy": skip_accuracy or None, "eval_batch_size": eval_batch_size,
        "peak_gflops": peak_gflops, "ort_graph_optimization": ort_opt_level, "overwrite": overwrite or None,
        "isolation": isolation, "roofline": roofline or None, "profile": profile or None, "retime": retime or None,
    }  # fmt: skip
    report = run_bench(build_run_config(BenchConfig, config, overrides))
    typer.echo(f"report written to {report['output']} (bench.json, bench.md, bench.png)")


@app.command("pipeline")
@user_errors
def pipeline_cmd(
    config: Annotated[Path, typer.Option("--config", help="Pipeline YAML (see configs/).")],
    start: Annotated[
        str | None, typer.Option("--from", help="Restart from this stage: teacher, student, onnx, bench, report.")
    ] = None,
    max_drop: Annotated[
        float | None, typer.Option(help="Pick the fastest student within this many holdout points of the teacher.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Teacher tuning -> LAD distillation -> ONNX export -> benchmark -> compression report, resumable by stage.
    With `students:` in the YAML, every shape is trained and exported, and the report adds the accuracy-speed frontier.

    Example: ladc pipeline --config configs/sst2-minilm-frontier.yaml --max-drop 1
    """
    from ladc.commands.pipeline import load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(config, max_drop=max_drop)
    _echo_report(run_pipeline(cfg, start=start, overwrite=overwrite, echo=typer.echo))


@app.command("demo")
@user_errors
def demo_cmd(
    output: Annotated[str, typer.Option("--output", "-o", help="Run dir of the demo.")] = "runs/demo",
    overwrite: OverwriteOpt = False,
) -> None:
    """The offline demo: bundled MiniLM teacher -> 3-layer LAD student -> every backend, fastest selected -> bench -> report.

    Example: ladc demo --output runs/demo
    """
    from ladc.commands.pipeline import run_demo

    _echo_report(run_demo(output, overwrite=overwrite, echo=typer.echo))
    typer.echo(
        "That was a toy dataset. The real thing (GPU + internet): ladc pipeline --config configs/qnli-bert-base-6L.yaml"
        "\n  (bert-base-uncased teacher on QNLI, 6-layer LAD student with the paper's preset), or step by step:"
        "\n  ladc tune-teacher --task qnli --model bert-base-uncased --output runs/teacher-qnli"
        "\n  ladc distill --task qnli --teacher runs/teacher-qnli --preset paper --output runs/student-qnli"
    )


def _echo_report(report: Path) -> None:
    typer.echo("")
    typer.echo(report.read_text())
    typer.echo(f"report written to {report} and {report.with_suffix('.png')}")


register_use_commands(app, user_errors)  # predict, serve, push (ladc/cli_use.py)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`ladc`)."""
    app(args=argv)
