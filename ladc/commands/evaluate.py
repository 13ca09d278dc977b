"""`ladc evaluate`: a model dir's task metrics on dev, and GLUE-submission TSVs for test predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ladc.errors import LadcError
from ladc.runs.config import EvaluateConfig, check_config
from ladc.runs.io import atomic_write_json, atomic_write_text, check_output_path
from ladc.runs.runs import data_config_from_run

__all__ = ["run_evaluate", "data_config_from_run", "write_submission"]


def write_submission(path: Path, task, predictions: np.ndarray, idx: np.ndarray) -> None:
    """GLUE leaderboard format: `index<TAB>prediction` with label names for classification tasks."""
    lines = ["index\tprediction"]
    for i, pred in zip(idx.tolist(), predictions.tolist(), strict=True):
        value = f"{pred:.3f}" if task.is_regression else task.label_names[int(pred)]
        lines.append(f"{i}\t{value}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _output_path(cfg: EvaluateConfig, split: str) -> Path:
    return Path(cfg.output) if cfg.output else Path(cfg.model_dir) / f"eval-{split}.json"


def _check_config(cfg: EvaluateConfig) -> None:
    """Everything that can be checked before a model loads."""
    from ladc.runs.model_names import resolve_model

    check_config(cfg)
    resolve_model(cfg.model_dir)  # a missing local dir or a file; hub names pass
    if cfg.output is not None:
        check_output_path(Path(cfg.output).parent)  # a file on the way fails before the model runs
        if Path(cfg.output).is_dir():
            raise LadcError(f"--output {cfg.output} is a directory; expected the path of a metrics JSON file")


def run_evaluate(cfg: EvaluateConfig) -> dict:
    """Evaluate a sequence classifier dir on dev (and optionally write test predictions)."""
    _check_config(cfg)  # before the heavy imports below: a bad option fails in a second

    import dataclasses

    from ladc.data.data import dev_loader
    from ladc.data.metrics import metrics_from_logits, predictions_from_logits
    from ladc.data.tasks import get_task
    from ladc.deploy.runners import predict_logits
    from ladc.engines.torch_engine import TorchRunner
    from ladc.training.models import check_inputs_fit, load_classifier, load_tokenizer

    data = data_config_from_run(cfg.model_dir, cfg.task, cfg.data_dir)
    if cfg.dev_limit is not None or cfg.max_seq_len is not None:
        data = dataclasses.replace(data, dev_limit=cfg.dev_limit, max_seq_len=cfg.max_seq_len or data.max_seq_len)
    task = get_task(data.task)
    model = load_classifier(cfg.model_dir, task)
    tokenizer = load_tokenizer(cfg.model_dir)
    check_inputs_fit(tokenizer, model.config, data.max_seq_len, cfg.model_dir)
    runner = TorchRunner(model)
    split = task.dev_split(cfg.split)
    logits, labels = predict_logits(runner, dev_loader(data, tokenizer, task, cfg.batch_size, split))
    metrics = metrics_from_logits(task, logits, labels)
    result = {
        "model_dir": cfg.model_dir,
        "task": task.name,
        "split": split,
        "examples": len(labels),
        "metrics": metrics,
    }
    if cfg.predict:
        files = []
        for test_split, name in zip(task.test_splits, task.submission_files, strict=True):
            loader = dev_loader(data, tokenizer, task, cfg.batch_size, test_split)
            test_logits, _ = predict_logits(runner, loader)
            path = Path(cfg.model_dir) / "predictions" / name
            idx = np.asarray(loader.dataset["idx"])  # the loader keeps dataset order
            write_submission(path, task, predictions_from_logits(test_logits, task), idx)
            files.append(str(path))
        result["predictions"] = files
    output = _output_path(cfg, split)
    atomic_write_json(output, result)
    result["output"] = str(output)
    return result
