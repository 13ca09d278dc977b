"""Tests for ladc/training/lad.py: layer map, gates, aggregation and losses against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy

from ladc.errors import LadcError
from ladc.runs.config import LossWeights
from ladc.training.lad import (
    GateChain,
    HighwayGate,
    LayerMatch,
    aggregate,
    hard_loss,
    hidden_mse,
    layer_map,
    layer_matches,
    pkd_loss,
    soft_kl,
    soft_mse,
)


def manual_layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def constant_gate(hidden_size: int, bias: float) -> HighwayGate:
    """A gate whose sigmoid is sigmoid(bias) everywhere (zero weight)."""
    gate = HighwayGate(hidden_size)
    with torch.no_grad():
        gate.linear.weight.zero_()
        gate.linear.bias.fill_(bias)
    return gate


# ---------------------------------------------------------------- layer map


@pytest.mark.parametrize(
    ("teacher_layers", "student_layers", "expected"),
    [
        (12, 6, (2, 4, 6, 8, 10, 12)),
        (12, 4, (3, 6, 9, 12)),
        (12, 3, (4, 8, 12)),
        (6, 3, (2, 4, 6)),
        (6, 2, (3, 6)),
        (7, 3, (2, 5, 7)),  # 7/3 = 2.33, 4.67, 7 rounded half up
        (5, 2, (3, 5)),  # 2.5 rounds up, not to even
        (24, 6, (4, 8, 12, 16, 20, 24)),
        (4, 1, (4,)),
    ],
)
def test_layer_map(teacher_layers, student_layers, expected):
    assert layer_map(teacher_layers, student_layers) == expected


def test_layer_map_is_strictly_increasing_and_ends_at_teacher_top():
    for teacher_layers in range(2, 30):
        for student_layers in range(1, teacher_layers):
            mapping = layer_map(teacher_layers, student_layers)
            assert len(mapping) == student_layers
            assert mapping[-1] == teacher_layers
            assert all(b > a for a, b in zip(mapping, mapping[1:], strict=False))
            if teacher_layers % student_layers == 0:
                skip = teacher_layers // student_layers
                assert mapping == tuple(range(skip, teacher_layers + 1, skip))


@pytest.mark.parametrize(("teacher_layers", "student_layers"), [(6, 6), (6, 7), (6, 0), (3, -1)])
def test_layer_map_rejects_bad_student_sizes(teacher_layers, student_layers):
    with pytest.raises(LadcError, match="student num_layers"):
        layer_map(teacher_layers, student_layers)


def test_layer_matches_and_validation():
    matches = layer_matches(12, 4, weight=2.0)
    assert [(m.student_layer, m.teacher_layer, m.weight) for m in matches] == [
        (1, 3, 2.0),
        (2, 6, 2.0),
        (3, 9, 2.0),
        (4, 12, 2.0),
    ]
    assert all(m.loss == "hidden_mse" for m in matches)
    with pytest.raises(LadcError, match="student_layer"):
        LayerMatch(0, 2)
    with pytest.raises(LadcError, match="teacher_layer"):
        LayerMatch(1, 2.0)
    with pytest.raises(LadcError, match="loss='cosine'"):
        LayerMatch(1, 2, loss="cosine")
    with pytest.raises(LadcError, match="weight"):
        LayerMatch(1, 2, weight=-1.0)
    with pytest.raises(LadcError, match="temperature"):
        LossWeights(temperature=0.0)


def test_resolve_matches_tags_every_match_with_the_loss_that_reads_it():
    from ladc.training.lad import resolve_matches

    default = resolve_matches(None, 12, 4, "pkd_cls")  # no mapping given: layer_map's pairs
    assert [(m.student_layer, m.teacher_layer, m.loss) for m in default] == [
        (1, 3, "pkd_cls"), (2, 6, "pkd_cls"), (3, 9, "pkd_cls"), (4, 12, "pkd_cls"),
    ]  # fmt: skip
    assert [m.loss for m in resolve_matches((2, 4), 4, 2, "pkd_cls")] == ["pkd_cls", "pkd_cls"]


def test_weights_accept_zero_and_reject_negative_or_infinite_values():
    assert LayerMatch(1, 2, weight=0.0).weight == 0.0 and LayerMatch(1, 2, weight=0.5).weight == 0.5
    with pytest.raises(LadcError, match="^layer match loss='cosine' is unknown; expected one of hidden_mse, pkd_cls$"):
        LayerMatch(1, 2, loss="cosine")
    for name in ("hard", "soft", "mu", "beta"):
        assert getattr(LossWeights(**{name: 0.0}), name) == 0.0  # a zero weight switches a term off
        for bad in (-1.0, math.inf, math.nan):
            with pytest.raises(LadcError, match=f"^loss weight {name}={bad!r} must be a finite number >= 0$"):
                LossWeights(**{name: bad})
    for bad in (-1.0, math.inf):
        with pytest.raises(LadcError, match=f"^loss weight temperature={bad!r} must be > 0$"):
            LossWeights(temperature=bad)
    assert LossWeights(temperature=0.5).temperature == 0.5  # tau below 1 sharpens the soft targets: allowed


# ---------------------------------------------------------------- gates


def test_gate_matches_hand_computation():
    gate = HighwayGate(3)
    with torch.no_grad():
        gate.linear.weight.copy_(torch.tensor([[0.5, -1.0, 0.0], [0.2, 0.3, -0.4], [-0.6, 0.1, 0.9]]))
        gate.linear.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    a1 = [1.0, 2.0, -1.0]  # a_1 = h_1
    h2 = [0.5, -0.5, 2.0]
    weight = [[0.5, -1.0, 0.0], [0.2, 0.3, -0.4], [-0.6, 0.1, 0.9]]
    bias = [0.1, -0.2, 0.3]
    pre = [sum(weight[i][k] * a1[k] for k in range(3)) + bias[i] for i in range(3)]  # [-1.4, 0.8, -0.1]
    g = [1 / (1 + math.exp(-p)) for p in pre]
    mix = [g[i] * h2[i] + (1 - g[i]) * a1[i] for i in range(3)]
    mean = sum(mix) / 3
    var = sum((m - mean) ** 2 for m in mix) / 3
    expected = [(m - mean) / math.sqrt(var + 1e-5) for m in mix]

    h1_tensor = torch.tensor(a1).view(1, 1, 3)
    h2_tensor = torch.tensor(h2).view(1, 1, 3)
    aggregated = aggregate([h1_tensor, h2_tensor], [HighwayGate(3), gate])
    assert torch.equal(aggregated[0], h1_tensor)  # a_1 = h_1, no gate, no LayerNorm
    assert torch.allclose(aggregated[1].view(3), torch.tensor(expected), atol=1e-5)


def test_saturated_gate_passes_current_or_previous_layer():
    torch.manual_seed(0)
    previous, current = torch.randn(2, 5, 8), torch.randn(2, 5, 8) * 3 + 1
    open_gate = HighwayGate(8)
    with torch.no_grad():
        open_gate.linear.bias.fill_(50.0)  # sigmoid(W a + 50) == 1 for these inputs
    closed_gate = HighwayGate(8)
    with torch.no_grad():
        closed_gate.linear.bias.fill_(-50.0)
    assert torch.allclose(open_gate(previous, current), manual_layer_norm(current), atol=1e-5)
    assert torch.allclose(closed_gate(previous, current), manual_layer_norm(previous), atol=1e-5)


def test_reverse_aggregation_on_three_layers():
    torch.manual_seed(0)
    h1, h2, h3 = (torch.randn(2, 4, 6) for _ in range(3))
    chain = GateChain(3, 6)
    chain.gates = torch.nn.ModuleList([constant_gate(6, 0.0), constant_gate(6, 1.0), constant_gate(6, -2.0)])
    g1, g2 = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(2.0))

    forward = chain([h1, h2, h3])
    forward_a2 = manual_layer_norm(g1 * h2 + (1 - g1) * h1)
    forward_a3 = manual_layer_norm(g2 * h3 + (1 - g2) * forward_a2)
    for got, want in zip(forward, [h1, forward_a2, forward_a3], strict=True):
        assert torch.allclose(got, want, atol=1e-5)

    reverse = chain([h1, h2, h3], reverse=True)
    # top-down: a'_3 = h_3, a'_2 uses gates[1], a'_1 uses gates[2]; list still indexed by layer
    reverse_a2 = manual_layer_norm(g1 * h2 + (1 - g1) * h3)
    reverse_a1 = manual_layer_norm(g2 * h1 + (1 - g2) * reverse_a2)
    for got, want in zip(reverse, [reverse_a1, reverse_a2, h3], strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def test_gate_layer_norm_is_per_token_so_padding_length_does_not_matter():
    torch.manual_seed(0)
    chain = GateChain(3, 8)
    hidden = [torch.randn(1, 5, 8) for _ in range(3)]
    padded = [torch.cat([h, torch.randn(1, 4, 8)], dim=1) for h in hidden]
    short, long = chain(hidden)[-1], chain(padded)[-1]
    assert torch.allclose(short, long[:, :5], atol=1e-6)


def test_xavier_init_of_gate_weights():
    torch.manual_seed(0)
    hidden_size = 64
    chain = GateChain(4, hidden_size)
    bound = math.sqrt(6.0 / (hidden_size + hidden_size))
    assert len(chain.gates) == 4
    for gate in chain.gates:
        weight = gate.linear.weight.detach()
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.95 * bound  # 4096 uniform draws reach the edge of the range
        assert abs(weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound
        assert torch.count_nonzero(gate.linear.bias) == 0
    assert not torch.equal(chain.gates[0].linear.weight, chain.gates[1].linear.weight)


# ---------------------------------------------------------------- losses


def test_hard_loss_classification_and_regression():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = torch.tensor([0, 2])
    probs = softmax(logits.numpy().astype(np.float64), axis=-1)
    expected = -(math.log(probs[0, 0]) + math.log(probs[1, 2])) / 2
    assert hard_loss(logits, labels, is_regression=False).item() == pytest.approx(expected, rel=1e-6)
    scores = torch.tensor([[1.5], [3.0]])
    assert hard_loss(scores, torch.tensor([1.0, 4.0]), is_regression=True).item() == pytest.approx((0.25 + 1) / 2)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 10.0])
def test_soft_kl_matches_scipy(temperature):
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 3) * 4, torch.randn(5, 3) * 4
    teacher_probs = softmax(teacher.double().numpy() / temperature, axis=-1)
    student_probs = softmax(student.double().numpy() / temperature, axis=-1)
    kl_per_example = [entropy(p, q) for p, q in zip(teacher_probs, student_probs, strict=True)]
    expected = temperature**2 * sum(kl_per_example) / 5  # batchmean
    assert soft_kl(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-5)
    assert soft_kl(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_mse():
    assert soft_mse(torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]])).item() == pytest.approx(2.5)


def test_hidden_mse_counts_real_tokens_only():
    torch.manual_seed(0)
    student, target = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    total, count = 0.0, 0
    for b in range(2):
        for s in range(4):
            if mask[b, s]:
                total += float(((student[b, s] - target[b, s]) ** 2).sum())
                count += 1
    expected = total / (count * 3)
    assert hidden_mse(student, target, mask).item() == pytest.approx(expected, rel=1e-6)

    changed_student, changed_target = student.clone(), target.clone()
    changed_student[0, 3] += 100.0
    changed_target[1, 2:] -= 50.0
    assert hidden_mse(changed_student, changed_target, mask).item() == pytest.approx(expected, rel=1e-6)
    assert hidden_mse(changed_student, changed_target).item() > 100 * expected  # unmasked sees the padding
    assert hidden_mse(student, student, mask).item() == 0.0


def test_pkd_loss_on_normalized_cls():
    torch.manual_seed(0)
    student = [torch.randn(3, 5, 4) for _ in range(2)]
    teacher = [torch.randn(3, 5, 4) * 7 for _ in range(2)]
    per_layer = []
    for s, t in zip(student, teacher, strict=True):
        s_cls, t_cls = s[:, 0].numpy(), t[:, 0].numpy()
        s_unit = s_cls / np.linalg.norm(s_cls, axis=-1, keepdims=True)
        t_unit = t_cls / np.linalg.norm(t_cls, axis=-1, keepdims=True)
        per_layer.append(((s_unit - t_unit) ** 2).mean())
    assert pkd_loss(student, teacher).item() == pytest.approx(np.mean(per_layer), rel=1e-5)
    assert pkd_loss(student, teacher, [2.0, 0.0]).item() == pytest.approx(per_layer[0], rel=1e-5)
    # only [CLS] matters, and scale does not: a rescaled copy with other tokens changed gives zero
    rescaled = [s.clone() * 3 for s in student]
    for r in rescaled:
        r[:, 1:] = 9.0
    assert pkd_loss(student, rescaled).item() == pytest.approx(0.0, abs=1e-7)


def test_pkd_loss_edge_cases_and_mismatches():
    """No paired layer gives a 0-d zero; a count mismatch of layers or weights is an error naming both counts."""
    empty = pkd_loss([], [])
    assert empty.shape == () and empty.item() == 0.0
    layers = [torch.randn(2, 3, 4) for _ in range(2)]
    with pytest.raises(ValueError, match="^2 student layers paired with 1 teacher layers$"):
        pkd_loss(layers, layers[:1])
    with pytest.raises(ValueError):  # zip(strict=True): one weight for two layers must not silently drop a layer
        pkd_loss(layers, layers, layer_weights=[1.0])


def test_hidden_mse_of_a_single_real_token_and_of_none():
    student, target = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)
    student[0, 1] = torch.tensor([3.0, 1.0])
    one_token = torch.tensor([[0, 1, 0]])
    assert hidden_mse(student, target, one_token).item() == pytest.approx((9.0 + 1.0) / 2)  # 1 token x H=2
    assert hidden_mse(student, target, torch.zeros(1, 3, dtype=torch.long)).item() == 0.0  # no real token: no NaN


def test_gate_chain_needs_two_layers_and_records_its_shape():
    chain = GateChain(2, 4)  # the smallest teacher LAD accepts
    assert (chain.num_layers, chain.hidden_size, len(chain.gates)) == (2, 4, 2)
    with pytest.raises(LadcError, match="^LAD needs a teacher with at least 2 layers, got 1$"):
        GateChain(1, 4)


def test_aggregate_needs_one_gate_per_layer():
    gates = GateChain(3, 4).gates
    with pytest.raises(ValueError, match="^need one gate per teacher layer: 3 gates for 2 layers$"):
        aggregate([torch.randn(1, 2, 4)] * 2, gates)
