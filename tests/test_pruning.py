"""Tests for ladc/training/pruning.py: student shapes, activation importance, the kept units and the sliced weights."""

from __future__ import annotations

import pytest
import torch

from ladc.errors import LadcError
from ladc.training.pruning import (
    Importance,
    KeptUnits,
    StudentShape,
    measure_importance,
    select_kept,
    slice_teacher,
    student_shape,
)


@pytest.fixture
def teacher(tiny_bert_config):
    """A 4-layer random BERT classifier: hidden 32, 4 heads of 8, FFN 64."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_layers=4, num_attention_heads=4)).eval()


def _batch(seed: int = 0, batch: int = 4, length: int = 12) -> dict:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 60, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, 7:] = 0  # one padded row: padding must not count
    input_ids[1, 7:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def _logits(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


# ----------------------------------------------------------------------------- shapes


def test_student_shape_follows_the_teacher_where_unset(teacher):
    config = teacher.config  # 32 hidden, 4 heads of 8, FFN 64
    assert student_shape(config, 2, None, None, None) == StudentShape(2, 32, 64, 4)
    assert student_shape(config, 2, 16, None, None) == StudentShape(2, 16, 32, 2)  # FFN ratio and head size kept
    assert student_shape(config, 3, 16, 48, 4) == StudentShape(3, 16, 48, 4)  # 4 heads of 4
    assert student_shape(config, 2, 16, None, None).name() == "2L-16H-32I-2A"


@pytest.mark.parametrize(
    ("hidden", "intermediate", "heads", "message"),
    [
        (64, None, None, "--student-hidden 64 must be between 1 and the teacher's hidden size 32"),
        (16, 128, None, "--student-intermediate 128 must be between 1 and the teacher's intermediate size 64"),
        (16, None, 8, "--student-heads 8 must be between 1 and the teacher's 4 heads"),
        (18, None, 4, "--student-hidden 18 is not a multiple of --student-heads 4"),
        (24, None, 2, "head size 12, wider than the teacher's 8; use at least 3 heads"),
    ],
)
def test_student_shape_refuses_what_bert_cannot_build(teacher, hidden, intermediate, heads, message):
    with pytest.raises(LadcError, match=message.replace("(", r"\(")):
        student_shape(teacher.config, 2, hidden, intermediate, heads)


# ----------------------------------------------------------------------------- slicing


def _everything(teacher) -> KeptUnits:
    config = teacher.config
    layers = tuple(range(1, config.num_hidden_layers + 1))
    return KeptUnits(
        layers,
        torch.arange(config.hidden_size),
        tuple(torch.arange(config.hidden_size) for _ in layers),
        tuple(torch.arange(config.intermediate_size) for _ in layers),
    )


def test_keeping_every_unit_reproduces_the_teacher(teacher):
    config = teacher.config
    shape = StudentShape(config.num_hidden_layers, config.hidden_size, config.intermediate_size, 4)
    student = slice_teacher(teacher, shape, _everything(teacher)).eval()
    batch = _batch()
    torch.testing.assert_close(_logits(student, batch), _logits(teacher, batch), rtol=0, atol=1e-6)


def test_a_kept_subset_equals_the_teacher_sliced_by_hand(teacher):
    """Every student weight against the teacher's, indexed here by hand, parameter by parameter."""
    shape = StudentShape(2, 16, 24, 2)  # 2 heads of 8
    hidden = torch.tensor([0, 3, 4, 7, 9, 10, 12, 15, 16, 19, 21, 22, 25, 28, 30, 31])
    qkv = (
        torch.cat([torch.arange(8, 16), torch.arange(24, 32)]),
        torch.cat([torch.arange(0, 8), torch.arange(16, 24)]),
    )
    neurons = (torch.arange(0, 48, 2), torch.arange(40, 64))
    student = slice_teacher(teacher, shape, KeptUnits((2, 4), hidden, qkv, neurons))
    t = teacher.state_dict()
    expected = {
        "bert.embeddings.word_embeddings.weight": t["bert.embeddings.word_embeddings.weight"][:, hidden],
        "bert.embeddings.position_embeddings.weight": t["bert.embeddings.position_embeddings.weight"][:, hidden],
        "bert.embeddings.token_type_embeddings.weight": t["bert.embeddings.token_type_embeddings.weight"][:, hidden],
        "bert.embeddings.LayerNorm.weight": t["bert.embeddings.LayerNorm.weight"][hidden],
        "bert.embeddings.LayerNorm.bias": t["bert.embeddings.LayerNorm.bias"][hidden],
        "bert.pooler.dense.weight": t["bert.pooler.dense.weight"][hidden][:, hidden],
        "bert.pooler.dense.bias": t["bert.pooler.dense.bias"][hidden],
        "classifier.weight": t["classifier.weight"][:, hidden],
        "classifier.bias": t["classifier.bias"],
    }
    for student_layer, teacher_layer in enumerate((2, 4)):
        s, p = f"bert.encoder.layer.{student_layer}.", f"bert.encoder.layer.{teacher_layer - 1}."
        rows, ffn = qkv[student_layer], neurons[student_layer]
        for name in ("query", "key", "value"):
            expected[f"{s}attention.self.{name}.weight"] = t[f"{p}attention.self.{name}.weight"][rows][:, hidden]
            expected[f"{s}attention.self.{name}.bias"] = t[f"{p}attention.self.{name}.bias"][rows]
        expected[f"{s}attention.output.dense.weight"] = t[f"{p}attention.output.dense.weight"][hidden][:, rows]
        expected[f"{s}attention.output.dense.bias"] = t[f"{p}attention.output.dense.bias"][hidden]
        expected[f"{s}intermediate.dense.weight"] = t[f"{p}intermediate.dense.weight"][ffn][:, hidden]
        expected[f"{s}intermediate.dense.bias"] = t[f"{p}intermediate.dense.bias"][ffn]
        expected[f"{s}output.dense.weight"] = t[f"{p}output.dense.weight"][hidden][:, ffn]
        expected[f"{s}output.dense.bias"] = t[f"{p}output.dense.bias"][hidden]
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            expected[f"{s}{norm}.weight"] = t[f"{p}{norm}.weight"][hidden]
            expected[f"{s}{norm}.bias"] = t[f"{p}{norm}.bias"][hidden]
    state = student.state_dict()
    assert set(state) == set(expected)
    for name, value in expected.items():
        assert torch.equal(state[name], value), name
    assert (student.config.hidden_size, student.config.intermediate_size) == (16, 24)
    assert (student.config.num_attention_heads, student.config.num_hidden_layers) == (2, 2)


# ----------------------------------------------------------------------------- importance and selection


def test_select_kept_takes_the_top_scores_in_index_order():
    importance = Importance(
        hidden=torch.tensor([0.1, 0.9, 0.5, 0.7]),
        heads=(torch.tensor([1.0, 3.0, 2.0]),),
        head_dims=(torch.tensor([[1.0, 2.0], [5.0, 4.0], [0.0, 9.0]]),),
        neurons=(torch.tensor([3.0, 1.0, 2.0, 2.0]),),  # a tie between neurons 2 and 3: the lower index wins
    )
    kept = select_kept(importance, StudentShape(1, 2, 2, 2), (1,))  # 2 heads of 1 dim
    assert kept.hidden.tolist() == [1, 3]
    assert kept.neurons[0].tolist() == [0, 2]
    assert kept.qkv[0].tolist() == [2, 5]  # heads 1 and 2, each at its best dimension
    assert kept.layers == (1,)
    whole = select_kept(importance, StudentShape(1, 4, 2, 2), (1,))  # head size 2 = the teacher's: whole heads
    assert whole.qkv[0].tolist() == [2, 3, 4, 5] and whole.hidden.tolist() == [0, 1, 2, 3]
    half = select_kept(importance, StudentShape(1, 3, 2, 3), (1,))  # 3 heads of 1 dim: each head's best dim
    assert half.qkv[0].tolist() == [1, 2, 5]


def test_importance_finds_dead_units_and_ignores_padding(teacher):
    """A head whose value weights are zero, an FFN neuron that never fires and a channel every LayerNorm zeroes score
    lowest; padded tokens do not change any score."""
    layer = teacher.bert.encoder.layer[1]
    with torch.no_grad():
        layer.attention.self.value.weight[16:24] = 0  # head 2 of layer 2
        layer.attention.self.value.bias[16:24] = 0
        layer.intermediate.dense.weight[5] = 0  # neuron 5 of layer 2: GELU(0) = 0
        layer.intermediate.dense.bias[5] = 0
        for module in teacher.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[11] = 0
                module.bias[11] = 0
    batch = _batch()
    importance = measure_importance(teacher, [batch])
    assert int(importance.heads[1].argmin()) == 2 and float(importance.heads[1][2]) == 0.0
    assert int(importance.neurons[1].argmin()) == 5
    assert int(importance.hidden.argmin()) == 11
    assert all(h.shape == (4,) for h in importance.heads) and importance.head_dims[0].shape == (4, 8)

    padded = {k: v.clone() for k, v in batch.items()}
    padded["input_ids"][1, 7:] = 42  # other ids under the mask
    again = measure_importance(teacher, [padded])
    torch.testing.assert_close(again.hidden, importance.hidden)
    torch.testing.assert_close(again.neurons[3], importance.neurons[3])
    with pytest.raises(LadcError, match="no tokens"):
        measure_importance(teacher, [])
    assert not teacher.training  # eval mode restored as found
