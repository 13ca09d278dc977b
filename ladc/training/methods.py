"""Distillation methods as data: which teacher outputs a method needs, which extra modules it trains, which loss terms
it sums. `distill` and the loss function read the record; nothing branches on a method's name.

Every equation lives in `ladc/training/lad.py`; a record only says which of them a method weighs together, and how. A new
method is one more `Method` in `METHODS` (a test may register one with `monkeypatch.setitem`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from ladc.errors import LadcError
from ladc.runs.config import LossWeights
from ladc.training.lad import (
    GateChain,
    HiddenProjection,
    LayerMatch,
    check_hidden_sizes,
    hard_loss,
    hidden_mse,
    last_layers_map,
    layer_map,
    pkd_loss,
    resolve_matches,
    soft_kl,
    soft_mse,
)

__all__ = [
    "TEACHER_OUTPUTS", "TermInputs", "LossTerm", "ModuleContext", "ExtraModule", "Method", "METHODS", "distill_terms",
]  # fmt: skip

# what a method needs the teacher to return, cheapest first: nothing (no teacher forward), logits, all hidden states
TEACHER_OUTPUTS = ("none", "logits", "hidden_states")


@dataclass(frozen=True)
class TermInputs:
    """Everything a loss term may read for one batch.

    Attributes:
        student_out: HF output with ``.logits`` (B, C) and, when the method needs them, ``.hidden_states``
            (S + 1 tensors (B, L, H), embeddings first).
        teacher_out: the same for the teacher (T + 1 hidden states); None when the method needs no teacher.
        labels: (B,) class ids or float scores.
        attention_mask: (B, L), 1 for real tokens.
        modules: the method's extra trainable modules by name (e.g. ``gates``).
        weights: loss weights and the soft-target temperature.
        mapping: 1-based teacher layer per student layer, or ``LayerMatch`` records; None = ``layer_map(T, S)``.
        is_regression: regression task (STS-B).
        reverse: aggregate teacher layers top-down (LAD).
    """

    student_out: object
    teacher_out: object | None
    labels: Tensor
    attention_mask: Tensor | None = None
    modules: Mapping[str, nn.Module] = field(default_factory=dict)
    weights: LossWeights = LossWeights()
    mapping: Sequence[int] | Sequence[LayerMatch] | None = None
    is_regression: bool = False
    reverse: bool = False

    def hidden(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """(student layer outputs h_1..h_S, teacher layer outputs h_1..h_T), embeddings left out."""
        return tuple(self.student_out.hidden_states[1:]), tuple(self.teacher_out.hidden_states[1:])

    def project(self, student_layer: int, student_hidden: Sequence[Tensor], cls_only: bool = False) -> Tensor:
        """1-based student layer's hidden state at the teacher's width: through the ``projection`` module when the
        student is narrower, as it is otherwise. ``cls_only`` keeps position 0 alone, (B, 1, H)."""
        hidden = student_hidden[student_layer - 1]
        if cls_only:
            hidden = hidden[:, :1]
        projection = self.modules.get("projection")
        return hidden if projection is None else projection(student_layer, hidden)


@dataclass(frozen=True)
class LossTerm:
    """One named term of a method's loss: ``loss += weights.<weight> * compute(inputs)`` (weight None: 1).

    The name is what the progress bar and metrics.json history show.
    """

    name: str
    compute: Callable[[TermInputs], Tensor]
    weight: str | None = None  # a LossWeights field name


@dataclass(frozen=True)
class ModuleContext:
    """What an extra module is built from.

    Attributes:
        teacher_config, student_config: the two HF configs.
        mapping: 1-based teacher layer the loss reads for each student layer.
        reverse: aggregate teacher layers top-down (LAD).
        kept_channels: (h,) teacher channel of each student channel when the student was pruned from the teacher.
    """

    teacher_config: object
    student_config: object
    mapping: Sequence[int]
    reverse: bool = False
    kept_channels: Tensor | None = None

    @property
    def narrower(self) -> bool:
        return self.student_config.hidden_size != self.teacher_config.hidden_size


@dataclass(frozen=True)
class ExtraModule:
    """A module a method trains beside the student with its own AdamW (no weight decay), saved as NAME.safetensors
    next to the student but not part of the deployed model."""

    name: str
    build: Callable[[ModuleContext], nn.Module]
    lr_field: str  # the DistillConfig field holding its learning rate
    needed: Callable[[ModuleContext], bool] | None = None  # None: always built

    def is_needed(self, context: ModuleContext) -> bool:
        return self.needed is None or self.needed(context)


@dataclass(frozen=True)
class Method:
    """A distillation method as data.

    Attributes:
        name: the --method value.
        teacher_outputs: one of ``TEACHER_OUTPUTS``; ``hidden_states`` makes both models return every layer.
        terms: the loss terms, summed with their weights in this order.
        modules: extra trainable modules (LAD's gate chain).
        records_layer_map: write the layer map into ladc.json (the teacher layers or aggregated states it reads).
        layer_choices: `--layer-choice` name -> (T, S) -> 1-based teacher layer per student layer; the first is the
            default. Empty for methods that match no layers.
    """

    name: str
    teacher_outputs: str
    terms: tuple[LossTerm, ...]
    modules: tuple[ExtraModule, ...] = ()
    records_layer_map: bool = False
    layer_choices: Mapping[str, Callable[[int, int], tuple[int, ...]]] = field(default_factory=dict)

    def __post_init__(self):
        if self.teacher_outputs not in TEACHER_OUTPUTS:
            raise ValueError(f"teacher_outputs {self.teacher_outputs!r} is not one of {TEACHER_OUTPUTS}")
        names = [term.name for term in self.terms]
        if not names or "loss" in names or len(set(names)) != len(names):
            raise ValueError(f"method {self.name!r}: terms need distinct names other than 'loss', got {names}")

    def layer_choice(self, choice: str | None) -> str | None:
        """The `--layer-choice` this method runs with (None given: its default; None back: it matches no layers).

        Raises:
            LadcError: a choice this method does not offer.
        """
        if not self.layer_choices:
            if choice is not None:
                raise LadcError(f"--layer-choice {choice}: method '{self.name}' matches no layers; drop the option")
            return None
        if choice is None:
            return next(iter(self.layer_choices))
        if choice not in self.layer_choices:
            raise LadcError(
                f"--layer-choice '{choice}' is not offered by method '{self.name}'; expected one of "
                f"{', '.join(self.layer_choices)}"
            )
        return choice

    def loss_layer_map(self, choice: str | None, teacher_layers: int, student_layers: int) -> tuple[int, ...] | None:
        """The teacher layer each student layer's loss reads under `choice`, or None when the method matches none."""
        name = self.layer_choice(choice)
        return None if name is None else self.layer_choices[name](teacher_layers, student_layers)

    @property
    def needs_teacher(self) -> bool:
        return self.teacher_outputs != "none"

    @property
    def needs_hidden(self) -> bool:
        return self.teacher_outputs == "hidden_states"


# ----------------------------------------------------------------------------- the terms


def hard_term(x: TermInputs) -> Tensor:
    """Cross-entropy with the gold labels (MSE for regression)."""
    return hard_loss(x.student_out.logits, x.labels, x.is_regression)


def soft_term(x: TermInputs) -> Tensor:
    """``tau^2``-scaled KL to the teacher's softened distribution; MSE to its score for regression."""
    if x.is_regression:
        return soft_mse(x.student_out.logits, x.teacher_out.logits)
    return soft_kl(x.student_out.logits, x.teacher_out.logits, x.weights.temperature)


def lad_hidden_term(x: TermInputs) -> Tensor:
    """LAD: ``sum_j w_j * hidden_mse(s_j, a_{m(j)}) / n_pairs`` with ``a = gates(h_1..h_T)`` (n_pairs = S for the
    default map, as the reference's division by S)."""
    gates = x.modules.get("gates")
    if gates is None:
        raise ValueError("method 'lad' needs gates (a GateChain with one gate per teacher layer)")
    student_hidden, teacher_hidden = x.hidden()
    matches = resolve_matches(x.mapping, len(teacher_hidden), len(student_hidden), "hidden_mse")
    aggregated = gates(teacher_hidden, reverse=x.reverse)
    total = sum(
        m.weight * hidden_mse(x.project(m.student_layer, student_hidden), aggregated[m.teacher_layer - 1],
                              x.attention_mask)
        for m in matches
    )  # fmt: skip
    return total / len(matches)


def pkd_patient_term(x: TermInputs) -> Tensor:
    """BERT-PKD: ``pkd_loss`` over the pairs whose teacher layer is below T (PKD leaves the last to the KD term)."""
    student_hidden, teacher_hidden = x.hidden()
    matches = resolve_matches(x.mapping, len(teacher_hidden), len(student_hidden), "pkd_cls")
    matches = [m for m in matches if m.teacher_layer < len(teacher_hidden)]
    patient = pkd_loss(
        [x.project(m.student_layer, student_hidden, cls_only=True) for m in matches],
        [teacher_hidden[m.teacher_layer - 1] for m in matches],
        [m.weight for m in matches],
    )
    return patient.to(x.student_out.logits.device)  # no pairs: a CPU zero


def _gate_chain(context: ModuleContext) -> nn.Module:
    """LAD's gate chain, with the gates the loss never reaches frozen (gates[0] always; with reverse also those below
    the lowest mapped layer).

    DDP (accelerate, several processes) expects a gradient for every trainable parameter and raises on the second
    step otherwise; a gate without a gradient is never updated anyway, so freezing it changes nothing else.
    """
    mapping = context.mapping
    gates = GateChain(context.teacher_config.num_hidden_layers, context.teacher_config.hidden_size)
    # aggregate() uses gates[1..n] in processing order; n is set by the last aggregate the layer map reads
    used = len(gates.gates) - min(mapping) if context.reverse else max(mapping) - 1
    for index, gate in enumerate(gates.gates):
        gate.requires_grad_(1 <= index <= used)
    return gates


def _projection(context: ModuleContext, top_left_to_kd: bool = False) -> nn.Module:
    """TinyBERT's W_h, one map per student layer. A map no loss pair reads gets no gradient and is frozen (DDP, as
    for the gates): a student layer beyond the map, and with `top_left_to_kd` (PKD) the one reading teacher layer T."""
    teacher_layers = context.teacher_config.num_hidden_layers
    projection = HiddenProjection(
        context.student_config.num_hidden_layers, context.student_config.hidden_size,
        context.teacher_config.hidden_size, context.kept_channels,
    )  # fmt: skip
    for layer, linear in enumerate(projection.maps, start=1):
        read = layer <= len(context.mapping) and not (top_left_to_kd and context.mapping[layer - 1] == teacher_layers)
        linear.requires_grad_(read)
    return projection


def _pkd_projection(context: ModuleContext) -> nn.Module:
    return _projection(context, top_left_to_kd=True)


def _narrower(context: ModuleContext) -> bool:
    return context.narrower


# a student narrower than its teacher compares its hidden states through these; at equal width they are never built
_LAD_PROJECTION = ExtraModule("projection", _projection, "projection_lr", needed=_narrower)
_PKD_PROJECTION = ExtraModule("projection", _pkd_projection, "projection_lr", needed=_narrower)
_HARD = LossTerm("hard", hard_term, "hard")
_SOFT = LossTerm("soft", soft_term, "soft")

METHODS: dict[str, Method] = {
    "lad": Method(
        "lad", "hidden_states", (_HARD, _SOFT, LossTerm("hidden", lad_hidden_term, "mu")),
        modules=(ExtraModule("gates", _gate_chain, "gate_lr"), _LAD_PROJECTION), records_layer_map=True,
        layer_choices={"skip": layer_map},  # aggregated state j*T/S: the LAD reference's map
    ),
    # PKD-Skip (every T/S-th teacher layer, 12->3: {4, 8}) by default; `last` is PKD-Last (12->3: {10, 11})
    "pkd": Method(
        "pkd", "hidden_states", (_HARD, _SOFT, LossTerm("patient", pkd_patient_term, "beta")),
        modules=(_PKD_PROJECTION,), records_layer_map=True, layer_choices={"skip": layer_map, "last": last_layers_map},
    ),
    "kd": Method("kd", "logits", (_HARD, _SOFT)),
    "none": Method("none", "none", (LossTerm("hard", hard_term),)),  # plain fine-tuning: the label loss at weight 1
}  # fmt: skip


def get_method(name: str) -> Method:
    """Raises: LadcError naming the known methods."""
    if name not in METHODS:
        raise LadcError(f"distillation method '{name}' is unknown; expected one of {', '.join(METHODS)}")
    return METHODS[name]


def distill_terms(
    method: str | Method,
    student_out,
    teacher_out,
    labels: Tensor,
    attention_mask: Tensor | None = None,
    *,
    weights: LossWeights = LossWeights(),
    mapping: Sequence[int] | Sequence[LayerMatch] | None = None,
    is_regression: bool = False,
    reverse: bool = False,
    **modules: nn.Module | None,
) -> dict[str, Tensor]:
    """Named loss terms of one batch, plus their weighted sum under ``'loss'``; the caller runs one backward on it.

    Args:
        method: a ``METHODS`` key or a ``Method``.
        student_out, teacher_out, labels, attention_mask, weights, mapping, is_regression, reverse: see `TermInputs`.
        **modules: the method's extra modules by name (``gates=GateChain(T, H)`` for lad).

    Returns:
        One scalar per term name (e.g. ``hard``, ``soft``, ``hidden``) and ``loss``.

    Raises:
        LadcError: unknown method, a hidden-size mismatch, or a mapping outside the models' layers.
        ValueError: a method that needs hidden states got outputs without them.
    """
    record = method if isinstance(method, Method) else get_method(method)
    if record.needs_hidden:
        if student_out.hidden_states is None or teacher_out.hidden_states is None:
            raise ValueError(
                f"method '{record.name}' needs hidden states: call both models with output_hidden_states=True"
            )
        if modules.get("projection") is None:
            check_hidden_sizes(student_out.hidden_states[-1], teacher_out.hidden_states[-1])
    inputs = TermInputs(
        student_out, teacher_out, labels, attention_mask, {k: v for k, v in modules.items() if v is not None},
        weights, mapping, is_regression, reverse,
    )  # fmt: skip
    terms: dict[str, Tensor] = {}
    loss = None
    for term in record.terms:
        value = term.compute(inputs)
        terms[term.name] = value
        weighted = value if term.weight is None else getattr(weights, term.weight) * value
        loss = weighted if loss is None else loss + weighted
    terms["loss"] = loss
    return terms
