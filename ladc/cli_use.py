"""The commands users run after compression: `ladc predict` (files), `ladc serve` (HTTP) and `ladc push` (the hub).

Registered on the Typer app by `register_use_commands` (cli.py stays the list of the pipeline's own commands).
Parsing only: each command builds a config and calls one library function, importing it inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register_use_commands"]

TargetArg = Annotated[
    str, typer.Argument(help="A `ladc export` dir (its chosen artifact), an HF model dir, or an .onnx/.xml file.")
]
ArtifactOpt = Annotated[
    str | None, typer.Option("--artifact", help="Export dir: artifact to run (default: the one --select chose).")
]
TaskOpt = Annotated[str | None, typer.Option("--task", help="Default: the task TARGET records.")]
MaxSeqLenOpt = Annotated[int | None, typer.Option(help="Truncate to this many tokens (default: the run's, or 128).")]
ThreadsOpt = Annotated[int | None, typer.Option(help="Intra-op threads (default: the engine's, one per core).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config; CLI flags override its values.")]


def register_use_commands(app: typer.Typer, user_errors) -> None:
    """Add predict, serve and push to `app`; `user_errors` turns a LadcError into one line and exit code 2."""

    @app.command("predict")
    @user_errors
    def predict_cmd(
        target: TargetArg,
        input: Annotated[str, typer.Option("--input", "-i", help="CSV, TSV or JSONL file, or - for stdin.")],
        output: Annotated[str, typer.Option("--output", "-o", help="Predictions: .jsonl or .csv file, or - (stdout).")],
        artifact: ArtifactOpt = None,
        task: TaskOpt = None,
        text_fields: Annotated[
            str | None, typer.Option(help="Input column(s) of the text(s), a,b (default: the task's).")
        ] = None,
        id_field: Annotated[
            str | None, typer.Option(help="Input column naming rows (default: id/idx/index, else row number).")
        ] = None,
        input_format: Annotated[
            str | None, typer.Option(help="csv | tsv | jsonl (default: suffix; stdin jsonl).")
        ] = None,
        output_format: Annotated[str | None, typer.Option(help="jsonl | csv (default: from the suffix).")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Rows per model call, after length sorting (32).")] = None,
        chunk_rows: Annotated[int | None, typer.Option(help="Rows read and sorted at once (4096).")] = None,
        max_seq_len: MaxSeqLenOpt = None,
        threads: ThreadsOpt = None,
        skip_bad: Annotated[
            bool, typer.Option("--skip-bad", help="Skip unreadable rows and report their count.")
        ] = False,
        progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar (rows/s).")] = True,
        config: ConfigOpt = None,
    ) -> None:
        """Classify every row of a file with a compressed model; one output row per input row, in input order.

        Example: ladc predict runs/demo/onnx --input reviews.csv --output predictions.jsonl
        """
        from ladc.commands.predict import PredictConfig, run_predict
        from ladc.runs.runs import build_run_config

        overrides = {
            "target": target, "input": input, "output": output, "artifact": artifact, "task": task,
            "text_fields": text_fields, "id_field": id_field, "input_format": input_format,
            "output_format": output_format, "batch_size": batch_size, "chunk_rows": chunk_rows,
            "max_seq_len": max_seq_len, "threads": threads, "skip_bad": skip_bad or None, "progress": progress,
        }  # fmt: skip
        result = run_predict(build_run_config(PredictConfig, config, overrides), echo=lambda m: typer.echo(m, err=True))
        where = "stdout" if output == "-" else output
        typer.echo(
            f"{result['rows']} predictions written to {where} ({result['artifact']}, {result['engine']}, "
            f"{result['rows_per_s']} rows/s)",
            err=output == "-",
        )

    @app.command("serve")
    @user_errors
    def serve_cmd(
        target: TargetArg,
        host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
        port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
        artifact: ArtifactOpt = None,
        task: TaskOpt = None,
        max_seq_len: MaxSeqLenOpt = None,
        threads: ThreadsOpt = None,
        max_batch: Annotated[
            int | None, typer.Option(help="Rows per model call (default: measured when the server starts).")
        ] = None,
        max_wait_ms: Annotated[
            float | None,
            typer.Option(
                help="How long a request waits for others to batch with (default 0: no wait; requests "
                "that queued during the previous model call still share the next one)."
            ),
        ] = None,
        max_request_rows: Annotated[int | None, typer.Option(help="Texts per request (default 256).")] = None,
        max_body_bytes: Annotated[int | None, typer.Option(help="Request body size (default 1000000).")] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Serve a compressed model over HTTP: POST /predict, GET /health, GET /metadata; requests micro-batched.

        Example: ladc serve runs/demo/onnx --port 8000   then
        curl -s localhost:8000/predict -d '{"texts": ["a charming film"]}'
        """
        from ladc.commands.serve import ServeConfig, serve
        from ladc.runs.config import build_config

        overrides = {
            "target": target, "host": host, "port": port, "artifact": artifact, "task": task,
            "max_seq_len": max_seq_len, "threads": threads, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
            "max_request_rows": max_request_rows, "max_body_bytes": max_body_bytes,
        }  # fmt: skip
        serve(build_config(ServeConfig, config, overrides), echo=lambda m: typer.echo(m, err=True))

    @app.command("push")
    @user_errors
    def push_cmd(
        directory: Annotated[str, typer.Argument(help="A teacher, student or export dir (with its model card).")],
        repo: Annotated[str, typer.Argument(help="Hub repo id, OWNER/NAME (created if missing).")],
        private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
        token: Annotated[str | None, typer.Option(help="Hub token (default: HF_TOKEN or `hf auth login`).")] = None,
    ) -> None:
        """Upload a model dir to the Hugging Face Hub as one commit (checkpoints and temp files stay local).

        Example: ladc push runs/demo/onnx my-name/minilm-sst2-3L-onnx
        """
        from ladc.commands.push import push_to_hub

        typer.echo(f"pushed {directory} to {repo}: {push_to_hub(directory, repo, private=private, token=token)}")
