"""Tests for ladc/training/lad.py: layer map, gates, aggregation and losses against hand-computed numbers."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy
from transformers import BertConfig, BertForSequenceClassification

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
from ladc.training.methods import distill_terms


def tiny_bert(num_layers: int, hidden_size: int = 32, num_labels: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).eval()


def tiny_batch(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 100, (4, 7), generator=generator)
    attention_mask = torch.ones(4, 7, dtype=torch.long)
    attention_mask[1, 5:] = 0
    attention_mask[3, 3:] = 0
    labels = torch.tensor([0, 2, 1, 2])
    return input_ids, attention_mask, labels


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


# ---------------------------------------------------------------- distill_terms


def run_models(teacher, student, output_hidden_states=True):
    input_ids, attention_mask, labels = tiny_batch()
    with torch.no_grad():
        teacher_out = teacher(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    student_out = student(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
    return student_out, teacher_out, labels, attention_mask


def test_distill_terms_keys_and_weighted_sums():
    teacher, student = tiny_bert(4, seed=0), tiny_bert(2, seed=1)
    student_out, teacher_out, labels, mask = run_models(teacher, student)
    weights = LossWeights(hard=0.3, soft=0.7, temperature=2.0, mu=50.0, beta=20.0)
    gates = GateChain(4, 32)
    hard = hard_loss(student_out.logits, labels, False)
    soft = soft_kl(student_out.logits, teacher_out.logits, 2.0)
    common = dict(labels=labels, attention_mask=mask, gates=gates, weights=weights)

    none = distill_terms("none", student_out, None, **common)
    assert set(none) == {"hard", "loss"} and torch.allclose(none["loss"], hard)

    kd = distill_terms("kd", student_out, teacher_out, **common)
    assert set(kd) == {"hard", "soft", "loss"}
    assert torch.allclose(kd["soft"], soft) and torch.allclose(kd["loss"], 0.3 * hard + 0.7 * soft)

    lad = distill_terms("lad", student_out, teacher_out, **common)
    assert set(lad) == {"hard", "soft", "hidden", "loss"}
    aggregated = gates(teacher_out.hidden_states[1:])
    student_hidden = student_out.hidden_states[1:]
    hidden = (
        hidden_mse(student_hidden[0], aggregated[1], mask) + hidden_mse(student_hidden[1], aggregated[3], mask)
    ) / 2
    assert torch.allclose(lad["hidden"], hidden)
    assert torch.allclose(lad["loss"], 0.3 * hard + 0.7 * soft + 50.0 * hidden)

    pkd = distill_terms("pkd", student_out, teacher_out, **common)
    assert set(pkd) == {"hard", "soft", "patient", "loss"}
    # layer_map(4, 2) = (2, 4); PKD leaves out the teacher's last layer, so only student 1 <- teacher 2 remains
    patient = pkd_loss([student_hidden[0]], [teacher_out.hidden_states[2]])
    assert torch.allclose(pkd["patient"], patient)
    assert torch.allclose(pkd["loss"], 0.3 * hard + 0.7 * soft + 20.0 * patient)

    reverse = distill_terms("lad", student_out, teacher_out, reverse=True, **common)
    assert not torch.allclose(reverse["hidden"], lad["hidden"])
    explicit = distill_terms("lad", student_out, teacher_out, mapping=(1, 3), **common)
    expected = (
        hidden_mse(student_hidden[0], aggregated[0], mask) + hidden_mse(student_hidden[1], aggregated[2], mask)
    ) / 2
    assert torch.allclose(explicit["hidden"], expected)
    matches = (LayerMatch(2, 4, weight=3.0),)
    weighted = distill_terms("lad", student_out, teacher_out, mapping=matches, **common)
    assert torch.allclose(weighted["hidden"], 3.0 * hidden_mse(student_hidden[1], aggregated[3], mask))
    # PKD reads each pair's weight too: student 1 <- teacher 3 at weight 4, and student 2 <- teacher 2 switched off
    pkd_matches = (LayerMatch(1, 3, "pkd_cls", weight=4.0), LayerMatch(2, 2, "pkd_cls", weight=0.0))
    weighted_pkd = distill_terms("pkd", student_out, teacher_out, mapping=pkd_matches, **common)
    patients = [pkd_loss([student_hidden[j]], [teacher_out.hidden_states[t]]) for j, t in ((0, 3), (1, 2))]
    assert torch.allclose(weighted_pkd["patient"], (4.0 * patients[0] + 0.0 * patients[1]) / 2)


def test_distill_terms_regression_uses_mse():
    teacher, student = tiny_bert(4, num_labels=1, seed=0), tiny_bert(2, num_labels=1, seed=1)
    student_out, teacher_out, _, mask = run_models(teacher, student)
    scores = torch.tensor([0.5, 4.0, 2.5, 1.0])
    terms = distill_terms("kd", student_out, teacher_out, scores, mask, is_regression=True)
    expected_soft = ((student_out.logits - teacher_out.logits) ** 2).mean()
    expected_hard = ((student_out.logits.squeeze(-1) - scores) ** 2).mean()
    assert torch.allclose(terms["soft"], expected_soft) and torch.allclose(terms["hard"], expected_hard)
    assert torch.allclose(terms["loss"], 0.5 * expected_hard + 0.5 * expected_soft)


def test_identical_student_gives_zero_hidden_and_patient_loss():
    teacher = tiny_bert(2, seed=0)
    twin = copy.deepcopy(teacher)
    student_out, teacher_out, labels, mask = run_models(teacher, twin)
    for s, t in zip(student_out.hidden_states[1:], teacher_out.hidden_states[1:], strict=True):
        assert hidden_mse(s, t, mask).item() == 0.0
    terms = distill_terms("pkd", student_out, teacher_out, labels, mask, mapping=(1, 2))
    assert terms["patient"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["soft"].item() == pytest.approx(0.0, abs=1e-6)


def test_distill_terms_errors():
    teacher, student = tiny_bert(4, seed=0), tiny_bert(2, hidden_size=16, seed=1)
    student_out, teacher_out, labels, mask = run_models(teacher, student)
    message = "student hidden size 16 differs from the teacher's 32; layer distillation needs equal sizes or a "
    with pytest.raises(LadcError, match=re.escape(message) + r"HiddenProjection \(methods.py adds one for a narrower"):
        distill_terms("lad", student_out, teacher_out, labels, mask, gates=GateChain(4, 32))
    with pytest.raises(
        LadcError, match="^distillation method 'tinybert' is unknown; expected one of lad, pkd, kd, none$"
    ):
        distill_terms("tinybert", student_out, teacher_out, labels, mask)
    student = tiny_bert(2, seed=1)
    student_out, teacher_out, labels, mask = run_models(teacher, student)
    with pytest.raises(LadcError, match="out of range"):
        distill_terms("lad", student_out, teacher_out, labels, mask, gates=GateChain(4, 32), mapping=(2, 5))
    with pytest.raises(LadcError, match="does not fit"):
        distill_terms("pkd", student_out, teacher_out, labels, mask, mapping=(LayerMatch(1, 2),))
    with pytest.raises(LadcError, match="^layer mapping is empty; expected one teacher layer per student layer$"):
        distill_terms("lad", student_out, teacher_out, labels, mask, gates=GateChain(4, 32), mapping=())


def test_layer_methods_need_hidden_states_of_both_models_and_lad_its_gates():
    teacher, student = tiny_bert(4, seed=0), tiny_bert(2, seed=1)
    message = "^method '{}' needs hidden states: call both models with output_hidden_states=True$"
    student_bare, teacher_out, labels, mask = run_models(teacher, student, output_hidden_states=False)
    student_out, _, _, _ = run_models(teacher, student)
    input_ids, attention_mask, _ = tiny_batch()
    with torch.no_grad():
        teacher_bare = teacher(input_ids=input_ids, attention_mask=attention_mask)
    for method in ("lad", "pkd"):
        gates = GateChain(4, 32) if method == "lad" else None
        for s_out, t_out in ((student_bare, teacher_out), (student_out, teacher_bare)):
            with pytest.raises(ValueError, match=message.format(method)):
                distill_terms(method, s_out, t_out, labels, mask, gates=gates)
    with pytest.raises(ValueError, match=r"^method 'lad' needs gates \(a GateChain with one gate per teacher layer\)$"):
        distill_terms("lad", student_out, teacher_out, labels, mask)


def test_one_backward_reaches_student_and_gates():
    teacher, student = tiny_bert(4, seed=0), tiny_bert(2, seed=1)
    gates = GateChain(4, 32)
    student_out, teacher_out, labels, mask = run_models(teacher, student)
    distill_terms("lad", student_out, teacher_out, labels, mask, gates=gates)["loss"].backward()
    query = student.bert.encoder.layer[0].attention.self.query.weight
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert student.classifier.weight.grad.abs().sum() > 0
    for gate in gates.gates[1:]:
        assert gate.linear.weight.grad.abs().sum() > 0
        assert gate.layer_norm.weight.grad.abs().sum() > 0
    assert gates.gates[0].linear.weight.grad is None  # step 0 of the chain is the identity a_1 = h_1
    # (that the teacher gets no gradient is distill's job, run under inference_mode: tests/test_distill.py)


def test_a_few_adamw_steps_lower_the_lad_loss():
    teacher, student = tiny_bert(4, seed=0), tiny_bert(2, seed=1)
    gates = GateChain(4, 32)
    optimizer = torch.optim.AdamW([*student.parameters(), *gates.parameters()], lr=2e-3)
    losses = []
    for _ in range(15):
        student_out, teacher_out, labels, mask = run_models(teacher, student)
        terms = distill_terms("lad", student_out, teacher_out, labels, mask, gates=gates)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.5 * losses[0], losses
