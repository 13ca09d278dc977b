"""Tests for ladc/training/methods.py: methods are data, so a new one is a record registered in METHODS and nothing else."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ladc.errors import LadcError
from ladc.runs.config import DataConfig, DistillConfig, OptimConfig
from ladc.training import methods
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
