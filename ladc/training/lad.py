"""LAD maths, no I/O: highway gates, aggregation, layer map and losses (Lin, Chen & Kao, Sensors 2023, 23(3):1483).

Notation: the teacher has T layers, the student S < T. ``h_1..h_T`` are the teacher's layer outputs
(``hidden_states[1:]`` of an HF model run with ``output_hidden_states=True``; the embeddings are left out).
Gates aggregate them into ``a_1..a_T`` (LAD's iterative aggregation) and student layer j learns ``a_{m(j)}``,
``m = layer_map``.
Reference implementation: github.com/IKMLab/LAD (``fine_tune/model/_gate.py``, ``fine_tune/util/train_LAD.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladc.errors import LadcError

__all__ = [
    "LAYER_LOSSES",
    "HighwayGate",
    "GateChain",
    "HiddenProjection",
    "LayerMatch",
    "layer_map",
    "last_layers_map",
    "layer_matches",
    "aggregate",
    "hard_loss",
    "soft_kl",
    "soft_mse",
    "hidden_mse",
    "pkd_loss",
    "resolve_matches",
    "check_hidden_sizes",
]

# per-layer losses a LayerMatch can name: LAD's masked hidden MSE, BERT-PKD's normalized-[CLS] MSE
LAYER_LOSSES = ("hidden_mse", "pkd_cls")


def layer_map(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
    """1-based teacher (aggregated-state) layer for each student layer.

    When S divides T this is the reference's skip map, student layer j -> ``j * (T // S)``
    (12->6: 2,4,...,12; 12->4: 3,6,9,12). Otherwise the layers are spaced evenly with
    ``m(j) = round_half_up(j * T / S)`` (7->3: 2,5,7), which equals the skip map when S divides T,
    is strictly increasing (T / S > 1) and always ends at T.

    Raises:
        LadcError: ``student_layers`` is not in ``1..teacher_layers - 1``.
    """
    if not 1 <= student_layers < teacher_layers:
        raise LadcError(
            f"student num_layers={student_layers} must be between 1 and {teacher_layers - 1} "
            f"(the teacher has {teacher_layers} layers)"
        )
    # integer form of floor(j * T / S + 1/2): no float error, no banker's rounding
    mapping = tuple(
        (2 * j * teacher_layers + student_layers) // (2 * student_layers) for j in range(1, student_layers + 1)
    )
    assert mapping[-1] == teacher_layers and all(b > a for a, b in zip(mapping, mapping[1:], strict=False)), mapping
    return mapping


def last_layers_map(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
    """PKD-Last (Sun et al. 2019): student layer j reads teacher layer ``T - S + j`` (12->3: 10, 11, 12; 6->3: 4, 5, 6).

    The patient loss leaves the top pair to the KD term, so a 12 -> 3 student matches teacher layers {10, 11}: the
    layers the PKD authors' own 3-layer script distils.

    Raises:
        LadcError: ``student_layers`` is not in ``1..teacher_layers - 1``.
    """
    layer_map(teacher_layers, student_layers)  # the same range check
    return tuple(teacher_layers - student_layers + j for j in range(1, student_layers + 1))


@dataclass(frozen=True)
class LayerMatch:
    """One student-layer <- teacher-layer pairing, as plain data (TextBrewer style; 1-based layer numbers).

    Attributes:
        student_layer: student layer number, 1..S.
        teacher_layer: teacher (aggregated for LAD) layer number, 1..T.
        loss: per-layer loss, one of ``LAYER_LOSSES``.
        weight: multiplier of this pair's term (>= 0).
    """

    student_layer: int
    teacher_layer: int
    loss: str = "hidden_mse"
    weight: float = 1.0

    def __post_init__(self):
        for name in ("student_layer", "teacher_layer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LadcError(f"layer match {name}={value!r} must be a positive int (1-based layer number)")
        if self.loss not in LAYER_LOSSES:
            raise LadcError(f"layer match loss={self.loss!r} is unknown; expected one of {', '.join(LAYER_LOSSES)}")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and self.weight >= 0):
            raise LadcError(f"layer match weight={self.weight!r} must be a finite number >= 0")


def layer_matches(
    teacher_layers: int, student_layers: int, loss: str = "hidden_mse", weight: float = 1.0
) -> tuple[LayerMatch, ...]:
    """``layer_map`` as typed ``LayerMatch`` records, one per student layer."""
    mapping = layer_map(teacher_layers, student_layers)
    return tuple(LayerMatch(j, t, loss, weight) for j, t in enumerate(mapping, start=1))


class HighwayGate(nn.Module):
    """One LAD gate block (after Highway Networks, Srivastava et al. 2015).

    ``g = sigmoid(W a_prev + b)``; ``out = LayerNorm(g * h + (1 - g) * a_prev)``.
    The gate is computed from the previous aggregate, as in the reference.

    Args:
        hidden_size: H.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, hidden_size)
        # The reference normalizes over [seq_len, H] (fixed 128 padding); per-token over H allows dynamic padding.
        self.layer_norm = nn.LayerNorm(hidden_size)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, previous: Tensor, current: Tensor) -> Tensor:
        """Blend the current teacher layer into the running aggregate.

        Args:
            previous: running aggregate ``a_{k-1}``, (B, S, H).
            current: teacher layer output ``h_k``, (B, S, H).

        Returns:
            ``a_k``, (B, S, H).
        """
        gate = torch.sigmoid(self.linear(previous))
        return self.layer_norm(gate * current + (1 - gate) * previous)


def aggregate(hidden_states: Sequence[Tensor], gates: Sequence[HighwayGate], reverse: bool = False) -> list[Tensor]:
    """Aggregate teacher layers ``h_1..h_T`` into ``a_1..a_T`` with a chain of gates (LAD's iterative aggregation).

    Forward: ``a_1 = h_1`` and ``a_k = gates[k-1](a_{k-1}, h_k)`` for k = 2..T, so ``a_k`` summarizes layers 1..k.
    Reverse (top-down): ``a'_T = h_T`` and ``a'_k = gates[T-k](a'_{k+1}, h_k)`` for k = T-1..1, so ``a'_k``
    summarizes layers k..T. Either way the list is indexed by layer (index k-1 holds layer k's aggregate; in
    reverse, index T-1 is ``h_T``), and a student layer j is matched to index ``layer_map[j]-1`` of that list,
    exactly as the reference does. ``gates[i]`` is used at step i of the chain in processing order, as in the
    reference, so ``gates[0]`` (step 0) is never called in either order; T gates are kept so saved gate state
    lines up with the reference's ``gate-{i}`` files.

    Args:
        hidden_states: T tensors, each (B, S, H): the teacher's layer outputs, embeddings excluded.
        gates: T ``HighwayGate`` modules (e.g. ``GateChain.gates``).
        reverse: aggregate from the top layer down.

    Returns:
        T tensors ``[a_1, ..., a_T]``, each (B, S, H).
    """
    if len(gates) != len(hidden_states):
        raise ValueError(f"need one gate per teacher layer: {len(gates)} gates for {len(hidden_states)} layers")
    ordered = list(hidden_states)[::-1] if reverse else list(hidden_states)
    aggregated = [ordered[0]]
    for step in range(1, len(ordered)):
        aggregated.append(gates[step](aggregated[-1], ordered[step]))
    return aggregated[::-1] if reverse else aggregated


class GateChain(nn.Module):
    """The T highway gates of one LAD run (trained together with the student, saved next to it).

    Args:
        num_layers: T, the teacher's layer count.
        hidden_size: H, the teacher's hidden size.
    """

    def __init__(self, num_layers: int, hidden_size: int):
        super().__init__()
        if num_layers < 2:
            raise LadcError(f"LAD needs a teacher with at least 2 layers, got {num_layers}")
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.gates = nn.ModuleList(HighwayGate(hidden_size) for _ in range(num_layers))

    def forward(self, hidden_states: Sequence[Tensor], reverse: bool = False) -> list[Tensor]:
        """``aggregate(hidden_states, self.gates, reverse)``: T tensors (B, S, H) in, T tensors (B, S, H) out."""
        return aggregate(hidden_states, self.gates, reverse)


class HiddenProjection(nn.Module):
    """TinyBERT's W_h for a student narrower than its teacher: one linear map per student layer, student width ->
    teacher width, applied to the student's hidden state before the layer loss. Trained, saved beside the student,
    never deployed.

    Args:
        num_layers: S, the student's layer count.
        student_hidden: h, the student's hidden size.
        teacher_hidden: H, the teacher's.
        kept_channels: (h,) teacher channel of each student channel (a pruned student): the maps start as that
            selection (student channel i -> teacher channel kept[i]), so step 0 compares the channels the student
            inherited and the rest are learned. None: Xavier init.
    """

    def __init__(self, num_layers: int, student_hidden: int, teacher_hidden: int, kept_channels: Tensor | None = None):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(student_hidden, teacher_hidden) for _ in range(num_layers))
        for linear in self.maps:
            nn.init.zeros_(linear.bias)
            if kept_channels is None:
                nn.init.xavier_uniform_(linear.weight)
            else:
                with torch.no_grad():
                    linear.weight.zero_()
                    linear.weight[kept_channels, torch.arange(student_hidden)] = 1.0

    def forward(self, student_layer: int, hidden: Tensor) -> Tensor:
        """(B, L, h) of 1-based student layer `student_layer` -> (B, L, H)."""
        return self.maps[student_layer - 1](hidden)


def hard_loss(student_logits: Tensor, labels: Tensor, is_regression: bool) -> Tensor:
    """Label loss: cross-entropy, or MSE for regression (STS-B).

    Args:
        student_logits: (B, C), or (B, 1) for regression.
        labels: (B,) class ids, or (B,) float scores for regression.
        is_regression: use ``mean((z - y)^2)`` instead of ``-mean(log softmax(z)_y)``.

    Returns:
        Scalar loss.
    """
    if is_regression:
        return F.mse_loss(student_logits.float().squeeze(-1), labels.float())
    return F.cross_entropy(student_logits.float(), labels.long())


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Soft-target loss (Hinton et al. 2015): ``tau^2 * KL(softmax(t / tau) || softmax(s / tau))``.

    The KL is summed over classes and averaged over the batch ("batchmean"); the ``tau^2`` factor keeps
    gradient magnitudes comparable across temperatures.

    Args:
        student_logits: (B, C).
        teacher_logits: (B, C).
        temperature: tau > 0.

    Returns:
        Scalar loss.
    """
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return temperature**2 * kl


def soft_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Soft-target loss for regression (LAD reference): ``mean((s - t)^2)``; shapes (B, 1) -> scalar."""
    return F.mse_loss(student_logits.float(), teacher_logits.float())


def hidden_mse(student_hidden: Tensor, target: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """LAD hidden loss for one layer pair (mu-weighted MSE term of the LAD objective): MSE over real tokens only.

    ``sum_{b,s: mask=1} ||student - target||^2 / (num_real_tokens * H)``. The reference averages over all
    128 padded positions; we drop padding so the loss does not depend on how much of the batch is padding.

    Args:
        student_hidden: (B, S, H).
        target: (B, S, H), e.g. the aggregated teacher state.
        attention_mask: (B, S), 1 for real tokens; None averages over every position.

    Returns:
        Scalar loss.
    """
    squared_error = (student_hidden.float() - target.float()).pow(2)
    if attention_mask is None:
        return squared_error.mean()
    mask = attention_mask.to(squared_error.dtype).unsqueeze(-1)
    num_real_tokens = mask.sum().clamp_min(1.0)
    return (squared_error * mask).sum() / (num_real_tokens * squared_error.shape[-1])


def pkd_loss(
    student_hidden: Sequence[Tensor], teacher_hidden: Sequence[Tensor], layer_weights: Sequence[float] | None = None
) -> Tensor:
    """BERT-PKD patient loss (Sun et al. 2019, Patient Knowledge Distillation) on the [CLS] vector (position 0).

    ``(1/L) sum_j w_j mean_{b,h} (s_j / ||s_j||_2 - t_j / ||t_j||_2)^2`` over the L paired layers; with unit
    weights this is the PKD code's MSE over the stacked (B, L, H) normalized [CLS] states, i.e. averaged over
    layers, batch and hidden units.

    Args:
        student_hidden: L tensors (B, S, H), the paired student layers.
        teacher_hidden: L tensors (B, S, H), the teacher layers they learn from.
        layer_weights: L multipliers w_j; None means all 1.

    Returns:
        Scalar loss; 0 when no layers are paired.
    """
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(f"{len(student_hidden)} student layers paired with {len(teacher_hidden)} teacher layers")
    if not student_hidden:
        return torch.zeros(())
    layer_weights = [1.0] * len(student_hidden) if layer_weights is None else list(layer_weights)
    terms = [
        w * F.mse_loss(F.normalize(s[:, 0].float(), dim=-1), F.normalize(t[:, 0].float(), dim=-1))
        for s, t, w in zip(student_hidden, teacher_hidden, layer_weights, strict=True)
    ]
    return torch.stack(terms).mean()


def resolve_matches(
    mapping: Sequence[int] | Sequence[LayerMatch] | None, teacher_layers: int, student_layers: int, loss: str
) -> tuple[LayerMatch, ...]:
    if mapping is None:
        return layer_matches(teacher_layers, student_layers, loss)
    matches = tuple(
        m if isinstance(m, LayerMatch) else LayerMatch(j, int(m), loss) for j, m in enumerate(mapping, start=1)
    )
    if not matches:
        raise LadcError("layer mapping is empty; expected one teacher layer per student layer")
    for match in matches:
        if match.student_layer > student_layers or match.teacher_layer > teacher_layers:
            raise LadcError(
                f"layer match student {match.student_layer} <- teacher {match.teacher_layer} is out of range "
                f"(student has {student_layers} layers, teacher {teacher_layers})"
            )
        if match.loss != loss:
            raise LadcError(f"layer match loss '{match.loss}' does not fit this method; expected '{loss}'")
    return matches


def check_hidden_sizes(student_hidden: Tensor, teacher_hidden: Tensor) -> None:
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise LadcError(
            f"student hidden size {student_hidden.shape[-1]} differs from the teacher's {teacher_hidden.shape[-1]}; "
            "layer distillation needs equal sizes or a HiddenProjection (methods.py adds one for a narrower student)"
        )
