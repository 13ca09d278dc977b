"""The `ladc` Typer app: parse options, build a config dataclass, call one library function. No logic here.

Each command's options are made from its config dataclass (ladc/cli_options.py); only flags that set nothing in a
config (--config, the pipeline's --from, export's --push-to-hub) are written here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ladc.cli_options import (
    BENCH_YAML_ONLY,
    EVALUATE_YAML_ONLY,
    EXPORT_YAML_ONLY,
    PIPELINE_YAML_ONLY,
    TRAINING_YAML_ONLY,
    knob_help,
    with_config,
)
from ladc.cli_use import register_use_commands
from ladc.commands.pipeline import PipelineConfig
from ladc.errors import LadcError
from ladc.runs.config import BenchConfig, DistillConfig, EvaluateConfig, ExportConfig, TuneTeacherConfig

__all__ = ["app", "main"]

app = typer.Typer(
    name="ladc",
    help="Layer-wise Adaptive Distillation for BERT classifiers: tune a teacher, distil, export to ONNX, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config; CLI flags override its values.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help=knob_help(ExportConfig, "overwrite"))]


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


def _report(message: str) -> None:
    """A training command's closing line, once: under torchrun / `accelerate launch` only the main process says it."""
    from ladc.runs.runlock import launcher_rank

    if launcher_rank() == 0:
        typer.echo(message)


@app.command("tune-teacher")
@user_errors
@with_config(TuneTeacherConfig, TRAINING_YAML_ONLY)
def tune_teacher_cmd(config: ConfigOpt = None, *, overrides: dict) -> None:
    """Fine-tune a BERT teacher on a GLUE task.

    Example: ladc tune-teacher --task sst2 --model minilm --data-dir ../shared/glue --train-limit 8000 --epochs 2
    --output runs/teacher-sst2
    """
    from ladc.commands.teacher import tune_teacher
    from ladc.runs.runs import build_run_config

    cfg = build_run_config(TuneTeacherConfig, config, overrides)
    metrics = tune_teacher(cfg)
    _report(f"teacher written to {cfg.output}: dev {metrics['dev']} (best step {metrics['best_step']})")


@app.command("evaluate")
@user_errors
@with_config(EvaluateConfig, EVALUATE_YAML_ONLY, arguments={"model_dir": "model_dir"})
def evaluate_cmd(config: ConfigOpt = None, *, overrides: dict) -> None:
    """Print a model's task metrics on dev and write them as JSON.

    Example: ladc evaluate runs/teacher-sst2 --task sst2 --data-dir ../shared/glue
    """
    from ladc.commands.evaluate import run_evaluate
    from ladc.runs.runs import build_run_config

    result = run_evaluate(build_run_config(EvaluateConfig, config, overrides))
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items())
    typer.echo(f"{result['task']} {result['split']} ({result['examples']} examples): {metrics}")
    for path in result.get("predictions", []):
        typer.echo(f"predictions written to {path}")
    typer.echo(f"metrics written to {result['output']}")


@app.command("distill")
@user_errors
@with_config(DistillConfig, TRAINING_YAML_ONLY)
def distill_cmd(config: ConfigOpt = None, *, overrides: dict) -> None:
    """Distil a fine-tuned teacher into a smaller student with LAD (or the pkd / kd / none baselines).

    Example: ladc distill --task sst2 --teacher runs/teacher-sst2 --student-layers 3 --data-dir ../shared/glue
    --output runs/student-sst2

    Multi-GPU: accelerate launch -m ladc distill --task qnli --teacher runs/teacher-qnli --preset paper
    """
    from ladc.commands.distill import distill
    from ladc.runs.runs import build_run_config

    cfg = build_run_config(DistillConfig, config, overrides)
    metrics = distill(cfg)
    retention = f", retention {metrics['retention']:.1%} of the teacher" if metrics.get("retention") else ""
    _report(f"student written to {cfg.output}: dev {metrics['dev']}{retention}")


@app.command("export")
@user_errors
@with_config(ExportConfig, EXPORT_YAML_ONLY, arguments={"model": "model_dir"})
def export_cmd(
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (always done; kept for compatibility).")] = False,
    push_to_hub: Annotated[
        str | None, typer.Option(help="Then upload the export dir to this hub repo (OWNER/NAME), as `ladc push`.")
    ] = None,
    config: ConfigOpt = None,
    *,
    overrides: dict,
) -> None:
    """Export MODEL_DIR to ONNX (fp32, fused, INT8, fp16), OpenVINO IR and PyTorch bf16, and check every artifact
    against PyTorch on dev data; `--select fastest` also ranks them by speed on this machine.

    Example: ladc export runs/student-sst2 --select fastest --output runs/onnx-sst2
    """
    from ladc.deploy.export import export_onnx
    from ladc.runs.runs import build_run_config

    cfg = build_run_config(ExportConfig, config, overrides)
    manifest = export_onnx(cfg)
    chosen = f"; fastest here: {manifest['selection']['chosen']}" if "selection" in manifest else ""
    typer.echo(f"{len(manifest['artifacts'])} artifacts and export.json written to {cfg.output}{chosen}")
    if push_to_hub:
        from ladc.commands.push import push_to_hub as push

        typer.echo(f"pushed {cfg.output} to {push_to_hub}: {push(cfg.output, push_to_hub)}")


@app.command("bench")
@user_errors
@with_config(
    BenchConfig, BENCH_YAML_ONLY, {"data.task": "the task the targets record"}, arguments={"targets": "targets"}
)
def bench_cmd(config: ConfigOpt = None, *, overrides: dict) -> None:
    """Latency, throughput, accuracy and memory of model variants side by side (bench.json, bench.md, bench.png).

    Example: ladc bench runs/onnx-student-sst2 runs/student-sst2 runs/teacher-sst2 --task sst2
    --data-dir ../shared/glue --torch-bf16 --output runs/bench-sst2
    """
    from ladc.bench.bench import run_bench
    from ladc.runs.runs import build_run_config

    report = run_bench(build_run_config(BenchConfig, config, overrides))
    typer.echo(f"report written to {report['output']} (bench.json, bench.md, bench.png)")


@app.command("pipeline")
@user_errors
@with_config(PipelineConfig, PIPELINE_YAML_ONLY)
def pipeline_cmd(
    config: Annotated[Path, typer.Option("--config", help="Pipeline YAML (see configs/).")],
    start: Annotated[
        str | None, typer.Option("--from", help="Restart from this stage: teacher, student, onnx, bench, report.")
    ] = None,
    overwrite: OverwriteOpt = False,
    *,
    overrides: dict,
) -> None:
    """Teacher tuning -> LAD distillation -> ONNX export -> benchmark -> compression report, resumable by stage.
    With `students:` in the YAML, every shape is trained and exported, and the report adds the accuracy-speed frontier.

    Example: ladc pipeline --config configs/sst2-minilm-frontier.yaml --max-drop 1
    """
    from ladc.commands.pipeline import load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(config, max_drop=overrides["max_drop"])
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
