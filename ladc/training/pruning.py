"""Width pruning of a fine-tuned BERT-style teacher into a narrower student (after Minitron, Muralidharan et al. 2024).

Three steps, each testable alone:
1. `measure_importance` runs the teacher on a few train batches and scores, from activations only (no gradients):
   hidden channels (mean |x| of every LayerNorm output of the residual stream: embeddings and each layer),
   attention heads (mean L2 norm of each head's context vector), each head's dimensions (mean |context|) and FFN
   neurons (mean |GELU output|), averaged over real tokens.
2. `select_kept` turns the scores into the kept indices for a target shape (pure: tensors in, indices out).
3. `slice_teacher` copies the teacher's weights at those indices into a student of the target shape: embeddings,
   Q/K/V/O, FFN, every LayerNorm, the pooler and the classifier. The student is a plain HF config of the teacher's
   class, so export and every engine treat it like any other model.

One set of hidden channels is kept for the whole residual stream (every layer adds into the same channels), and the
teacher's LayerNorms are sliced, not re-fitted: over fewer channels their statistics change, which distillation then
repairs (Minitron does the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ladc.errors import LadcError

__all__ = [
    "StudentShape",
    "Importance",
    "KeptUnits",
    "student_shape",
    "measure_importance",
    "select_kept",
    "slice_teacher",
    "student_config",
]


@dataclass(frozen=True)
class StudentShape:
    """A student's shape; every field a plain HF BERT config field."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def as_dict(self) -> dict:
        return {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_heads": self.num_heads,
        }

    def name(self) -> str:
        """`3L-192H-768I-6A`: layers, hidden, FFN, heads."""
        return f"{self.num_layers}L-{self.hidden_size}H-{self.intermediate_size}I-{self.num_heads}A"


def student_shape(teacher_config, layers: int, hidden: int | None, intermediate: int | None, heads: int | None):
    """The student's shape: unset fields follow the teacher, scaled with the hidden size.

    Unset intermediate keeps the teacher's FFN ratio (hidden 192 of a 384/1536 teacher -> 768); unset heads keep the
    teacher's head size (192 / 32 -> 6 heads).

    Raises:
        LadcError: a size out of range, or a hidden size the heads do not divide.
    """
    teacher_hidden = teacher_config.hidden_size
    teacher_heads = teacher_config.num_attention_heads
    teacher_head_size = teacher_hidden // teacher_heads
    hidden = teacher_hidden if hidden is None else hidden
    if not 1 <= hidden <= teacher_hidden:
        raise LadcError(f"--student-hidden {hidden} must be between 1 and the teacher's hidden size {teacher_hidden}")
    if intermediate is None:
        intermediate = max(1, teacher_config.intermediate_size * hidden // teacher_hidden)
    if not 1 <= intermediate <= teacher_config.intermediate_size:
        raise LadcError(
            f"--student-intermediate {intermediate} must be between 1 and the teacher's intermediate size "
            f"{teacher_config.intermediate_size}"
        )
    if heads is None:
        heads = max(1, hidden // teacher_head_size) if hidden % teacher_head_size == 0 else teacher_heads
    if not 1 <= heads <= teacher_heads:
        raise LadcError(f"--student-heads {heads} must be between 1 and the teacher's {teacher_heads} heads")
    if hidden % heads:
        raise LadcError(
            f"--student-hidden {hidden} is not a multiple of --student-heads {heads}; BERT needs hidden = heads x "
            f"head size (the teacher's head size is {teacher_head_size}: e.g. --student-heads {hidden // teacher_head_size or 1})"
        )
    if hidden // heads > teacher_head_size:
        raise LadcError(
            f"--student-hidden {hidden} / --student-heads {heads} gives head size {hidden // heads}, wider than the "
            f"teacher's {teacher_head_size}; use at least {-(-hidden // teacher_head_size)} heads"
        )
    return StudentShape(layers, hidden, intermediate, heads)


def student_config(teacher_config, shape: StudentShape):
    """The teacher's config with the student's shape (labels, vocabulary, positions, activation unchanged)."""
    import copy

    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = shape.num_layers
    config.hidden_size = shape.hidden_size
    config.intermediate_size = shape.intermediate_size
    config.num_attention_heads = shape.num_heads
    return config


@dataclass(frozen=True)
class Importance:
    """Activation importance of a T-layer teacher.

    Attributes:
        hidden: (H,) per residual-stream channel.
        heads: T tensors (A,) per attention head.
        head_dims: T tensors (A, D) per dimension of each head's context vector.
        neurons: T tensors (I,) per FFN neuron.
    """

    hidden: Tensor
    heads: tuple[Tensor, ...]
    head_dims: tuple[Tensor, ...]
    neurons: tuple[Tensor, ...]


@dataclass(frozen=True)
class KeptUnits:
    """What a student keeps of the teacher (0-based teacher indices, each sorted ascending).

    Attributes:
        layers: 1-based teacher layer copied into each student layer.
        hidden: (h,) kept residual channels.
        qkv: per student layer, (h_attn,) kept rows of Q/K/V (= columns of the attention output), head by head.
        neurons: per student layer, (i,) kept FFN neurons.
    """

    layers: tuple[int, ...]
    hidden: Tensor
    qkv: tuple[Tensor, ...]
    neurons: tuple[Tensor, ...]


def _encoder_layers(model):
    return model.base_model.encoder.layer


@torch.no_grad()
def measure_importance(teacher, batches: Iterable[dict]) -> Importance:
    """Score the teacher's channels, heads and neurons by their activations on `batches` (Minitron's criterion).

    Args:
        teacher: a BERT-style ``...ForSequenceClassification`` (eval mode is set here and restored).
        batches: dicts with ``input_ids``, ``attention_mask`` (B, L) and optionally ``token_type_ids``.

    Returns:
        The averaged scores; LadcError when `batches` is empty.
    """
    layers = _encoder_layers(teacher)
    num_heads = teacher.config.num_attention_heads
    head_size = teacher.config.hidden_size // num_heads
    sums = {"context": [0.0] * len(layers), "heads": [0.0] * len(layers), "neurons": [0.0] * len(layers)}
    mask_holder: dict[str, Tensor] = {}

    def masked_mean(values: Tensor) -> Tensor:  # (B, L, ...) -> (...): sum over real tokens
        mask = mask_holder["mask"].to(values.dtype).reshape(*mask_holder["mask"].shape, *([1] * (values.dim() - 2)))
        return (values * mask).sum(dim=(0, 1))

    def context_hook(index):
        def hook(_module, _inputs, output):
            context = output[0] if isinstance(output, tuple) else output  # (B, L, A * D), before the output dense
            per_head = context.float().reshape(*context.shape[:2], num_heads, head_size)
            sums["context"][index] = sums["context"][index] + masked_mean(per_head.abs())
            sums["heads"][index] = sums["heads"][index] + masked_mean(per_head.norm(dim=-1))

        return hook

    def neuron_hook(index):
        def hook(_module, _inputs, output):
            sums["neurons"][index] = sums["neurons"][index] + masked_mean(output.float().abs())

        return hook

    handles = []
    for index, layer in enumerate(layers):
        handles.append(layer.attention.self.register_forward_hook(context_hook(index)))
        handles.append(layer.intermediate.register_forward_hook(neuron_hook(index)))
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    hidden_sum, tokens = 0.0, 0
    try:
        for batch in batches:
            inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            mask_holder["mask"] = inputs["attention_mask"]
            out = teacher(**inputs, output_hidden_states=True)
            for hidden in out.hidden_states:
                hidden_sum = hidden_sum + masked_mean(hidden.float().abs())
            tokens += int(inputs["attention_mask"].sum())
    finally:
        for handle in handles:
            handle.remove()
        teacher.train(was_training)
    if tokens == 0:
        raise LadcError("cannot rank the teacher's channels: the importance batches hold no tokens")
    return Importance(
        hidden=hidden_sum / tokens,
        heads=tuple(h / tokens for h in sums["heads"]),
        head_dims=tuple(c / tokens for c in sums["context"]),
        neurons=tuple(n / tokens for n in sums["neurons"]),
    )


def _top(scores: Tensor, count: int) -> Tensor:
    """Indices of the `count` largest scores, ascending (ties: the lower index, so the choice is deterministic)."""
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    return torch.tensor(sorted(order[:count]), dtype=torch.long)


def select_kept(importance: Importance, shape: StudentShape, layers: Sequence[int]) -> KeptUnits:
    """The teacher units a student of `shape` keeps: the top-scoring channels, heads (and dimensions within each kept
    head when the student's heads are narrower) and neurons of each copied layer.

    Args:
        importance: the teacher's scores.
        shape: the student's shape.
        layers: 1-based teacher layer per student layer.
    """
    qkv, neurons = [], []
    for teacher_layer in layers:
        head_scores = importance.heads[teacher_layer - 1]
        dim_scores = importance.head_dims[teacher_layer - 1]
        teacher_head_size = dim_scores.shape[1]
        rows = []
        for head in _top(head_scores, shape.num_heads).tolist():
            dims = _top(dim_scores[head], shape.head_size)
            rows.append(head * teacher_head_size + dims)
        qkv.append(torch.cat(rows))
        neurons.append(_top(importance.neurons[teacher_layer - 1], shape.intermediate_size))
    return KeptUnits(tuple(layers), _top(importance.hidden, shape.hidden_size), tuple(qkv), tuple(neurons))


def _copy(target: Tensor, source: Tensor) -> None:
    if target.shape != source.shape:
        raise LadcError(f"pruned weight has shape {tuple(source.shape)}, the student expects {tuple(target.shape)}")
    target.copy_(source)


def _slice_linear(target, source, rows: Tensor | None, cols: Tensor | None) -> None:
    weight = source.weight
    if rows is not None:
        weight = weight.index_select(0, rows)
    if cols is not None:
        weight = weight.index_select(1, cols)
    _copy(target.weight, weight)
    if source.bias is not None:
        _copy(target.bias, source.bias if rows is None else source.bias.index_select(0, rows))


def _slice_norm(target, source, channels: Tensor) -> None:
    _copy(target.weight, source.weight.index_select(0, channels))
    _copy(target.bias, source.bias.index_select(0, channels))


@torch.no_grad()
def slice_teacher(teacher, shape: StudentShape, kept: KeptUnits):
    """A student of `shape` whose every weight is the teacher's at the `kept` indices.

    Keeping every unit of every layer reproduces the teacher exactly.

    Raises:
        LadcError: a teacher ladc cannot slice (an ELECTRA with a factorised embedding).
    """
    from transformers import AutoModelForSequenceClassification

    config = teacher.config
    if getattr(config, "embedding_size", config.hidden_size) != config.hidden_size:
        raise LadcError(
            f"cannot prune {config.model_type}: its embedding size {config.embedding_size} differs from its hidden "
            "size; use --student-init random for a narrower student"
        )
    student = AutoModelForSequenceClassification.from_config(student_config(config, shape))
    student.to(next(teacher.parameters()).dtype)
    h = kept.hidden.to(next(teacher.parameters()).device)
    source, target = teacher.base_model, student.base_model
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        _copy(getattr(target.embeddings, name).weight, getattr(source.embeddings, name).weight.index_select(1, h))
    _slice_norm(target.embeddings.LayerNorm, source.embeddings.LayerNorm, h)
    for student_index, teacher_layer in enumerate(kept.layers):
        s_layer, t_layer = target.encoder.layer[student_index], source.encoder.layer[teacher_layer - 1]
        qkv, neurons = kept.qkv[student_index], kept.neurons[student_index]
        for name in ("query", "key", "value"):
            _slice_linear(getattr(s_layer.attention.self, name), getattr(t_layer.attention.self, name), qkv, h)
        _slice_linear(s_layer.attention.output.dense, t_layer.attention.output.dense, h, qkv)
        _slice_norm(s_layer.attention.output.LayerNorm, t_layer.attention.output.LayerNorm, h)
        _slice_linear(s_layer.intermediate.dense, t_layer.intermediate.dense, neurons, h)
        _slice_linear(s_layer.output.dense, t_layer.output.dense, h, neurons)
        _slice_norm(s_layer.output.LayerNorm, t_layer.output.LayerNorm, h)
    _slice_head(student, teacher, h)
    return student


def _slice_head(student, teacher, h: Tensor) -> None:
    """The pooler and the classification head: every dimension of the teacher's hidden size is sliced to `h`."""
    base_prefix = student.base_model_prefix + "."
    teacher_state = teacher.state_dict()
    hidden = teacher.config.hidden_size
    copied = 0
    for name, target in student.state_dict(keep_vars=True).items():
        is_head = not name.startswith(base_prefix) or name.startswith(base_prefix + "pooler.")
        if not is_head:
            continue
        value = teacher_state[name]
        for dim, size in enumerate(value.shape):
            if size == hidden and target.shape[dim] != size:
                value = value.index_select(dim, h)
        _copy(target.data, value)
        copied += 1
    if copied == 0:
        raise LadcError("cannot copy the teacher's classifier head into the pruned student: no head parameters")
