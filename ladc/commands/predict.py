"""`ladc predict`: run a compressed classifier on a file of new text, and the `Predictor` that `ladc serve` shares.

A TARGET is an export dir (its chosen artifact, or `--artifact NAME`), an HF model dir, or an .onnx / OpenVINO .xml
file; `load_runner` opens it with its engine. Rows are read in chunks (ladc/commands/predict_io.py); within a chunk they are
tokenized, sorted by length and padded per batch (FastFormers: dynamic sequence length alone gave 3.5x on CPU), and
written back in input order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ladc.commands.predict_io import BadRow, Example, PredictionWriter, input_format, output_format, read_examples
from ladc.data.tasks import TaskSpec, get_task
from ladc.errors import LadcError, did_you_mean
from ladc.runs.export_manifest import EXPORT_MANIFEST, ExportManifest, is_export_dir, read_export_manifest
from ladc.runs.manifest import RUN_MANIFEST, read_manifest
from ladc.runs.runs import infer_task

__all__ = [
    "PredictConfig",
    "Predictor",
    "choose_artifact",
    "open_predictor",
    "text_fields_of",
    "predict_examples",
    "run_predict",
]

DEFAULT_MAX_SEQ_LEN = 128  # DataConfig's default: what a run that recorded none was trained and evaluated with


@dataclass(frozen=True)
class PredictConfig:
    target: str
    input: str  # a CSV/TSV/JSONL path, or `-` for stdin
    output: str  # a .jsonl/.csv path, or `-` for stdout
    artifact: str | None = None  # export dir: an artifact name; default the one export --select chose
    task: str | None = None  # default: the task the target records (export.json / ladc.json)
    text_fields: tuple[str, ...] | None = None  # input columns of the text(s); default the run's or the task's
    id_field: str | None = None  # input column naming rows; default the first of id/idx/index, else the row number
    input_format: str | None = None  # csv | tsv | jsonl; default from the suffix (stdin: jsonl)
    output_format: str | None = None  # jsonl | csv; default from the suffix
    batch_size: int = 32  # rows per model call after length sorting
    chunk_rows: int = 4096  # rows read, sorted and held at once: memory stays bounded whatever the file's size
    max_seq_len: int | None = None  # default: what the run recorded (128 when none)
    threads: int | None = None  # intra-op threads; default the engine's (one per physical core)
    skip_bad: bool = False  # skip unreadable rows (and report their count) instead of stopping at the first
    progress: bool = True


@dataclass
class Predictor:
    """An opened model ready for text: runner, tokenizer, task and what to report about them.

    Attributes:
        runner: a ladc.deploy.runners runner (batch of (B, S) inputs -> (B, C) logits).
        tokenizer: the model's tokenizer.
        task: the TaskSpec (label names; regression when it has none).
        max_seq_len: truncation length in tokens.
        collate: the dynamic-padding collator (ladc.data.data.PaddingCollator).
        info: target, artifact, engine, precision, path, task, labels and engine settings (serve's /metadata).
    """

    runner: object
    tokenizer: object
    task: TaskSpec
    max_seq_len: int
    collate: Callable
    info: dict = field(default_factory=dict)

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.task.label_names

    def logits(self, texts: Sequence[tuple[str, ...]], batch_size: int, on_batch=None) -> np.ndarray:
        """(N, C) float32 logits of N examples, in the order given.

        The rows are sorted by token count and padded per batch of `batch_size`, so short rows are not padded to a
        long neighbour; `on_batch(rows)` is called after each batch (progress bars).
        """
        columns = list(zip(*texts, strict=True))
        encoded = self.tokenizer(*[list(c) for c in columns], truncation=True, max_length=self.max_seq_len)
        names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded]
        order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
        out = np.empty((len(texts), self.task.num_labels), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = self.collate([{name: encoded[name][i] for name in names} for i in index])
            out[index] = self.runner(batch)
            if on_batch is not None:
                on_batch(len(index))
        return out

    def outputs(self, logits: np.ndarray) -> list[dict]:
        """Per row: {label, probabilities: {name: p}} (softmax over the classes) or {score} for regression."""
        if self.task.is_regression:
            return [{"score": float(row[0])} for row in logits]
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        return [
            {"label": self.label_names[int(row.argmax())], "probabilities": dict(zip(self.label_names, row.tolist()))}
            for row in probabilities
        ]


# ----------------------------------------------------------------------------- opening a target


def choose_artifact(manifest: ExportManifest, name: str | None, where: str) -> dict:
    """The export.json entry to run: `name`, else the one `--select fastest` chose, else `fp32`.

    Raises:
        LadcError: an unknown name, or an artifact that failed its parity check.
    """
    entries = {entry.get("name"): entry for entry in manifest.artifacts}
    if name is None:
        name = manifest.chosen or "fp32"
    if name not in entries:
        raise LadcError(
            f"{where} has no artifact '{name}'{did_you_mean(name, entries)}; artifacts: {', '.join(entries)}"
        )
    parity = entries[name].get("parity") or {}
    if parity.get("accepted") is False:
        accepted = [n for n, e in entries.items() if (e.get("parity") or {}).get("accepted", True)]
        raise LadcError(f"artifact '{name}' of {where} failed its parity check against PyTorch; use one that passed: "
                        f"{', '.join(accepted) or '(none)'}")  # fmt: skip
    return entries[name]


def _recorded_data(folder: Path) -> dict:
    """The data settings a run recorded: ladc.json `data`, or, for an export dir, its source model's."""
    manifest = read_manifest(folder)
    if manifest is None and is_export_dir(folder):
        export = read_export_manifest(folder)
        source = Path(export.source_model)
        manifest = read_manifest(source) if export.source_model and source.is_dir() else None
        recorded = dict(getattr(manifest, "data", None) or {})
        return {**recorded, "max_seq_len": export.parity_set.get("max_seq_len")}
    return dict(getattr(manifest, "data", None) or {})


def _bench_target(target: str, artifact: str | None):
    """The BenchTarget to open, and the export.json entry it came from (None for a model dir or file)."""
    from ladc.deploy.targets import resolve_targets

    path = Path(target)
    if path.is_dir() and is_export_dir(path):
        entry = choose_artifact(read_export_manifest(path), artifact, str(path / EXPORT_MANIFEST))
        wanted = f"{path.name}/{entry['name']}"
        return next(t for t in resolve_targets([target]) if t.name == wanted), entry
    if artifact is not None:
        raise LadcError(f"--artifact needs an export dir (with {EXPORT_MANIFEST}); {target} is not one")
    return resolve_targets([target])[0], None


def open_predictor(
    target: str,
    artifact: str | None = None,
    task: str | None = None,
    max_seq_len: int | None = None,
    threads: int | None = None,
) -> Predictor:
    """Open a TARGET (export dir, HF model dir, .onnx or .xml file) with its engine, checked against the task.

    Raises:
        LadcError: a missing or unknown target, no task recorded or given, an unknown or failed artifact, a model
            that does not fit the task or tokenizer.
    """

    from ladc.data.data import make_collator
    from ladc.deploy.runners import load_runner
    from ladc.training.models import check_inputs_fit

    bench_target, entry = _bench_target(target, artifact)
    task_name = task or infer_task([target])
    if not task_name:
        raise LadcError(f"no --task given and {target} records none in its {RUN_MANIFEST} or {EXPORT_MANIFEST}; "
                        "pass --task")  # fmt: skip
    task_spec = get_task(task_name)
    recorded = _recorded_data(Path(bench_target.model_dir))
    max_seq_len = max_seq_len or recorded.get("max_seq_len") or DEFAULT_MAX_SEQ_LEN
    runner, tokenizer, config, settings = load_runner(bench_target, task_spec, threads=threads)
    check_inputs_fit(tokenizer, config, max_seq_len, target)
    info = {
        "target": target,
        "artifact": entry["name"] if entry else bench_target.name,
        "path": bench_target.path,
        "engine": settings.get("engine"),
        "precision": getattr(runner, "inference_precision", None) or bench_target.precision,
        "task": task_spec.name,
        "labels": list(task_spec.label_names),
        "text_fields": list(recorded.get("text_fields") or task_spec.text_fields),
        "max_seq_len": max_seq_len,
        "settings": settings,
    }
    return Predictor(runner, tokenizer, task_spec, int(max_seq_len), make_collator(tokenizer, task_spec), info)


def text_fields_of(given: tuple[str, ...] | None, predictor: Predictor) -> tuple[str, ...]:
    """--text-fields, else the columns the run was trained from (generic CSV/JSONL runs), else the task's fields."""
    task = predictor.task
    fields = tuple(given or predictor.info["text_fields"])
    if len(fields) != len(task.text_fields):
        raise LadcError(f"--text-fields {','.join(fields)}: {task.name} needs {len(task.text_fields)} text field(s) "
                        f"({', '.join(task.text_fields)})")  # fmt: skip
    return fields


# ----------------------------------------------------------------------------- predicting


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_examples(
    predictor: Predictor, rows: Iterable[Example | BadRow], batch_size: int, chunk_rows: int, on_batch=None
) -> Iterator[tuple[Example | BadRow, dict | None]]:
    """(row, output) per input row, in input order; bad rows pass through with output None.

    At most `chunk_rows` rows are held at once: each chunk is sorted by length, run, and given back in order.
    """
    for chunk in _chunks(rows, chunk_rows):
        good = [row for row in chunk if isinstance(row, Example)]
        outputs = iter(predictor.outputs(predictor.logits([row.texts for row in good], batch_size, on_batch))
                       if good else [])  # fmt: skip
        for row in chunk:
            yield row, next(outputs) if isinstance(row, Example) else None


def _check_config(cfg: PredictConfig) -> None:
    for name in ("batch_size", "chunk_rows", "max_seq_len", "threads"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise LadcError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if cfg.input != "-" and not Path(cfg.input).is_file():
        raise LadcError(f"input {cfg.input} does not exist")
    if cfg.output != "-" and cfg.input != "-" and Path(cfg.output).resolve() == Path(cfg.input).resolve():
        raise LadcError(f"--output {cfg.output} is the input file; write the predictions elsewhere")


def run_predict(cfg: PredictConfig, echo=print) -> dict:
    """Predict every row of `cfg.input` into `cfg.output` (written to a temp file and renamed when complete).

    Returns:
        {rows, skipped, output, artifact, engine, rows_per_s}.

    Raises:
        LadcError: bad options or target, and (without --skip-bad) the first bad row, naming its file and line.
    """
    import time

    from tqdm.auto import tqdm

    fmt = input_format(cfg.input, cfg.input_format)
    out_fmt = output_format(cfg.output, cfg.output_format)
    _check_config(cfg)
    predictor = open_predictor(cfg.target, cfg.artifact, cfg.task, cfg.max_seq_len, cfg.threads)
    fields = text_fields_of(cfg.text_fields, predictor)
    rows = read_examples(cfg.input, fmt, fields, cfg.id_field)
    written = skipped = 0
    started = time.perf_counter()
    # on stderr (stdout may be the predictions themselves: `--output -`), and only on a terminal (disable=None)
    progress = {"disable": None if cfg.progress else True, "dynamic_ncols": True}
    with tqdm(unit="rows", desc="predict", file=sys.stderr, **progress) as bar:
        with PredictionWriter(cfg.output, out_fmt, predictor.label_names) as writer:
            for row, output in predict_examples(predictor, rows, cfg.batch_size, cfg.chunk_rows, bar.update):
                if output is None:
                    if not cfg.skip_bad:
                        raise LadcError(row.message())
                    skipped += 1
                    continue
                writer.write(row.id, list(output["probabilities"].values()) if "probabilities" in output else None,
                             output.get("score"))  # fmt: skip
                written += 1
    elapsed = time.perf_counter() - started
    if skipped:
        echo(f"skipped {skipped} bad row(s) of {cfg.input}")
    return {"rows": written, "skipped": skipped, "output": cfg.output, "artifact": predictor.info["artifact"],
            "engine": predictor.info["engine"], "rows_per_s": round(written / elapsed, 1) if elapsed else None}  # fmt: skip
