"""Tests for ladc/training/methods.py: methods are data, so a new one is a record registered in METHODS and nothing else;
distill_terms' keys, weighted sums and errors on tiny BERTs."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from ladc.errors import LadcError
from ladc.runs.config import DataConfig, DistillConfig, LossWeights, OptimConfig
from ladc.training import methods
from ladc.training.lad import (
    GateChain,
    LayerMatch,
    hard_loss,
    hidden_mse,
    pkd_loss,
    soft_kl,
)
from ladc.training.methods import METHODS, LossTerm, Method, ModuleContext, distill_terms
from tests.helpers import write_tiny_teacher


@pytest.fixture
def tiny_teacher(tmp_path, tiny_bert_config, tiny_tokenizer):
    return write_tiny_teacher(tmp_path, tiny_bert_config, tiny_tokenizer)


def _config(teacher, glue, output, method: str) -> DistillConfig:
    return DistillConfig(
        teacher=str(teacher), output=str(output), method=method, student_layers=2,
        data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(output.parent / "cache")),
        optim=OptimConfig(lr=1e-3, batch_size=16, max_steps=3, warmup_ratio=0.0, log_steps=1, eval_steps=3),
    )  # fmt: skip


def _logit_mse(inputs) -> torch.Tensor:
    """The fake method's one term: plain MSE between student and teacher logits."""
    return F.mse_loss(inputs.student_out.logits.float(), inputs.teacher_out.logits.float())


def test_a_registered_fake_method_runs_through_distill(tiny_teacher, monkeypatch):
    from ladc.commands.distill import distill

    calls = []

    def logit_mse(inputs):
        calls.append(inputs.student_out.hidden_states)
        return _logit_mse(inputs)

    fake = Method("logit-mse", "logits", (LossTerm("logit_mse", logit_mse),))
    monkeypatch.setitem(methods.METHODS, "logit-mse", fake)
    teacher, glue, tmp = tiny_teacher
    metrics = distill(_config(teacher, glue, tmp / "student", "logit-mse"))

    logged = [h for h in metrics["history"] if "loss" in h]
    assert len(logged) == 3 and all(set(h) >= {"logit_mse", "loss"} for h in logged)
    assert all("hard" not in h and "soft" not in h for h in logged)  # only the record's own term is summed
    assert all(h["loss"] == pytest.approx(h["logit_mse"], rel=1e-6) for h in logged)
    assert calls and all(hidden is None for hidden in calls)  # a logits-only method never asks for hidden states
    manifest = json.loads((tmp / "student" / "ladc.json").read_text())
    assert manifest["method"] == "logit-mse" and manifest["layer_map"] is None
    assert not (tmp / "student" / "gates.safetensors").exists()  # no extra modules: nothing beside the model


def test_an_unregistered_method_is_refused_before_training(tiny_teacher):
    from ladc.commands.distill import distill

    teacher, glue, tmp = tiny_teacher
    with pytest.raises(LadcError, match="--method 'logit-mse' is unknown; expected one of lad, pkd, kd, none"):
        distill(_config(teacher, glue, tmp / "student", "logit-mse"))
    assert not (tmp / "student").exists()


def test_records_describe_what_each_method_needs():
    assert {name: m.teacher_outputs for name, m in METHODS.items()} == {
        "lad": "hidden_states", "pkd": "hidden_states", "kd": "logits", "none": "none",
    }  # fmt: skip
    assert [t.name for t in METHODS["lad"].terms] == ["hard", "soft", "hidden"]
    assert [(m.name, m.lr_field) for m in METHODS["lad"].modules] == [
        ("gates", "gate_lr"),
        ("projection", "projection_lr"),
    ]
    assert [m.name for m in METHODS["pkd"].modules] == ["projection"]
    assert not METHODS["kd"].modules and not METHODS["none"].modules
    from transformers import BertConfig

    wide, narrow = BertConfig(hidden_size=32), BertConfig(hidden_size=16)
    needed = {(m.name, s.hidden_size): m.is_needed(ModuleContext(wide, s, (2,))) for m in METHODS["lad"].modules
              for s in (wide, narrow)}  # fmt: skip
    assert needed == {("gates", 32): True, ("gates", 16): True, ("projection", 32): False, ("projection", 16): True}
    with pytest.raises(ValueError, match="distinct names"):
        Method("twice", "logits", (LossTerm("a", _logit_mse), LossTerm("a", _logit_mse)))
    with pytest.raises(ValueError, match="teacher_outputs"):
        Method("x", "attentions", (LossTerm("a", _logit_mse),))


def test_term_weights_come_from_the_named_loss_weight():
    """A term with weight 'soft' is scaled by weights.soft; an unweighted one counts once."""
    from types import SimpleNamespace

    from ladc.runs.config import LossWeights

    student = SimpleNamespace(logits=torch.tensor([[2.0, 0.0], [0.0, 1.0]]), hidden_states=None)
    teacher = SimpleNamespace(logits=torch.tensor([[1.0, 0.0], [0.0, 3.0]]), hidden_states=None)
    record = Method("w", "logits", (LossTerm("a", _logit_mse, "soft"), LossTerm("b", _logit_mse)))
    terms = distill_terms(record, student, teacher, torch.tensor([0, 1]), weights=LossWeights(soft=3.0))
    mse = ((1.0**2) + (2.0**2)) / 4  # mean over the 4 logits
    assert terms["a"].item() == pytest.approx(mse) and terms["b"].item() == pytest.approx(mse)
    assert terms["loss"].item() == pytest.approx(3.0 * mse + mse)


def test_a_method_needs_distinct_term_names_other_than_loss():
    term = LossTerm("a", _logit_mse)
    for terms, names in (((), []), ((term, LossTerm("loss", _logit_mse)), ["a", "loss"]), ((term, term), ["a", "a"])):
        with pytest.raises(ValueError) as caught:
            Method("m", "logits", terms)
        assert str(caught.value) == f"method 'm': terms need distinct names other than 'loss', got {names}"
    with pytest.raises(
        ValueError, match=r"^teacher_outputs 'all' is not one of \('none', 'logits', 'hidden_states'\)$"
    ):
        Method("m", "all", (term,))


@pytest.mark.parametrize(
    ("mapping", "reverse"),
    [((2, 4, 6), False), ((2, 4, 6), True), ((1, 3), False), ((2, 3), False), ((3, 5), True), ((4, 6), True)],
)
def test_lad_trains_exactly_the_gates_its_loss_reaches(mapping, reverse):
    """The gates LAD's build freezes are the ones its hidden loss sends no gradient to (DDP needs a gradient for every
    trainable parameter): unfreeze all, run the term, and compare which gates got one."""
    from types import SimpleNamespace

    from transformers import BertConfig

    teacher_layers, hidden = 6, 8
    extra = METHODS["lad"].modules[0]
    config = BertConfig(num_hidden_layers=teacher_layers, hidden_size=hidden)
    gates = extra.build(ModuleContext(config, config, mapping, reverse))
    trainable = []
    for gate in gates.gates:
        flags = {p.requires_grad for p in gate.parameters()}
        assert len(flags) == 1  # a gate is frozen or trained as a whole
        trainable.append(flags.pop())
    gates.requires_grad_(True)
    generator = torch.Generator().manual_seed(0)

    def states(count: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.randn(2, 5, hidden, generator=generator) for _ in range(count + 1))

    inputs = methods.TermInputs(
        SimpleNamespace(logits=torch.zeros(2, 2), hidden_states=states(len(mapping))),
        SimpleNamespace(logits=torch.zeros(2, 2), hidden_states=states(teacher_layers)),
        torch.tensor([0, 1]), torch.ones(2, 5), {"gates": gates}, mapping=mapping, reverse=reverse,
    )  # fmt: skip
    methods.lad_hidden_term(inputs).backward()
    reached = [any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in g.parameters()) for g in gates.gates]
    assert trainable == reached and not trainable[0]


# ---------------------------------------------------------------- distill_terms


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
