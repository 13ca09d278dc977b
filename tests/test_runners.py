"""Tests of ladc/deploy/runners.py on a tiny random BERT: the runner protocol, predict_logits, the provider type and the one
onnxruntime session opener (real torch and onnxruntime, no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ladc.deploy.runners import open_artifact, predict_logits
from ladc.engines.onnxruntime_session import OrtRunner, Provider, open_session
from ladc.engines.torch_engine import TorchRunner
from ladc.errors import LadcError
from tests.helpers import ONNX_INPUTS, export_plain_onnx


@pytest.fixture(scope="module")
def tiny_classifier():
    """A random 2-layer, 3-label BERT over the tiny vocab (the shape conftest's tiny_bert_config makes)."""
    from transformers import BertConfig, BertForSequenceClassification

    from tests.conftest import TINY_VOCAB

    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0, num_labels=3)  # fmt: skip
    torch.manual_seed(0)
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def batches(tiny_vocab_file) -> list[dict[str, np.ndarray]]:
    """Three padded batches of different widths, with distinct labels 0..6 in order."""
    sentences = [["good ."], ["the movie was very boring and not funny !", "a great old film"],
                 ["bad", "she saw the cat", "it is what it is , often"]]  # fmt: skip
    from transformers import BertTokenizerFast

    tiny_tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True)
    out, label = [], 0
    for group in sentences:
        batch = dict(tiny_tokenizer(group, padding=True, return_tensors="np"))
        batch["labels"] = np.arange(label, label + len(group))
        label += len(group)
        out.append(batch)
    return out


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, tiny_classifier, batches) -> Path:
    """The tiny classifier as fp32 ONNX with dynamic batch and sequence axes (torch's TorchScript exporter)."""
    example = tuple(torch.from_numpy(batches[1][name]) for name in ONNX_INPUTS)
    return export_plain_onnx(tiny_classifier, tmp_path_factory.mktemp("onnx") / "model.onnx", example)


def _plain_forward(model, batches) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([
            model(**{k: torch.from_numpy(v) for k, v in b.items() if k != "labels"}).logits.numpy() for b in batches
        ])  # fmt: skip


def test_torch_runner_equals_a_plain_forward_and_keeps_label_order(tiny_classifier, batches):
    logits, labels = predict_logits(TorchRunner(tiny_classifier), batches)
    assert logits.dtype == np.float32 and logits.shape == (6, 3)
    np.testing.assert_allclose(logits, _plain_forward(tiny_classifier, batches), rtol=0, atol=1e-6)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_predict_logits_without_labels_returns_none(tiny_classifier, batches):
    unlabelled = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    logits, labels = predict_logits(TorchRunner(tiny_classifier), unlabelled)
    assert labels is None and logits.shape == (6, 3)


def test_labels_follow_a_dataloader_in_order(tiny_classifier, tiny_tokenizer):
    from ladc.data.data import make_collator, make_dataloader
    from ladc.data.tasks import get_task

    texts = ["good .", "bad", "a great old film", "the cat", "boring", "funny movie", "she went home"]
    rows = [{**tiny_tokenizer(t), "labels": i % 2, "idx": i} for i, t in enumerate(texts)]
    loader = make_dataloader(rows, make_collator(tiny_tokenizer, get_task("sst2")), 3, shuffle=False)
    logits, labels = predict_logits(TorchRunner(tiny_classifier), loader)
    assert labels.tolist() == [i % 2 for i in range(len(texts))]
    # batched with padding vs one unpadded row at a time: the same logits in the same order
    single = [dict(tiny_tokenizer([t], return_tensors="np")) for t in texts]
    np.testing.assert_allclose(logits, _plain_forward(tiny_classifier, single), atol=1e-5)


def test_torch_runner_under_an_accelerator_matches_plain_inference(tiny_classifier, tiny_tokenizer):
    """Training eval's path: accelerate's prepared loader, autocast context and gather_for_metrics."""
    from accelerate import Accelerator

    from ladc.data.data import make_collator, make_dataloader
    from ladc.data.tasks import get_task

    texts = ["good .", "bad", "a great old film", "the cat", "boring"]  # 5 rows, batch 2: a ragged last batch
    rows = [{**tiny_tokenizer(t), "labels": i} for i, t in enumerate(texts)]
    loader = make_dataloader(rows, make_collator(tiny_tokenizer, get_task("mnli")), 2, shuffle=False)
    expected, expected_labels = predict_logits(TorchRunner(tiny_classifier), loader)
    accelerator = Accelerator(cpu=True)
    model, prepared = accelerator.prepare(tiny_classifier, loader)
    logits, labels = predict_logits(TorchRunner(model, accelerator=accelerator), prepared)
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    assert labels.tolist() == expected_labels.tolist() == [0, 1, 2, 3, 4]


def test_bf16_runner_differs_from_fp32_but_keeps_shape(tiny_classifier, batches):
    fp32, _ = predict_logits(TorchRunner(tiny_classifier), batches)
    bf16, _ = predict_logits(TorchRunner(tiny_classifier, bf16=True), batches)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32) and np.abs(bf16 - fp32).max() < 0.1


# ----------------------------------------------------------------------------- onnxruntime


def test_ort_fp32_runner_equals_torch_within_1e4(onnx_file, tiny_classifier, batches):
    runner = OrtRunner(open_session(onnx_file, threads=1))
    logits, labels = predict_logits(runner, batches)
    np.testing.assert_allclose(logits, predict_logits(TorchRunner(tiny_classifier), batches)[0], rtol=0, atol=1e-4)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]
    # int32 ids and torch tensors are both fed as the graph's int64
    as_torch = {k: torch.from_numpy(v.astype(np.int32)) for k, v in batches[2].items()}
    np.testing.assert_allclose(runner(as_torch), logits[3:], atol=1e-6)


def test_provider_lists():
    assert Provider().ort_providers() == ["CPUExecutionProvider"]
    assert Provider("cpu", tensorrt=True).ort_providers() == ["CPUExecutionProvider"]  # TensorRT needs CUDA
    assert Provider("cuda").ort_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert Provider("cuda", tensorrt=True, fp16=True).ort_providers() == [
        ("TensorrtExecutionProvider", {"trt_fp16_enable": True}), "CUDAExecutionProvider", "CPUExecutionProvider",
    ]  # fmt: skip
    assert Provider.of_entry({"provider": "CUDAExecutionProvider"}) == Provider("cuda")
    assert Provider.of_entry({"provider": "CPUExecutionProvider"}) == Provider.of_entry({}) == Provider("cpu")


def test_open_session_settings_and_providers(onnx_file):
    session = open_session(onnx_file, Provider("cpu"), threads=1, graph_level="basic", spinning=False)
    assert session.get_providers() == ["CPUExecutionProvider"]
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]


def test_open_session_one_line_errors(tmp_path, onnx_file):
    with pytest.raises(LadcError, match=r"missing\.onnx does not exist"):
        open_session(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf" * 20)
    with pytest.raises(LadcError, match=r"garbage\.onnx is not a valid ONNX model: ") as caught:
        open_session(garbage)
    assert "\n" not in str(caught.value)
    with pytest.raises(LadcError, match=r"expects inputs .* \(missing: \['token_type_ids'\]\)"):
        open_session(onnx_file, expected_inputs=["input_ids", "attention_mask"])


def test_open_artifact_dispatches_on_the_engine(tmp_path, onnx_file, batches):
    runner = open_artifact(onnx_file.parent, {"path": onnx_file.name, "engine": "onnxruntime", "precision": "fp32",
                                              "provider": "CPUExecutionProvider"}, threads=1)  # fmt: skip
    assert isinstance(runner, OrtRunner) and runner(batches[0]).shape == (1, 3)
    with pytest.raises(LadcError, match=r"unknown engine 'tvm'; expected one of onnxruntime, openvino, torch"):
        open_artifact(onnx_file.parent, {"path": onnx_file.name, "engine": "tvm"})
    with pytest.raises(LadcError, match="does not exist"):
        open_artifact(tmp_path, {"path": "nothing.onnx"})
