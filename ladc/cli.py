"""The `ladc` Typer app: parse options, build a config dataclass, call one library function. No logic here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ladc.errors import LadcError

__all__ = ["app", "main"]

app = typer.Typer(
    name="ladc",
    help="Layer-wise Adaptive Distillation for BERT classifiers: tune a teacher, distil, export to ONNX, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# ----------------------------------------------------------------------------- shared option types
TaskOpt = Annotated[str, typer.Option("--task", help="GLUE task: cola sst2 mrpc stsb qqp mnli qnli rte wnli.")]
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


# >>> tune-teacher / evaluate / distill (owned by lead)
MixedPrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--mixed-precision",
        help="no | bf16 (CPU AVX-512 BF16/AMX or GPU) | fp16 (GPU) | auto (bf16 where native, else no).",
    ),
]


# options shared by tune-teacher and distill (same flags, same help)
TrainFileOpt = Annotated[str | None, typer.Option(help="Generic CSV/JSONL train file.")]
DevFileOpt = Annotated[str | None, typer.Option(help="Generic CSV/JSONL dev file.")]
TextFieldsOpt = Annotated[str | None, typer.Option(help="Comma-separated text columns of CSV/JSONL files.")]
LabelFieldOpt = Annotated[str | None, typer.Option(help="Label column of CSV/JSONL files.")]
MaxSeqLenOpt = Annotated[int | None, typer.Option(help="Max tokens per example (default 128).")]
TrainLimitOpt = Annotated[int | None, typer.Option(help="Seeded random subset of train.")]
DevLimitOpt = Annotated[int | None, typer.Option(help="First N dev examples.")]
GradAccumOpt = Annotated[int | None, typer.Option(help="Gradient accumulation steps.")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Optimizer steps; overrides --epochs.")]
WarmupStepsOpt = Annotated[int | None, typer.Option(help="Warm-up steps; overrides --warmup-ratio.")]
EvalStepsOpt = Annotated[int | None, typer.Option(help="Evaluate every N steps (default: each epoch).")]
SaveStepsOpt = Annotated[int | None, typer.Option(help="Checkpoint every N steps (default: at each eval).")]
GroupByLengthOpt = Annotated[bool | None, typer.Option("--group-by-length/--no-group-by-length")]


def _optim_overrides(**values) -> dict:
    return {f"optim.{k}": v for k, v in values.items()}


def _data_overrides(
    task, data_dir, train_file, dev_file, text_fields, label_field, max_seq_len, train_limit, dev_limit
):
    return {
        "data.task": task, "data.data_dir": str(data_dir) if data_dir else None, "data.train_file": train_file,
        "data.dev_file": dev_file, "data.text_fields": text_fields, "data.label_field": label_field,
        "data.max_seq_len": max_seq_len, "data.train_limit": train_limit, "data.dev_limit": dev_limit,
    }  # fmt: skip


@app.command("tune-teacher")
@user_errors
def tune_teacher_cmd(
    task: Annotated[str | None, typer.Option("--task", help="GLUE task (sst2, qnli, ...).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Hub name, HF model dir, or `minilm` (offline).")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Run dir (HF model dir + metrics.json).")] = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    dev_file: DevFileOpt = None,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    max_seq_len: MaxSeqLenOpt = None,
    train_limit: TrainLimitOpt = None,
    dev_limit: DevLimitOpt = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 2e-5).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per-device batch size (default 32).")] = None,
    grad_accum: GradAccumOpt = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (default 3).")] = None,
    max_steps: MaxStepsOpt = None,
    warmup_ratio: Annotated[float | None, typer.Option(help="Warm-up fraction of steps (default 0.1).")] = None,
    warmup_steps: WarmupStepsOpt = None,
    eval_steps: EvalStepsOpt = None,
    save_steps: SaveStepsOpt = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 42).")] = None,
    mixed_precision: MixedPrecisionOpt = None,
    group_by_length: GroupByLengthOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
) -> None:
    """Fine-tune a BERT teacher on a GLUE task.

    Example: ladc tune-teacher --task sst2 --model minilm --data-dir ../shared/glue --train-limit 8000 --epochs 2
    --output runs/teacher-sst2
    """
    from ladc.config import TuneTeacherConfig, build_config
    from ladc.teacher import tune_teacher

    overrides = {
        "model": model, "output": output, "overwrite": overwrite or None, "resume": resume or None,
        **_data_overrides(
            task, data_dir, train_file, dev_file, text_fields, label_field, max_seq_len, train_limit, dev_limit
        ),
        **_optim_overrides(
            lr=lr, batch_size=batch_size, grad_accum=grad_accum, epochs=epochs, max_steps=max_steps,
            warmup_ratio=warmup_ratio, warmup_steps=warmup_steps, eval_steps=eval_steps, save_steps=save_steps,
            seed=seed, mixed_precision=mixed_precision, group_by_length=group_by_length,
        ),
    }  # fmt: skip
    cfg = build_config(TuneTeacherConfig, config, overrides)
    metrics = tune_teacher(cfg)
    typer.echo(f"teacher written to {cfg.output}: dev {metrics['dev']} (best step {metrics['best_step']})")


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    model_dir: Annotated[str, typer.Argument(help="HF sequence-classifier dir (teacher or student).")],
    task: Annotated[str | None, typer.Option("--task", help="Default: the task in MODEL_DIR/ladc.json.")] = None,
    data_dir: DataDirOpt = None,
    split: Annotated[str, typer.Option(help="dev, or a dev split name such as validation_mismatched.")] = "dev",
    predict: Annotated[str | None, typer.Option(help="`test`: write GLUE-submission TSVs.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Metrics JSON path.")] = None,
    batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 64,
    dev_limit: DevLimitOpt = None,
) -> None:
    """Print a model's task metrics on dev and write them as JSON.

    Example: ladc evaluate runs/teacher-sst2 --task sst2 --data-dir ../shared/glue
    """
    from ladc.evaluate import EvaluateConfig, run_evaluate

    cfg = EvaluateConfig(
        model_dir=model_dir, task=task, data_dir=str(data_dir) if data_dir else None, split=split,
        predict=predict, output=output, batch_size=batch_size, dev_limit=dev_limit,
    )  # fmt: skip
    result = run_evaluate(cfg)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items())
    typer.echo(f"{result['task']} {result['split']} ({result['examples']} examples): {metrics}")
    for path in result.get("predictions", []):
        typer.echo(f"predictions written to {path}")
    typer.echo(f"metrics written to {result['output']}")


@app.command("distill")
@user_errors
def distill_cmd(
    task: Annotated[str | None, typer.Option("--task", help="GLUE task (sst2, qnli, ...).")] = None,
    teacher: Annotated[str | None, typer.Option("--teacher", help="Fine-tuned teacher run dir.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Student run dir.")] = None,
    method: Annotated[str | None, typer.Option("--method", help="lad (default) | pkd | kd | none.")] = None,
    student_layers: Annotated[int | None, typer.Option(help="Student depth (default: half the teacher's).")] = None,
    student_init: Annotated[str | None, typer.Option(help="even (default) | first | teacher | random.")] = None,
    init_from: Annotated[str | None, typer.Option(help="Pretrained checkpoint for even/first init.")] = None,
    preset: Annotated[str | None, typer.Option(help="`paper`: the LAD paper's per-task hyperparameters.")] = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    dev_file: DevFileOpt = None,
    text_fields: TextFieldsOpt = None,
    label_field: LabelFieldOpt = None,
    max_seq_len: MaxSeqLenOpt = None,
    train_limit: TrainLimitOpt = None,
    dev_limit: DevLimitOpt = None,
    hard_weight: Annotated[float | None, typer.Option(help="Weight of the label loss (0.5).")] = None,
    soft_weight: Annotated[float | None, typer.Option(help="Weight of the soft-label KL (0.5).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Soft-label temperature tau (10).")] = None,
    mu: Annotated[float | None, typer.Option(help="LAD hidden-MSE weight (1000).")] = None,
    beta: Annotated[float | None, typer.Option(help="PKD patient-loss weight (100).")] = None,
    gate_lr: Annotated[float | None, typer.Option(help="Learning rate of the highway gates (1e-6).")] = None,
    reverse_gates: Annotated[bool | None, typer.Option("--reverse-gates/--forward-gates")] = None,
    teacher_device: Annotated[str | None, typer.Option(help="Device for the frozen teacher, e.g. cuda:1.")] = None,
    lr: Annotated[float | None, typer.Option(help="Student learning rate (1e-4).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per-device batch size (32).")] = None,
    grad_accum: GradAccumOpt = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (4).")] = None,
    max_steps: MaxStepsOpt = None,
    warmup_ratio: Annotated[float | None, typer.Option(help="Warm-up fraction of steps (0.1).")] = None,
    warmup_steps: WarmupStepsOpt = None,
    eval_steps: EvalStepsOpt = None,
    save_steps: SaveStepsOpt = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (42).")] = None,
    mixed_precision: MixedPrecisionOpt = None,
    group_by_length: GroupByLengthOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
) -> None:
    """Distil a fine-tuned teacher into a smaller student with LAD (or the pkd / kd / none baselines).

    Example: ladc distill --task sst2 --teacher runs/teacher-sst2 --student-layers 3 --data-dir ../shared/glue
    --output runs/student-sst2

    Multi-GPU: accelerate launch -m ladc distill --task qnli --teacher runs/teacher-qnli --preset paper
    """
    from ladc.distill import build_distill_config, distill

    overrides = {
        "teacher": teacher, "output": output, "method": method, "student_layers": student_layers,
        "student_init": student_init, "init_from": init_from, "preset": preset, "hard_weight": hard_weight,
        "soft_weight": soft_weight, "temperature": temperature, "mu": mu, "beta": beta, "gate_lr": gate_lr,
        "reverse_gates": reverse_gates, "teacher_device": teacher_device,
        "overwrite": overwrite or None, "resume": resume or None,
        **_data_overrides(
            task, data_dir, train_file, dev_file, text_fields, label_field, max_seq_len, train_limit, dev_limit
        ),
        **_optim_overrides(
            lr=lr, batch_size=batch_size, grad_accum=grad_accum, epochs=epochs, max_steps=max_steps,
            warmup_ratio=warmup_ratio, warmup_steps=warmup_steps, eval_steps=eval_steps, save_steps=save_steps,
            seed=seed, mixed_precision=mixed_precision, group_by_length=group_by_length,
        ),
    }  # fmt: skip
    cfg = build_distill_config(config, overrides)
    metrics = distill(cfg)
    retention = f", retention {metrics['retention']:.1%} of the teacher" if metrics.get("retention") else ""
    typer.echo(f"student written to {cfg.output}: dev {metrics['dev']}{retention}")


# <<< tune-teacher / evaluate / distill


# >>> export (owned by export engineer)
@app.command("export")
@user_errors
def export_cmd(
    model_dir: Annotated[str, typer.Argument(help="Fine-tuned HF sequence-classifier dir (teacher or student).")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (always done; kept for compatibility).")] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output dir (default: onnx-NAME beside MODEL_DIR).")
    ] = None,
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
        bool | None,
        typer.Option("--per-channel/--per-tensor", help="INT8 scale per output channel (default) or per tensor."),
    ] = None,
    exclude_nodes: Annotated[
        list[str] | None, typer.Option("--exclude-nodes", help="Node-name glob kept fp32 (repeatable, or a,b).")
    ] = None,
    keep_head_fp32: Annotated[
        bool, typer.Option("--keep-head-fp32", help="Keep pooler + classifier in fp32 when quantizing.")
    ] = False,
    parity_samples: Annotated[int | None, typer.Option(help="Cap on dev examples (default: all).")] = None,
    allow_drop: Annotated[
        float | None, typer.Option(help="Accept artifacts whose headline metric drops <= this many points.")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Engines, comma-separated: onnxruntime (default), openvino (the openvino extra), torch (bf16)."
        ),
    ] = None,
    select: Annotated[
        str | None,
        typer.Option(help="`fastest`: build every backend x precision, drop parity failures, time and rank the rest."),
    ] = None,
    calibration_samples: Annotated[
        int | None, typer.Option(help="Train examples for OpenVINO/NNCF INT8 calibration (default 300).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Threads when timing under --select (default: cores).")] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export MODEL_DIR to ONNX (fp32, fused, INT8, fp16), OpenVINO IR and PyTorch bf16, and check every artifact
    against PyTorch on dev data; `--select fastest` also ranks them by speed on this machine.

    Example: ladc export runs/student-sst2 --select fastest --output runs/onnx-sst2
    """
    from ladc.config import ExportConfig, build_config
    from ladc.export import export_onnx

    patterns = [p.strip() for value in exclude_nodes or [] for p in value.split(",") if p.strip()]
    overrides = {
        "model": model_dir, "output": output, "task": task, "data_dir": str(data_dir) if data_dir else None,
        "opset": opset, "device": device, "optimize": optimize or None, "quantize": quantize, "fp16": fp16 or None,
        "per_channel": per_channel, "exclude_nodes": patterns or None, "keep_head_fp32": keep_head_fp32 or None,
        "parity_samples": parity_samples, "allow_drop": allow_drop, "overwrite": overwrite or None,
        "backends": backend, "select": select, "calibration_samples": calibration_samples, "threads": threads,
    }  # fmt: skip
    if output is None and config is None:
        # default: a sibling of the model dir, runs/student-sst2 -> runs/onnx-student-sst2
        source = Path(model_dir.rstrip("/"))
        overrides["output"] = str(source.parent / f"onnx-{source.name}")
    cfg = build_config(ExportConfig, config, overrides)
    manifest = export_onnx(cfg)
    chosen = f"; fastest here: {manifest['selection']['chosen']}" if "selection" in manifest else ""
    typer.echo(f"{len(manifest['artifacts'])} artifacts and export.json written to {cfg.output}{chosen}")


# <<< export


# >>> bench (owned by bench engineer)
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
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Latency, throughput, accuracy and memory of model variants side by side (bench.json, bench.md, bench.png).

    Example: ladc bench runs/onnx-student-sst2 runs/student-sst2 runs/teacher-sst2 --task sst2
    --data-dir ../shared/glue --torch-bf16 --output runs/bench-sst2
    """
    from ladc.bench import run_bench
    from ladc.config import BenchConfig, build_config
    from ladc.targets import infer_task

    overrides = {
        "targets": targets or None, "data.task": task or (infer_task(targets) if targets and config is None else None), "data.data_dir": str(data_dir) if data_dir else None,
        "data.dev_limit": dev_limit, "output": output, "batch_sizes": batch_sizes, "seq_lens": seq_lens,
        "real": real or None, "warmup": warmup, "iterations": iterations, "min_duration_s": min_duration,
        "threads": threads, "provider": provider, "tensorrt": tensorrt or None, "torch_bf16": torch_bf16 or None,
        "baseline": baseline, "skip_accuracy": skip_accuracy or None, "eval_batch_size": eval_batch_size,
        "peak_gflops": peak_gflops, "ort_graph_optimization": ort_opt_level, "overwrite": overwrite or None,
        "isolation": isolation, "roofline": roofline or None, "profile": profile or None,
    }  # fmt: skip
    report = run_bench(build_config(BenchConfig, config, overrides))
    typer.echo(f"report written to {report['output']} (bench.json, bench.md, bench.png)")


# <<< bench


# >>> pipeline / demo (owned by lead)
@app.command("pipeline")
@user_errors
def pipeline_cmd(
    config: Annotated[Path, typer.Option("--config", help="Pipeline YAML (see configs/).")],
    start: Annotated[
        str | None, typer.Option("--from", help="Restart from this stage: teacher, student, onnx, bench, report.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Teacher tuning -> LAD distillation -> ONNX export -> benchmark -> compression report, resumable by stage.

    Example: ladc pipeline --config configs/sst2-minilm-3L.yaml
    """
    from ladc.pipeline import load_pipeline_config, run_pipeline

    report = run_pipeline(load_pipeline_config(config), start=start, overwrite=overwrite, echo=typer.echo)
    typer.echo("")
    typer.echo(report.read_text())
    typer.echo(f"report written to {report} and {report.with_suffix('.png')}")


@app.command("demo")
@user_errors
def demo_cmd(
    output: Annotated[str, typer.Option("--output", "-o", help="Run dir of the demo.")] = "runs/demo",
    overwrite: OverwriteOpt = False,
) -> None:
    """The offline demo: bundled MiniLM teacher -> 3-layer LAD student -> every backend, fastest selected -> bench -> report.

    Example: ladc demo --output runs/demo
    """
    from ladc.pipeline import run_demo

    report = run_demo(output, overwrite=overwrite, echo=typer.echo)
    typer.echo("")
    typer.echo(report.read_text())
    typer.echo(f"report written to {report} and {report.with_suffix('.png')}")
    typer.echo(
        "That was a toy dataset. The real thing (GPU + internet): ladc pipeline --config configs/qnli-bert-base-6L.yaml"
        "\n  (bert-base-uncased teacher on QNLI, 6-layer LAD student with the paper's preset), or step by step:"
        "\n  ladc tune-teacher --task qnli --model bert-base-uncased --output runs/teacher-qnli"
        "\n  ladc distill --task qnli --teacher runs/teacher-qnli --preset paper --output runs/student-qnli"
    )


# <<< pipeline / demo


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`ladc`)."""
    app(args=argv)


if __name__ == "__main__":
    main()
