"""`ladc tune-teacher`: fine-tune a BERT-style encoder on a GLUE task with the shared training loop."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ladc.config import DataConfig, OptimConfig, TuneTeacherConfig, save_yaml, to_dict
from ladc.errors import LadcError
from ladc.io import atomic_write_json, check_output_path, prepare_run_dir
from ladc.runlock import launcher_rank, locked_run

__all__ = [
    "tune_teacher",
    "finalize_run",
    "make_evaluator",
    "resolve_run_config",
    "create_run_dir",
    "versions",
    "RUN_MANIFEST",
]

RUN_MANIFEST = "ladc.json"  # task + data source of a run dir, read by export, bench and pipeline


def versions() -> dict[str, str]:
    """Package versions recorded in every manifest, so a run can be reproduced."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "ladc",
        "torch",
        "transformers",
        "datasets",
        "accelerate",
        "onnx",
        "onnxruntime",
        "optimum",
        "optimum-onnx",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def make_evaluator(data: DataConfig, tokenizer, task, batch_size: int):
    """(model, accelerator) -> dev metrics on the task's first dev split, tokenized once."""
    from ladc.data import load_tokenized, make_collator, make_dataloader
    from ladc.train import evaluate_logits, predict_logits

    dev = load_tokenized(data, tokenizer, "dev")
    collator = make_collator(tokenizer, task)

    def evaluate(model, accelerator) -> dict[str, float]:
        loader = make_dataloader(dev, collator, batch_size, shuffle=False)
        if accelerator is not None:
            loader = accelerator.prepare(loader)
        logits, labels = predict_logits(model, loader, accelerator)
        return evaluate_logits(task, logits, labels)

    return evaluate


def prepare_data(data: DataConfig, optim: OptimConfig, tokenizer, task):
    """Tokenize train and dev once; returns (train dataset, epoch -> train DataLoader, dev evaluator)."""
    from ladc.data import load_tokenized, make_collator, make_dataloader

    train = load_tokenized(data, tokenizer, "train")
    collator = make_collator(tokenizer, task)
    evaluate = make_evaluator(data, tokenizer, task, optim.eval_batch_size)

    def make_loader(epoch: int):
        return make_dataloader(
            train, collator, optim.batch_size, shuffle=True, seed=optim.seed, epoch=epoch,
            group_by_length=optim.group_by_length, num_workers=optim.num_workers,
        )  # fmt: skip

    return train, make_loader, evaluate


# optimisation settings that must be > 0 when set (None = unset), and those that must be >= 0
_POSITIVE = ("lr", "batch_size", "grad_accum", "eval_batch_size", "log_steps", "max_steps", "eval_steps", "save_steps")
_NON_NEGATIVE = ("weight_decay", "max_grad_norm", "num_workers", "warmup_steps")


def check_optim(optim: OptimConfig) -> None:
    for name in _POSITIVE:
        value = getattr(optim, name)
        if value is not None and value <= 0:
            raise LadcError(f"{name} must be positive, got {value}")
    for name in _NON_NEGATIVE:
        value = getattr(optim, name)
        if value is not None and value < 0:
            raise LadcError(f"{name} must be >= 0, got {value}")
    if optim.max_steps is None and optim.epochs <= 0:
        raise LadcError(f"epochs must be positive, got {optim.epochs}")
    if not 0 <= optim.warmup_ratio < 1:
        raise LadcError(f"warmup_ratio must be in [0, 1), got {optim.warmup_ratio}")
    if optim.mixed_precision not in ("no", "bf16", "fp16", "auto"):
        raise LadcError(f"mixed_precision '{optim.mixed_precision}' is not one of: no, bf16, fp16, auto")


def resolve_run_config(cfg, cfg_cls):
    """Check the run dir without touching it; on --resume the saved config wins so the run continues unchanged.

    Raises:
        LadcError: the dir exists without --overwrite/--resume, or the run to resume already finished.
    """
    from ladc.config import from_dict, load_saved_config

    run_dir = check_output_path(cfg.output)  # a file on the way or a read-only location fails before any model loads
    if cfg.resume and cfg.overwrite:
        raise LadcError("--resume continues a run and --overwrite deletes it; pass one of them")
    if cfg.resume and (run_dir / "metrics.json").is_file():
        raise LadcError(f"run {run_dir} already finished (metrics.json exists); use --overwrite to start again")
    # other launcher ranks: rank 0 checks and creates the run dir, and may have made it already
    if not (cfg.resume or cfg.overwrite) and run_dir.is_dir() and any(run_dir.iterdir()) and launcher_rank() == 0:
        raise LadcError(
            f"output dir {run_dir} already exists; pass --overwrite to replace it or --resume to continue it"
        )
    if cfg.resume and run_dir.is_dir():
        from ladc.train import latest_checkpoint

        checkpoint = latest_checkpoint(run_dir, warn=False)  # fit() warns when it resumes past a damaged one
        if checkpoint is not None:
            check_checkpoint(checkpoint)
    loaded = load_saved_config(cfg_cls, run_dir) if cfg.resume else None
    if loaded is not None:
        # the output as given now: a relative path saved from another working directory would point elsewhere
        loaded.update({"resume": True, "overwrite": False, "output": cfg.output})
        cfg = from_dict(cfg_cls, loaded, "")
    return cfg


def check_checkpoint(checkpoint: Path) -> None:
    """Raise LadcError when a file --resume would load from `checkpoint` is damaged (truncated, overwritten).

    Reads headers and checksums only (safetensors header, zip CRCs of torch.save files, JSON), so a bad file is named
    before any model loads instead of failing inside accelerate's load_state.
    """
    import zipfile

    from safetensors import SafetensorError, safe_open

    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as handle:
                    handle.keys()
            elif path.suffix in (".bin", ".pkl"):  # torch.save writes zip archives whatever the extension
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken:
                    raise ValueError(f"{broken} fails its checksum")
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, SafetensorError) as exc:
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise LadcError(
                f"checkpoint {checkpoint} is damaged ({path.name}: {reason}); pass --overwrite instead of --resume "
                "to start the run again"
            ) from None


def create_run_dir(cfg) -> Path:
    """Create (or, with --overwrite, replace) the run dir and save the resolved config into it.

    Called only after the model and data loaded, so bad input never leaves an empty run dir behind.
    """
    if launcher_rank() != 0:  # only the main process creates and finalizes run dirs
        return Path(cfg.output)
    run_dir = prepare_run_dir(cfg.output, overwrite=cfg.overwrite, resume=cfg.resume)
    saved = run_dir / "config.yaml"
    save_yaml(cfg, saved, header=f"resolved config of {run_dir}; rerun with: ladc <command> --config {saved}")
    return run_dir


def _link_or_copy(source, target) -> None:
    """A hard link (no copy of the weights, the source stays intact); a copy where the file system has no links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def finalize_run(run_dir: Path, manifest: dict, metrics: dict) -> None:
    """Link the best checkpoint's files into the run dir root, write ladc.json and metrics.json, then clean up.

    metrics.json is written last on purpose: its presence marks a finished run (pipeline skips on it). best/ and
    checkpoints/ stay until then, so a run killed while finalizing is still resumable.
    """
    from ladc.faults import kill_point

    if launcher_rank() != 0:  # the main process writes the files; the other ranks wrote nothing
        return
    best = run_dir / "best"
    if not best.is_dir():
        raise RuntimeError(f"no best checkpoint in {best}: training ended without an evaluation")
    for item in best.iterdir():
        target, staged = run_dir / item.name, run_dir / f".{item.name}.tmp"
        if item.is_dir():
            shutil.copytree(item, staged, copy_function=_link_or_copy, dirs_exist_ok=True)
        else:
            staged.unlink(missing_ok=True)
            _link_or_copy(item, staged)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staged, target)
        if staged.exists():  # rename(2) does nothing when both names link one file (left by a killed finalize)
            staged.unlink()
        kill_point("finalize")
    atomic_write_json(run_dir / RUN_MANIFEST, manifest)
    kill_point("finalize-manifest")
    atomic_write_json(run_dir / "metrics.json", metrics)
    shutil.rmtree(best, ignore_errors=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


@locked_run("ladc tune-teacher")  # one process per run dir: a second one is refused, naming this one
def tune_teacher(cfg: TuneTeacherConfig) -> dict:
    """Fine-tune `cfg.model` on `cfg.data.task`; write an HF model dir + metrics.json to `cfg.output`.

    Returns:
        The metrics dict written to metrics.json.
    """
    from ladc.models import resolve_model
    from ladc.tasks import get_task

    cfg = resolve_run_config(cfg, TuneTeacherConfig)  # read-only; on --resume the saved config wins
    task = get_task(cfg.data.task)
    check_optim(cfg.optim)  # before the heavy imports below: a bad flag fails in a second
    resolve_model(cfg.model)

    from accelerate.utils import set_seed

    from ladc.models import check_inputs_fit, load_for_finetune, load_tokenizer
    from ladc.train import OptimizerSpec, TrainPlan, fit, model_inputs, result_metrics

    optim = cfg.optim
    set_seed(optim.seed)  # once per command, before the classifier head is initialised
    model = load_for_finetune(cfg.model, task)  # first: it rejects non-BERT encoders with a clear message
    tokenizer = load_tokenizer(cfg.model)
    check_inputs_fit(tokenizer, model.config, cfg.data.max_seq_len, cfg.model)
    train, make_loader, evaluate = prepare_data(cfg.data, optim, tokenizer, task)
    run_dir = create_run_dir(cfg)

    def loss_fn(modules, batch):
        return {"loss": modules["model"](**model_inputs(batch), labels=batch["labels"]).loss}

    def save_fn(modules, directory: Path) -> None:
        modules["model"].save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)

    plan = TrainPlan(
        trainable={"model": model},
        optimizers=[OptimizerSpec("model", ("model",), optim.lr, optim.weight_decay, optim.max_grad_norm)],
        loss_fn=loss_fn,
        save_fn=save_fn,
    )
    result = fit(
        plan, train_dataset=train, make_loader=make_loader, evaluate=evaluate, optim=optim,
        run_dir=run_dir, task=task, resume=cfg.resume,
    )  # fmt: skip
    metrics = result_metrics(result, task, len(train))
    manifest = {
        "kind": "teacher",
        "task": task.name,
        "base_model": cfg.model,
        "data": to_dict(cfg.data),
        "config": to_dict(cfg),
        "dev": result.best_metrics,
        "versions": versions(),
    }
    finalize_run(run_dir, manifest, metrics)
    return metrics
