"""Loading teachers, building students from a teacher config (layer-copy init), and model checks."""

from __future__ import annotations

from ladc.data.tasks import TASKS, TaskSpec
from ladc.errors import LadcError
from ladc.runs.model_names import resolve_model

__all__ = [
    "load_tokenizer",
    "load_for_finetune",
    "load_classifier",
    "check_encoder_config",
    "task_label_kwargs",
    "STUDENT_INITS",
    "resolve_student_init",
    "build_student",
    "check_inputs_fit",
]

# encoders whose layer stack ladc knows how to slice (BERT family: `encoder.layer`)
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


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


def _from_pretrained(loader, name: str, **kwargs):
    """`loader.from_pretrained(resolve_model(name))`, with unreadable weights (truncated, corrupted) as a LadcError."""
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(resolve_model(name), **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"cannot load model weights from '{name}': {first}") from None


def check_inputs_fit(tokenizer, config, max_seq_len: int, name: str) -> None:
    """Raise LadcError unless every token id and position the tokenizer can produce has an embedding row.

    A tokenizer larger than the embedding matrix, or a max_seq_len beyond the position table, would otherwise fail
    deep inside the first forward pass with an index error.
    """
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise LadcError(
            f"the tokenizer of {name} has {len(tokenizer)} tokens but the model's vocabulary has {vocab_size}; "
            "use the tokenizer the model was trained with"
        )
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= (config.pad_token_id or 0) + 1  # RoBERTa's position ids start after the padding index
    if positions is not None and max_seq_len > positions:
        raise LadcError(f"max_seq_len {max_seq_len} exceeds the {positions} positions of {name}; pass --max-seq-len")


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    resolved = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError, TypeError) as exc:
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
    from transformers.utils import logging as hf_logging

    config = load_config(name)
    check_encoder_config(config, name)
    # a fresh head is the point of fine-tuning: transformers' two-line "newly initialized ... TRAIN this model"
    # warning would only bury a later one-line error
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return _from_pretrained(
            AutoModelForSequenceClassification, name, ignore_mismatched_sizes=True, **task_label_kwargs(task)
        )
    finally:
        hf_logging.set_verbosity(verbosity)


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
    if task is not None:
        _check_labels(model_dir, config, task)
    return _from_pretrained(AutoModelForSequenceClassification, model_dir)


def _check_labels(model_dir: str, config, task: TaskSpec) -> None:
    """Raise LadcError when the model was tuned for another task: its ladc.json, or GLUE label names, say so."""
    from ladc.runs.manifest import read_manifest

    recorded = getattr(read_manifest(model_dir), "task", None)
    if recorded is not None and recorded != task.name:
        raise LadcError(f"model dir {model_dir} was tuned on {recorded} (its ladc.json), not {task.name}")
    if task.is_regression:
        return
    names = [str(config.id2label.get(i, "")).lower() for i in range(config.num_labels)]
    glue_names = {name for spec in TASKS.values() for name in spec.label_names}
    # only labels that are GLUE names are compared: a hub model's own names (neg/pos) are not evidence of a mismatch
    if set(names) <= glue_names and names != list(task.label_names):
        raise LadcError(
            f"model dir {model_dir} predicts labels {', '.join(names)} but task {task.name} has "
            f"{', '.join(task.label_names)}"
        )


STUDENT_INITS = ("even", "first", "teacher", "prune", "random")
# inits that copy whole teacher-width layers: a narrower student can take none of them
_LAYER_COPY_INITS = ("even", "first", "teacher")


def resolve_student_init(init: str | None, narrower: bool, init_from: str | None = None) -> str:
    """The init a student is built with: `init`, or (None) `prune` when narrower, `even` when `init_from` names a
    checkpoint to copy from, and `teacher` otherwise.

    Why `teacher` by default: a student started from the pretrained layers (`even`) had to learn the task through the
    hidden loss alone and stayed at chance for a whole epoch on a sentence-pair task whose teacher reached 93 %; the
    fine-tuned teacher's own layers and head learn it from the first steps (benchmarks/RESULTS.md, issue 22). A
    pruned student is sliced from the fine-tuned teacher for the same reason.

    Raises:
        LadcError: an unknown init, or a layer-copy init for a narrower student.
    """
    from ladc.errors import did_you_mean

    if init is None:
        return "prune" if narrower else "even" if init_from else "teacher"
    if init not in STUDENT_INITS:
        raise LadcError(
            f"--student-init '{init}' is unknown{did_you_mean(init, STUDENT_INITS)}; expected one of "
            f"{', '.join(STUDENT_INITS)}"
        )
    if narrower and init in _LAYER_COPY_INITS:
        raise LadcError(
            f"--student-init {init} copies whole teacher layers, which do not fit a student narrower than the "
            "teacher; use --student-init prune (slice the teacher) or random"
        )
    return init


def _check_init_source(teacher_config, source_config, name: str) -> None:
    """Raise LadcError unless `source_config` has the teacher's vocabulary and layer shapes."""
    if source_config.vocab_size != teacher_config.vocab_size:
        raise LadcError(
            f"tokenizer or vocabulary mismatch between teacher (vocab {teacher_config.vocab_size}) "
            f"and student init {name} (vocab {source_config.vocab_size})"
        )
    for field in ("hidden_size", "intermediate_size", "num_attention_heads", "max_position_embeddings"):
        teacher_value, source_value = getattr(teacher_config, field, None), getattr(source_config, field, None)
        if teacher_value != source_value:
            raise LadcError(
                f"student init {name} has {field}={source_value} but the teacher has {field}={teacher_value}; "
                "layer-copy init needs the checkpoint the teacher was fine-tuned from"
            )


def _load_init_source(init_from, teacher_config):
    """The base encoder (BertModel-like) to copy layers from: a loaded model, or a path/hub name/alias."""
    from transformers import AutoModel, PreTrainedModel

    if isinstance(init_from, PreTrainedModel):
        _check_init_source(teacher_config, init_from.config, type(init_from).__name__)
        return init_from.base_model
    config = load_config(init_from)
    check_encoder_config(config, init_from)
    _check_init_source(teacher_config, config, init_from)
    return _from_pretrained(AutoModel, init_from).base_model


def _copy_module(target, source, what: str) -> None:
    """Copy `source`'s parameters into `target` exactly (strict: same keys and shapes)."""
    try:
        target.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as exc:
        raise LadcError(f"cannot copy {what} into the student: {str(exc).strip().splitlines()[0]}") from None


def _student_mapping(mapping, init: str, teacher_layers: int, student_layers: int) -> tuple[int, ...]:
    from ladc.training.lad import layer_map

    default = layer_map(teacher_layers, student_layers)  # also rejects S >= T
    if init == "first":  # copies layers 1..S whatever the distillation mapping is
        return tuple(range(1, student_layers + 1))
    if mapping is None:
        return default
    mapping = tuple(int(layer) for layer in mapping)
    if len(mapping) != student_layers or not all(1 <= layer <= teacher_layers for layer in mapping):
        raise LadcError(
            f"student layer mapping {list(mapping)} must list {student_layers} teacher layers in 1..{teacher_layers}"
        )
    return mapping


def build_student(teacher, num_layers: int, init: str = "even", init_from=None, mapping=None, config=None):
    """A shallower copy of the teacher's architecture, initialized by copying layers.

    The student is the teacher's class (via `AutoModelForSequenceClassification.from_config`) with the teacher's
    config (hidden size, labels, problem_type) but `num_hidden_layers=num_layers`. Layers are 1-based below.

    init:
        - `even`: embeddings, pooler and teacher layer `mapping[j]` (default `layer_map(T, S)`) for student layer j,
          from the pretrained checkpoint `init_from`; fresh classifier head.
        - `first`: embeddings, pooler and layers 1..S from `init_from`; fresh head.
        - `teacher`: embeddings, pooler, mapped layers and the classifier head from the fine-tuned `teacher`.
        - `random`: nothing copied.

    Unlike the LAD reference (which leaves student embeddings random) embeddings are copied.

    Args:
        teacher: fine-tuned `...ForSequenceClassification` model with T layers.
        num_layers: S, 1 <= S < T.
        init: one of `STUDENT_INITS`.
        init_from: pretrained checkpoint (path, hub name, alias like `minilm`, or a loaded model) for even/first.
        mapping: optional 1-based teacher layer per student layer; used by even/teacher, ignored by first/random.
        config: the student's HF config for `random` (a narrower shape, `ladc.training.pruning.student_config`); None: the
            teacher's with `num_layers`. A pruned student is built by `ladc.training.pruning.slice_teacher` instead.

    Returns:
        The student model (S layers), in train mode like any fresh HF model.

    Raises:
        LadcError: unknown init, S >= T, missing init_from, or an init_from whose vocabulary/shapes differ.
    """
    import copy

    from transformers import AutoModelForSequenceClassification

    from ladc.errors import did_you_mean

    if init == "prune":
        raise LadcError("student init 'prune' is built by ladc.training.pruning.slice_teacher, not build_student")
    if init not in STUDENT_INITS:
        raise LadcError(
            f"student init '{init}' is unknown{did_you_mean(init, STUDENT_INITS)}; expected one of "
            f"{', '.join(STUDENT_INITS)}"
        )
    check_encoder_config(teacher.config, type(teacher).__name__)
    teacher_layers = teacher.config.num_hidden_layers
    layers = _student_mapping(mapping, init, teacher_layers, num_layers)
    if init in ("even", "first") and init_from is None:
        raise LadcError(f"student init '{init}' needs init_from: the pretrained checkpoint the teacher was tuned from")

    if init == "random" and config is not None:
        return AutoModelForSequenceClassification.from_config(config)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_layers
    student = AutoModelForSequenceClassification.from_config(config)
    if init == "random":
        return student
    source = teacher.base_model if init == "teacher" else _load_init_source(init_from, teacher.config)
    if len(source.encoder.layer) < max(layers):
        raise LadcError(
            f"student init {init_from} has {len(source.encoder.layer)} layers; the mapping needs layer {max(layers)}"
        )
    target = student.base_model
    _copy_module(target.embeddings, source.embeddings, "embeddings")
    for student_index, teacher_layer in enumerate(layers):
        _copy_module(
            target.encoder.layer[student_index], source.encoder.layer[teacher_layer - 1], f"layer {teacher_layer}"
        )
    if getattr(target, "pooler", None) is not None and getattr(source, "pooler", None) is not None:
        _copy_module(target.pooler, source.pooler, "pooler")
    if init == "teacher":
        _copy_head(student, teacher)
    return student


def _copy_head(student, teacher) -> None:
    """Copy every parameter outside the base encoder (the classification head) from teacher to student."""
    prefix = student.base_model_prefix + "."
    head_state = {k: v for k, v in teacher.state_dict().items() if not k.startswith(prefix)}
    missing, unexpected = student.load_state_dict(head_state, strict=False)
    missing = [k for k in missing if not k.startswith(prefix)]
    if missing or unexpected or not head_state:
        raise LadcError(f"cannot copy the teacher's classifier head: missing {missing}, unexpected {unexpected}")
