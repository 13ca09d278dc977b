"""Tests for `ladc distill` (ladc/distill.py) on tiny random BERTs: outputs, methods, presets, errors, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ladc.config import DataConfig, DistillConfig, OptimConfig
from ladc.distill import build_distill_config, distill
from ladc.errors import LadcError
from tests.helpers import run_and_kill_after_checkpoint, write_tiny_base_model, write_tiny_sst2


@pytest.fixture
def tiny_teacher(tmp_path, tiny_bert_config, tiny_tokenizer):
    """A 4-layer 'fine-tuned' teacher dir (random weights) whose ladc.json names its 4-layer base checkpoint."""
    from transformers import BertForSequenceClassification

    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=4), tiny_tokenizer, seed=1)
    torch.manual_seed(2)
    config = tiny_bert_config(num_layers=4, id2label={0: "negative", 1: "positive"})
    config.architectures = ["BertForSequenceClassification"]
    teacher = BertForSequenceClassification(config)
    teacher.save_pretrained(tmp_path / "teacher")
    tiny_tokenizer.save_pretrained(tmp_path / "teacher")
    (tmp_path / "teacher" / "ladc.json").write_text(json.dumps({"task": "sst2", "base_model": str(base)}))
    glue = write_tiny_sst2(tmp_path / "glue")
    return tmp_path / "teacher", glue, tmp_path


def _config(teacher, glue, output, method="lad", **optim) -> DistillConfig:
    values = {"lr": 1e-3, "batch_size": 16, "max_steps": 12, "warmup_ratio": 0.0, "log_steps": 1, "eval_steps": 6}
    values.update(optim)
    return DistillConfig(
        teacher=str(teacher),
        output=str(output),
        method=method,
        student_layers=2,
        gate_lr=1e-3,
        data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(Path(output).parent / "cache")),
        optim=OptimConfig(**values),
    )


def test_lad_writes_plain_hf_student_with_gates_and_manifest(tiny_teacher):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    teacher, glue, tmp = tiny_teacher
    metrics = distill(_config(teacher, glue, tmp / "student"))
    student = AutoModelForSequenceClassification.from_pretrained(tmp / "student")  # no ladc code needed
    assert student.config.num_hidden_layers == 2
    gates = load_file(tmp / "student" / "gates.safetensors")
    assert len({k.split(".")[1] for k in gates}) == 4  # one highway gate per teacher layer
    manifest = json.loads((tmp / "student" / "ladc.json").read_text())
    assert manifest["method"] == "lad" and manifest["layer_map"] == [2, 4]
    assert manifest["teacher_layers"] == 4 and manifest["student_layers"] == 2
    assert manifest["config"]["mu"] == 1000.0 and "torch" in manifest["versions"]
    terms = [h for h in metrics["history"] if "loss" in h]
    assert {"hard", "soft", "hidden", "loss", "lr"} <= set(terms[0])
    # distillation lowers the loss: the hidden term dominates (mu = 1000) and falls as student and gates fit
    assert np.mean([h["loss"] for h in terms[-3:]]) < np.mean([h["loss"] for h in terms[:3]])


def test_even_init_copies_mapped_layers_of_base_checkpoint(tiny_teacher):
    """Before training, an `even` student's layer j equals the base checkpoint's layer layer_map[j]."""
    from transformers import AutoModel

    from ladc.models import build_student, load_classifier

    teacher_dir, _, _ = tiny_teacher
    base = AutoModel.from_pretrained(json.loads((teacher_dir / "ladc.json").read_text())["base_model"])
    student = build_student(load_classifier(str(teacher_dir)), 2, init="even", init_from=base)
    for j, t in enumerate([2, 4]):
        torch.testing.assert_close(
            student.bert.encoder.layer[j].output.dense.weight, base.encoder.layer[t - 1].output.dense.weight
        )


@pytest.mark.parametrize(("method", "term"), [("pkd", "patient"), ("kd", "soft"), ("none", "hard")])
def test_baselines_run_from_the_same_command(tiny_teacher, method, term):
    teacher, glue, tmp = tiny_teacher
    metrics = distill(_config(teacher, glue, tmp / f"student-{method}", method=method, max_steps=4))
    logged = [h for h in metrics["history"] if "loss" in h]
    assert term in logged[0]
    assert ("hidden" in logged[0]) is False
    assert not (tmp / f"student-{method}" / "gates.safetensors").exists()
    assert json.loads((tmp / f"student-{method}" / "ladc.json").read_text())["method"] == method


def test_paper_preset_fills_only_what_the_user_did_not_set(tmp_path):
    cfg = build_distill_config(None, {"preset": "paper", "data.task": "sst2"})
    assert (cfg.optim.lr, cfg.gate_lr, cfg.optim.epochs, cfg.optim.warmup_ratio) == (1e-4, 1e-6, 20, 0.3)
    assert (cfg.temperature, cfg.mu, cfg.optim.batch_size, cfg.optim.seed) == (20, 1000, 32, 42)
    rte = build_distill_config(None, {"preset": "paper", "data.task": "rte", "optim.lr": 5e-5})
    assert rte.optim.lr == 5e-5 and rte.gate_lr == 3e-5 and rte.optim.epochs == 10
    cola = build_distill_config(None, {"preset": "paper", "data.task": "cola"})  # falls back to the QNLI row
    assert cola.optim.epochs == 4 and cola.temperature == 10
    yaml_file = tmp_path / "d.yaml"
    yaml_file.write_text("preset: paper\ndata: {task: mrpc}\nmu: 250\n")
    from_yaml = build_distill_config(yaml_file, {})
    assert from_yaml.mu == 250 and from_yaml.optim.lr == 7e-4


def test_unknown_yaml_key_gets_did_you_mean(tmp_path):
    yaml_file = tmp_path / "d.yaml"
    yaml_file.write_text("temprature: 5\n")
    with pytest.raises(LadcError, match="did you mean 'temperature'"):
        build_distill_config(yaml_file, {})


def test_bad_input_is_a_one_line_user_error(tiny_teacher, tiny_bert_config, tiny_tokenizer):
    from transformers import BertForSequenceClassification, BertTokenizerFast

    teacher, glue, tmp = tiny_teacher
    with pytest.raises(LadcError, match="does not exist"):
        distill(_config(tmp / "nope", glue, tmp / "s1"))
    with pytest.raises(LadcError, match="S < T|student|layers"):
        distill(DistillConfig(**{**_config(teacher, glue, tmp / "s2").__dict__, "student_layers": 4}))
    three = tiny_bert_config(num_layers=4, num_labels=3)
    three.architectures = ["BertForSequenceClassification"]
    BertForSequenceClassification(three).save_pretrained(tmp / "three")
    with pytest.raises(LadcError, match="3 labels but task sst2 has 2"):
        distill(_config(tmp / "three", glue, tmp / "s3"))
    other_vocab = tmp / "other-vocab.txt"
    other_vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra"]) + "\n")
    other = tmp / "other-base"
    write_tiny_base_model(other, tiny_bert_config(num_layers=4), BertTokenizerFast(vocab_file=str(other_vocab)))
    with pytest.raises(LadcError, match="tokenizer mismatch"):
        distill(DistillConfig(**{**_config(teacher, glue, tmp / "s4").__dict__, "init_from": str(other)}))
    assert not (tmp / "s4").exists()  # validation happens before the run dir is created


def test_distill_resume_restores_student_and_gates(tiny_teacher):
    """Kill a real `ladc distill` after its first checkpoint; --resume reaches the uninterrupted result."""
    from safetensors.torch import load_file

    teacher, glue, tmp = tiny_teacher
    common = [
        "distill", "--task", "sst2", "--teacher", str(teacher), "--data-dir", str(glue), "--student-layers", "2",
        "--lr", "1e-3", "--gate-lr", "1e-3", "--batch-size", "8", "--max-steps", "24", "--save-steps", "3",
        "--eval-steps", "24",
    ]  # fmt: skip
    full = subprocess.run([sys.executable, "-m", "ladc", *common, "--output", str(tmp / "full")], capture_output=True)
    assert full.returncode == 0, full.stderr.decode()[-2000:]
    run_dir = tmp / "cut"
    run_and_kill_after_checkpoint(
        [sys.executable, "-m", "ladc", *common, "--output", str(run_dir)], run_dir / "checkpoints"
    )
    resumed = subprocess.run(
        [sys.executable, "-m", "ladc", *common, "--output", str(run_dir), "--resume"], capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["resumed_from_step"] < 24 and metrics["final_step"] == 24
    for name in ("model.safetensors", "gates.safetensors"):
        expected, got = load_file(tmp / "full" / name), load_file(run_dir / name)
        for key, tensor in expected.items():
            torch.testing.assert_close(got[key], tensor, rtol=1e-4, atol=1e-5, msg=f"{name}:{key}")
