"""Checks ladc/training/models.py makes before a model runs: label sets, tokenizer and positions, unreadable weights."""

from __future__ import annotations

import pytest

from ladc.data.tasks import get_task
from ladc.errors import LadcError
from ladc.training.models import check_inputs_fit, load_classifier, load_for_finetune
from tests.helpers import write_tiny_classifier


def _save(path, config, tokenizer, manifest=None):
    return write_tiny_classifier(path, config, tokenizer, manifest)


def test_glue_label_names_or_order_of_another_task_are_refused(tmp_path, tiny_bert_config, tiny_tokenizer):
    sst2 = _save(tmp_path / "sst2", tiny_bert_config(id2label={0: "negative", 1: "positive"}), tiny_tokenizer)
    with pytest.raises(LadcError, match="predicts labels negative, positive but task qnli has entailment, not_"):
        load_classifier(str(sst2), get_task("qnli"))
    assert load_classifier(str(sst2), get_task("sst2")).num_labels == 2
    # MNLI in the GLUE TSV processors' order: the same names, another order, so every prediction would be wrong
    tsv_order = {0: "contradiction", 1: "entailment", 2: "neutral"}
    mnli = _save(tmp_path / "mnli", tiny_bert_config(num_labels=3, id2label=tsv_order), tiny_tokenizer)
    with pytest.raises(LadcError, match="predicts labels contradiction, entailment, neutral but task mnli"):
        load_classifier(str(mnli), get_task("mnli"))
    # a hub model's own names are not GLUE names: no evidence either way, so it loads
    hub = _save(tmp_path / "hub", tiny_bert_config(id2label={0: "NEG", 1: "POS!"}), tiny_tokenizer)
    assert load_classifier(str(hub), get_task("rte")).num_labels == 2


def test_task_recorded_in_ladc_json_must_match(tmp_path, tiny_bert_config, tiny_tokenizer):
    model = _save(tmp_path / "m", tiny_bert_config(), tiny_tokenizer, {"task": "rte"})
    with pytest.raises(LadcError, match=r"was tuned on rte \(its ladc.json\), not wnli"):
        load_classifier(str(model), get_task("wnli"))


def test_tokenizer_and_positions_must_fit_the_embeddings(tiny_bert_config, tiny_tokenizer):
    check_inputs_fit(tiny_tokenizer, tiny_bert_config(), 128, "m")
    with pytest.raises(LadcError, match=r"has \d+ tokens but the model's vocabulary has 10"):
        check_inputs_fit(tiny_tokenizer, tiny_bert_config(vocab_size=10), 128, "m")
    with pytest.raises(LadcError, match="max_seq_len 129 exceeds the 128 positions of m"):
        check_inputs_fit(tiny_tokenizer, tiny_bert_config(), 129, "m")
    roberta = tiny_bert_config(max_position_embeddings=130, pad_token_id=1)
    roberta.model_type = "roberta"  # positions start after the padding index: 130 - 2 usable
    with pytest.raises(LadcError, match="max_seq_len 129 exceeds the 128 positions"):
        check_inputs_fit(tiny_tokenizer, roberta, 129, "m")


def test_truncated_weights_are_a_one_line_error(tmp_path, tiny_bert_config, tiny_tokenizer):
    model = _save(tmp_path / "m", tiny_bert_config(id2label={0: "negative", 1: "positive"}), tiny_tokenizer)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    for load in (lambda: load_classifier(str(model), get_task("sst2")),
                 lambda: load_for_finetune(str(model), get_task("sst2"))):  # fmt: skip
        with pytest.raises(LadcError, match=r"cannot load model weights from '.*m': Error while deserializing"):
            load()
