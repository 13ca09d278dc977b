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
            typer.echo("interrupted; rerun with --resume to continue from the last checkpoint", err=True)
            raise typer.Exit(130) from None

    return wrapper


# >>> tune-teacher / evaluate / distill (owned by lead)
# <<< tune-teacher / evaluate / distill

# >>> export (owned by export engineer)
# <<< export

# >>> bench (owned by bench engineer)
# <<< bench

# >>> pipeline / demo (owned by lead)
# <<< pipeline / demo


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`ladc`)."""
    app(args=argv)


if __name__ == "__main__":
    main()
