"""`ladc tune-teacher`: fine-tune a BERT-style encoder on a GLUE task with the shared training loop."""

from __future__ import annotations

from pathlib import Path

from ladc.config import DataConfig, OptimConfig, TuneTeacherConfig, to_dict
from ladc.errors import LadcError
from ladc.runs import RunManifest, create_run_dir, finalize_run, resolve_run_config, run_command, versions

__all__ = ["tune_teacher", "make_evaluator", "prepare_data", "check_optim"]


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


@run_command("ladc tune-teacher")  # default output, and one process per run dir
def tune_teacher(cfg: TuneTeacherConfig) -> dict:
    """Fine-tune `cfg.model` on `cfg.data.task`; write an HF model dir + metrics.json to `cfg.output`.

    Returns:
        The metrics dict written to metrics.json.
    """
    from ladc.models import resolve_model
    from ladc.tasks import get_task

    cfg = resolve_run_config(cfg)  # read-only; on --resume the saved config wins
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
    manifest = RunManifest(
        kind="teacher", task=task.name, base_model=cfg.model, data=to_dict(cfg.data), config=to_dict(cfg),
        dev=result.best_metrics, versions=versions(),
    )  # fmt: skip
    finalize_run(run_dir, manifest, metrics)
    return metrics
