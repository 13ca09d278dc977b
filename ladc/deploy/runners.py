"""The only place that runs a model on a batch: one runner protocol for every engine, `predict_logits` over a loader,
`open_artifact` for export.json entries and `load_runner` for bench targets. Export parity, `--select fastest`,
bench, predict, serve, `ladc evaluate` and training eval all go through here.

A runner maps a batch of model inputs (numpy or torch, (B, S); extra keys such as labels are ignored) to logits
(B, C) float32 numpy. It splits each call into `prepare` (host->device copies, kept out of timings), `run` (the timed
part, device-synchronised) and `to_numpy`; a runner whose outputs are sharded across processes also has `gather`.
Each engine's runner class and how it opens one live in its module under ladc/engines/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ladc.data.tasks import TaskSpec
from ladc.engines import ENGINES, entry_engine, get_engine
from ladc.engines.base import BenchTarget, LoadOptions
from ladc.errors import LadcError

__all__ = ["predict_logits", "open_artifact", "load_runner"]


def predict_logits(runner, loader) -> tuple[np.ndarray, np.ndarray | None]:
    """Run a runner over every batch of a loader, in loader order.

    Args:
        runner: any runner (see the module docstring).
        loader: an iterable of batches {input_ids, attention_mask[, token_type_ids]: (B, S)[, labels: (B,)]}
            (a DataLoader with shuffle=False, or a list of numpy batches).

    Returns:
        (logits (N, C) float32, labels (N,) as the loader gave them, or None when its batches carry none).
    """
    gather = getattr(runner, "gather", None)
    all_logits, all_labels = [], []
    for batch in loader:
        output, labels = runner.run(runner.prepare(batch)), batch.get("labels")
        if gather is not None:
            output, labels = gather(output, labels)
        all_logits.append(runner.to_numpy(output))
        if labels is not None:
            all_labels.append(labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels))
    labels = np.concatenate(all_labels) if all_labels else None
    return np.concatenate(all_logits).astype(np.float32), labels


def load_runner(
    target: BenchTarget,
    task: TaskSpec,
    provider: str = "cpu",
    threads: int | None = 1,
    graph_level: str = "all",
    tensorrt: bool = False,
    spinning: bool = True,
):
    """Load a target with its engine and check it fits the task (inputs, label count, tokenizer).

    Returns:
        (runner, tokenizer, model config, settings dict recorded in the report: engine, device, providers, threads).

    Raises:
        LadcError: label count differs from the task's, inputs the tokenizer cannot feed, tokenizer mismatch,
            corrupted model file, a provider fallback, or an unknown engine.
    """
    from ladc.training.models import load_tokenizer

    engine = get_engine(target.engine)
    tokenizer = load_tokenizer(target.model_dir)
    options = LoadOptions(provider, threads, graph_level, tensorrt, spinning)
    runner, config, settings = engine.load(target, task, tokenizer, options)
    return runner, tokenizer, config, settings


def open_artifact(
    root: Path, entry: dict, threads: int | None = None, spinning: bool = True, expected_inputs: list[str] | None = None
):
    """A runner for one export.json artifact entry (engine, path, provider, precision, runtime).

    `expected_inputs` (onnxruntime graphs): the input names the caller feeds; see `open_session`.

    Raises:
        LadcError: the file is missing or unreadable, or its engine is unknown or not installed.
    """
    path = Path(root) / entry["path"]
    if not path.is_file():
        raise LadcError(f"{path} does not exist")
    name = entry_engine(entry)
    if name not in ENGINES:
        raise LadcError(f"{path}: unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    return ENGINES[name].open_artifact(path, entry, threads, spinning, expected_inputs)
