"""`ladc export`: every deployable artifact of a classifier (each engine's: ONNX Runtime, OpenVINO, PyTorch bf16),
each checked against PyTorch on real dev data, and with `--select fastest` ranked by speed on this machine.

The rows, their files and builders are the engines' (ladc/engines/, gathered in ladc/deploy/artifacts.py); this module
validates the config, writes model.onnx, runs the table's builders into one directory (atomically), then parity
(ladc/deploy/parity.py) and, under --select, the ranking (ladc/deploy/select.py). The directory is what
`ORTModelForSequenceClassification.from_pretrained(OUT)` loads (`model.onnx`, the others via `file_name=`), and its
OpenVINO IR follows optimum-intel's layout; each engine module's docstring lists the files it writes.

Every artifact is then compared with PyTorch on real dev data (ladc/deploy/parity.py); a miss raises LadcError after the
directory and its export.json (which records the failure) are in place (under --select only a failing fp32 graph
does; other failures are left out of the ranking).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

from ladc.deploy.artifacts import wanted_artifacts
from ladc.engines import ENGINES, entry_engine
from ladc.engines.base import Artifact, BuildContext
from ladc.errors import LadcError
from ladc.runs.config import DataConfig, ExportConfig, check_config, to_dict
from ladc.runs.export_manifest import ExportManifest, read_export_manifest, write_export_manifest
from ladc.runs.faults import kill_point
from ladc.runs.runs import check_output, run_command

__all__ = ["export_onnx", "verify_export"]

# ----------------------------------------------------------------------------- config checks


def _check_config(cfg: ExportConfig) -> None:
    check_config(cfg)  # each knob's own check (ladc/runs/config.py); below, what needs the engines, CUDA or the disk
    if (cfg.exclude_nodes or cfg.keep_head_fp32) and cfg.quantize is None:
        raise LadcError("--exclude-nodes/--keep-head-fp32 need --quantize dynamic")
    unknown = [backend for backend in cfg.backends if backend not in ENGINES]
    if unknown or not cfg.backends:
        raise LadcError(
            f"--backend {','.join(cfg.backends)!r}: expected a comma-separated subset of {', '.join(ENGINES)}"
        )
    for name in cfg.backends if cfg.select is None else ():  # under --select a missing engine is skipped instead
        reason = ENGINES[name].missing(True)
        if reason:
            raise LadcError(f"--backend {name}: {reason}")
    for engine in _built_engines(cfg):
        engine.check_export(cfg)
    check_output(cfg.output, overwrite=cfg.overwrite)


def _built_engines(cfg: ExportConfig) -> list:
    """The engines whose rows this config may build: those it names, and those with a required row (model.onnx)."""
    return [engine for name, engine in ENGINES.items()
            if name in cfg.backends or any(row.required for row in engine.artifacts)]  # fmt: skip


def _data_config(cfg: ExportConfig) -> DataConfig:
    """Task and data dir: explicit flags win, else the model dir's ladc.json (tune-teacher and distill write it)."""
    import dataclasses

    from ladc.runs.runs import data_config_from_run

    data = data_config_from_run(cfg.model, cfg.task, cfg.data_dir)
    return dataclasses.replace(data, dev_limit=cfg.parity_samples, cache_dir=cfg.cache_dir or data.cache_dir)


# ----------------------------------------------------------------------------- export


@contextmanager
def _quiet_optimum():
    """optimum warns that opset 17 is below its recommended 18 and logs its own (random-input) validation;
    our parity on dev data replaces both, so keep the console for what matters."""
    loggers = [logging.getLogger(name) for name in ("optimum", "optimum.exporters.onnx", "optimum.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_fp32(cfg: ExportConfig, build: Path) -> None:
    from optimum.exporters.onnx import main_export

    with _quiet_optimum():
        main_export(
            cfg.model,
            build,
            task="text-classification",
            opset=cfg.opset,
            device=cfg.device,
            atol=1e-4,  # optimum-onnx 0.1.0 defaults BERT to 1e-5; ours is the DESIGN bound (and parity reruns it)
            library_name="transformers",
        )


def _selected_config(cfg: ExportConfig) -> tuple[ExportConfig, list[dict]]:
    """Under --select fastest: every engine that can run here, fused and INT8 included; returns the config to build
    and the backends skipped with the reason (recorded in export.json)."""
    import dataclasses

    if cfg.select is None:
        return cfg, []
    reasons = {name: engine.skip_reason(cfg) for name, engine in ENGINES.items()}
    skipped = [{"backend": name, "reason": reason} for name, reason in reasons.items() if reason]
    backends = tuple(name for name, reason in reasons.items() if not reason)
    chosen = dataclasses.replace(cfg, backends=backends, optimize=True, quantize=cfg.quantize or "dynamic")
    return chosen, skipped


def _build_artifacts(cfg: ExportConfig, build: Path, model, calibration) -> list[dict]:
    """Write every artifact the config asks for into `build`, in table order; returns their manifest entries
    (without parity)."""
    _export_fp32(cfg, build)
    rows = wanted_artifacts(cfg)
    context = BuildContext(cfg=cfg, build=build, model=model, calibration=calibration)
    entries = []
    for row in rows:
        extra = row.build(context) if row.build else {}
        entries.append({"name": row.name, **extra})
        kill_point("artifact-done")  # test-only (ladc/runs/faults.py)
    for row, entry in zip(rows, entries):
        entry.update(_describe(build, row, cfg))
    for engine in _built_engines(cfg):  # its own figures (op counts) and checks (attention fused) on what it built
        built = [(row, entry) for row, entry in zip(rows, entries) if row.engine == engine.name]
        if built:
            engine.inspect(cfg, build, built, model)
    return entries


def _describe(root: Path, row: Artifact, cfg: ExportConfig) -> dict:
    engine = ENGINES[row.engine]
    on_cuda = engine.export_on_cuda and cfg.device == "cuda" and not row.quantized
    entry = {
        "path": row.file,
        "engine": row.engine,
        "size_mb": round(sum(f.stat().st_size for f in engine.files(root / row.file)) / 2**20, 3),  # MiB
        "precision": row.precision,
        "optimized": row.optimized,
        "quantized": row.quantized,
        # dynamic INT8 kernels exist on CPU only (on CUDA they fall back): run int8 on CPU, fp16 on CUDA
        "provider": "CUDAExecutionProvider" if on_cuda else "CPUExecutionProvider",
    }
    if row.runtime:
        entry["runtime"] = dict(row.runtime)
    return entry


# ----------------------------------------------------------------------------- entry points


def _card_tags(manifest: ExportManifest) -> tuple[str, ...]:
    """The model-card tags of the engines the manifest's artifacts run on."""
    present = {entry_engine(entry) for entry in manifest.artifacts}
    return tuple(engine.card_tag for name, engine in ENGINES.items() if name in present and engine.card_tag)


def _parity_inputs(data: DataConfig, model_dir: str, batch_size: int):
    from ladc.data.tasks import get_task
    from ladc.deploy.parity import load_parity_set
    from ladc.training.models import load_classifier, load_tokenizer

    task = get_task(data.task)
    model = load_classifier(model_dir, task)  # LadcError: not a sequence classifier, label count mismatch
    tokenizer = load_tokenizer(model_dir)
    return task, model, tokenizer, load_parity_set(data, tokenizer, task, batch_size)


def _calibration_feeds(data: DataConfig, tokenizer, task, samples: int) -> list[dict]:
    """A seeded random subset of the train split, one unpadded example per feed (static INT8 calibration)."""
    import dataclasses

    import numpy as np

    from ladc.data.data import load_tokenized, make_collator

    train = load_tokenized(dataclasses.replace(data, train_limit=samples, dev_limit=None), tokenizer, "train")
    if len(train) == 0:
        raise LadcError(f"the {task.name} train split is empty; OpenVINO INT8 calibration needs train examples")
    collate = make_collator(tokenizer, task)
    feeds = []
    for i in range(len(train)):
        batch = collate([train[i]])
        feeds.append({k: v.numpy().astype(np.int64) for k, v in batch.items() if k not in ("labels", "idx")})
    return feeds


@run_command("ladc export")  # default output, and one process per export dir
def export_onnx(cfg: ExportConfig, console=None) -> dict:
    """Export `cfg.model` to ONNX artifacts in `cfg.output` and check each against PyTorch on dev data.

    Args:
        cfg: the export settings (see ExportConfig).
        console: a rich Console for the parity table (default: stdout).

    Returns:
        The content written to OUT/export.json (`ExportManifest.to_dict()`).

    Raises:
        LadcError: bad input (missing model dir, not a classifier, opset, --fp16 without CUDA, existing output),
            attention not fused under --optimize, or an artifact outside its parity tolerance (after OUT is written).
    """
    from ladc.deploy.parity import print_parity_table, raise_on_failure, run_parity
    from ladc.runs.card import write_export_card
    from ladc.runs.io import atomic_dir
    from ladc.runs.runs import versions

    if not Path(cfg.model).is_dir():
        raise LadcError(f"model dir {cfg.model} does not exist (expected a fine-tuned HF sequence-classifier dir)")
    _check_config(cfg)
    data = _data_config(cfg)
    task, model, tokenizer, parity_set = _parity_inputs(data, cfg.model, cfg.parity_batch_size)
    build_cfg, skipped = _selected_config(cfg)
    output = Path(cfg.output)
    started = time.perf_counter()
    with atomic_dir(output) as build:
        manifest = ExportManifest(
            source_model=str(Path(cfg.model).resolve()),
            task=task.name,
            opset=cfg.opset,
            device=cfg.device,
            config=to_dict(cfg),
            versions=versions(),
            parity_set={
                "data_dir": data.data_dir,
                "max_seq_len": data.max_seq_len,
                "batch_size": cfg.parity_batch_size,
            },
            backends=list(build_cfg.backends),
            artifacts=_build_artifacts(
                build_cfg, build, model, lambda: _calibration_feeds(data, tokenizer, task, cfg.calibration_samples)
            ),
            skipped_backends=skipped or None,
        )
        manifest.export_s = round(time.perf_counter() - started, 2)
        run_parity(manifest, build, model, parity_set, task, cfg.allow_drop)
        if cfg.select:
            from ladc.deploy.select import select_fastest

            manifest.selection = select_fastest(
                manifest, build, tokenizer, parity_set, cfg, model.config.max_position_embeddings
            )
        manifest.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_export_manifest(build, manifest)
        write_export_card(build, manifest, name=output.name, engine_tags=_card_tags(manifest))  # README.md
        kill_point("export-rename")  # test-only (ladc/runs/faults.py)
    print_parity_table(manifest, console)
    if cfg.select:
        from ladc.deploy.select import print_selection

        print_selection(manifest, console)
    # under --select a failing reduced-precision artifact is dropped from the ranking, not an error; a failing fp32
    # graph means the export itself is wrong
    failed = [a for a in manifest.artifacts if not a["parity"]["accepted"]]
    if not cfg.select or any(a["name"] == "fp32" for a in failed):
        raise_on_failure(manifest, output)
    return manifest.to_dict()


def verify_export(
    out_dir: str | Path,
    *,
    allow_drop: float | None = None,
    parity_samples: int | None = None,
    data_dir: str | None = None,
    console=None,
) -> dict:
    """Re-run the parity check of an existing export dir (e.g. after editing or copying its graphs).

    The source model, task and parity settings come from OUT/export.json; the manifest is rewritten with the new
    figures. Raises LadcError like `export_onnx` when an artifact is outside its tolerance.
    """
    import dataclasses

    from ladc.deploy.parity import print_parity_table, raise_on_failure, run_parity
    from ladc.runs.card import write_export_card
    from ladc.runs.config import from_dict

    out_dir = Path(out_dir)
    manifest = read_export_manifest(out_dir)
    cfg = from_dict(ExportConfig, manifest.config, "export.json:config")
    cfg = dataclasses.replace(
        cfg,
        model=manifest.source_model,
        task=manifest.task,
        allow_drop=allow_drop,
        parity_samples=parity_samples if parity_samples is not None else cfg.parity_samples,
        data_dir=data_dir if data_dir is not None else cfg.data_dir,
    )
    data = _data_config(cfg)
    task, model, _, parity_set = _parity_inputs(data, cfg.model, cfg.parity_batch_size)
    run_parity(manifest, out_dir, model, parity_set, task, allow_drop)
    manifest.verified = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_export_manifest(out_dir, manifest)
    write_export_card(out_dir, manifest, engine_tags=_card_tags(manifest))
    print_parity_table(manifest, console)
    raise_on_failure(manifest, out_dir)
    return manifest.to_dict()
