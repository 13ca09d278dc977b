"""`ladc tune-teacher`: fine-tune a BERT-style encoder on a GLUE task with the shared training loop."""

from __future__ import annotations

from pathlib import Path

from ladc.runs.config import TuneTeacherConfig, check_config, to_dict
from ladc.runs.manifest import RunManifest
from ladc.runs.runs import create_run_dir, finalize_run, resolve_run_config, run_command, versions

__all__ = ["tune_teacher"]


@run_command("ladc tune-teacher")  # default output, and one process per run dir
def tune_teacher(cfg: TuneTeacherConfig) -> dict:
    """Fine-tune `cfg.model` on `cfg.data.task`; write an HF model dir + metrics.json to `cfg.output`.

    Returns:
        The metrics dict written to metrics.json.
    """
    from ladc.data.tasks import get_task
    from ladc.runs.model_names import resolve_model

    cfg = resolve_run_config(cfg)  # read-only; on --resume the saved config wins
    task = get_task(cfg.data.task)
    check_config(cfg)  # before the heavy imports below: a bad flag fails in a second
    resolve_model(cfg.model)

    from accelerate.utils import set_seed

    from ladc.data.training_data import prepare_data
    from ladc.training.lr import resolve_lr
    from ladc.training.models import check_inputs_fit, load_for_finetune, load_tokenizer
    from ladc.training.optimizer import OptimizerSpec
    from ladc.training.train import TrainPlan, fit, model_inputs, result_metrics

    optim = cfg.optim
    set_seed(optim.seed)  # once per command, before the classifier head is initialised
    model = load_for_finetune(cfg.model, task)  # first: it rejects non-BERT encoders with a clear message
    tokenizer = load_tokenizer(cfg.model)
    check_inputs_fit(tokenizer, model.config, cfg.data.max_seq_len, cfg.model)
    lr, lr_source = resolve_lr(optim.lr, model.config.hidden_size, "teacher")
    data = prepare_data(cfg.data, optim, tokenizer, task, _training_logits)
    run_dir = create_run_dir(cfg)

    def loss_fn(modules, batch):
        return {"loss": modules["model"](**model_inputs(batch), labels=batch["labels"]).loss}

    def save_fn(modules, directory: Path) -> None:
        modules["model"].save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)

    plan = TrainPlan(
        trainable={"model": model},
        optimizers=[OptimizerSpec("model", ("model",), lr, optim.weight_decay, optim.max_grad_norm)],
        loss_fn=loss_fn,
        save_fn=save_fn,
    )
    result = fit(
        plan, make_loader=data.make_loader, evaluate=data.select, optim=optim,
        run_dir=run_dir, task=task, resume=cfg.resume, select_split=data.select_split, score_dev=data.score_dev,
        select_examples=data.select_examples,
    )  # fmt: skip
    metrics = {**result_metrics(result, task, len(data.train), data.holdout_examples), "lr": lr, "lr_source": lr_source}
    manifest = RunManifest(
        kind="teacher", task=task.name, base_model=cfg.model, data=to_dict(cfg.data), config=to_dict(cfg),
        dev=result.dev, lr=lr, lr_source=lr_source, mixed_precision=result.mixed_precision,
        versions=versions(), holdout=data.holdout,
    )  # fmt: skip
    finalize_run(run_dir, manifest, metrics)
    return metrics


def _training_logits(model, accelerator, loader):
    """Training's evaluators run the model through the deploy runner, as export parity, bench and evaluate do."""
    from ladc.deploy.runners import predict_logits
    from ladc.engines.torch_engine import TorchRunner

    return predict_logits(TorchRunner(model, accelerator=accelerator), loader)
