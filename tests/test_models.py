"""Tests for student construction in ladc/training/models.py: exact layer-copy init, checks, save/reload."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification, BertModel

from ladc.errors import LadcError
from ladc.training.models import build_student

LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def tiny_config(num_layers: int = 4, vocab_size: int = 100, **overrides) -> BertConfig:
    settings = dict(
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=vocab_size,
        max_position_embeddings=64,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        problem_type="single_label_classification",
    )
    return BertConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """A tiny 'pretrained' encoder on disk, the checkpoint the teacher was tuned from."""
    torch.manual_seed(10)
    path = tmp_path_factory.mktemp("pretrained")
    BertModel(tiny_config()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def pretrained(pretrained_dir):
    return BertModel.from_pretrained(pretrained_dir)


@pytest.fixture(scope="module")
def teacher():
    """A 4-layer 'fine-tuned' classifier whose weights differ from the pretrained encoder's."""
    torch.manual_seed(20)
    return BertForSequenceClassification(tiny_config()).eval()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    a_state, b_state = a.state_dict(), b.state_dict()
    return a_state.keys() == b_state.keys() and all(torch.equal(a_state[k], b_state[k]) for k in a_state)


def test_even_copies_mapped_layers_from_the_pretrained_checkpoint(teacher, pretrained, pretrained_dir):
    student = build_student(teacher, 2, init="even", init_from=pretrained_dir)
    assert type(student) is type(teacher)
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    assert student.config.id2label == LABELS and student.config.num_labels == 3
    assert student.config.problem_type == "single_label_classification"
    # layer_map(4, 2) = (2, 4): student layers 1, 2 <- pretrained layers 2, 4
    assert same_weights(student.bert.encoder.layer[0], pretrained.encoder.layer[1])
    assert same_weights(student.bert.encoder.layer[1], pretrained.encoder.layer[3])
    assert not same_weights(student.bert.encoder.layer[0], pretrained.encoder.layer[0])
    assert same_weights(student.bert.embeddings, pretrained.embeddings)
    assert same_weights(student.bert.pooler, pretrained.pooler)
    assert not torch.equal(student.classifier.weight, teacher.classifier.weight)
    # the teacher is not touched
    assert not same_weights(teacher.bert.encoder.layer[1], pretrained.encoder.layer[1])


def test_even_accepts_a_loaded_model_and_an_explicit_mapping(teacher, pretrained):
    student = build_student(teacher, 2, init="even", init_from=pretrained, mapping=(1, 3))
    assert same_weights(student.bert.encoder.layer[0], pretrained.encoder.layer[0])
    assert same_weights(student.bert.encoder.layer[1], pretrained.encoder.layer[2])


def test_first_copies_the_bottom_layers(teacher, pretrained, pretrained_dir):
    # the distiller passes its layer map for every init; 'first' still copies layers 1..S
    student = build_student(teacher, 3, init="first", init_from=pretrained_dir, mapping=(2, 3, 4))
    for index in range(3):
        assert same_weights(student.bert.encoder.layer[index], pretrained.encoder.layer[index])
    assert same_weights(student.bert.embeddings, pretrained.embeddings)


def test_teacher_init_copies_layers_and_classifier_from_the_teacher(teacher):
    student = build_student(teacher, 2, init="teacher")
    assert same_weights(student.bert.encoder.layer[0], teacher.bert.encoder.layer[1])
    assert same_weights(student.bert.encoder.layer[1], teacher.bert.encoder.layer[3])
    assert same_weights(student.bert.embeddings, teacher.bert.embeddings)
    assert same_weights(student.bert.pooler, teacher.bert.pooler)
    assert same_weights(student.classifier, teacher.classifier)


def test_random_init_copies_nothing(teacher, pretrained):
    torch.manual_seed(30)
    student = build_student(teacher, 2, init="random")
    for student_layer in student.bert.encoder.layer:
        for layer in [*pretrained.encoder.layer, *teacher.bert.encoder.layer]:
            assert not torch.equal(student_layer.attention.self.query.weight, layer.attention.self.query.weight)
    assert not torch.equal(
        student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight
    )


def test_build_student_errors(teacher, pretrained_dir, tmp_path):
    with pytest.raises(LadcError, match="student num_layers=4 must be between 1 and 3"):
        build_student(teacher, 4, init="teacher")
    with pytest.raises(LadcError, match="student num_layers=0"):
        build_student(teacher, 0, init="random")
    with pytest.raises(LadcError, match="init 'evn' is unknown.*did you mean 'even'"):
        build_student(teacher, 2, init="evn", init_from=pretrained_dir)
    with pytest.raises(LadcError, match="needs init_from"):
        build_student(teacher, 2, init="even")
    with pytest.raises(LadcError, match="mapping"):
        build_student(teacher, 2, init="teacher", mapping=(1, 5))

    BertModel(tiny_config(vocab_size=120)).save_pretrained(tmp_path / "other_vocab")
    with pytest.raises(LadcError, match=r"vocabulary mismatch between teacher \(vocab 100\) and student init .* 120"):
        build_student(teacher, 2, init="even", init_from=str(tmp_path / "other_vocab"))
    BertModel(tiny_config(intermediate_size=48)).save_pretrained(tmp_path / "other_width")
    with pytest.raises(LadcError, match="intermediate_size=48"):
        build_student(teacher, 2, init="first", init_from=str(tmp_path / "other_width"))
    BertModel(tiny_config(num_layers=2)).save_pretrained(tmp_path / "shallow")
    with pytest.raises(LadcError, match="has 2 layers"):
        build_student(teacher, 2, init="even", init_from=str(tmp_path / "shallow"))


def test_student_saves_and_reloads_with_identical_logits(teacher, pretrained_dir, tmp_path):
    student = build_student(teacher, 2, init="even", init_from=pretrained_dir).eval()
    input_ids = torch.randint(1, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 6:] = 0
    with torch.no_grad():
        logits = student(input_ids=input_ids, attention_mask=attention_mask).logits
    student.save_pretrained(tmp_path / "student")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    assert reloaded.config.num_hidden_layers == 2 and reloaded.config.id2label == LABELS
    with torch.no_grad():
        reloaded_logits = reloaded(input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.allclose(logits, reloaded_logits, atol=1e-6)


@pytest.mark.integration
def test_even_student_from_minilm_copies_its_layers(minilm_dir):
    from transformers import AutoModel

    from ladc.data.tasks import get_task
    from ladc.training.models import load_for_finetune

    teacher = load_for_finetune("minilm", get_task("sst2"))
    pretrained = AutoModel.from_pretrained(minilm_dir)
    student = build_student(teacher, 3, init="even", init_from="minilm")
    assert student.config.num_hidden_layers == 3 and student.config.hidden_size == 384
    for student_index, teacher_layer in enumerate((2, 4, 6)):
        assert same_weights(student.bert.encoder.layer[student_index], pretrained.encoder.layer[teacher_layer - 1])
    assert same_weights(student.bert.embeddings, pretrained.embeddings)
