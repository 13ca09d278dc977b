"""Tests for `ladc distill` (ladc/commands/distill.py) on tiny random BERTs: outputs, methods, presets, errors, resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ladc.commands.distill import build_distill_config, distill
from ladc.errors import LadcError
from ladc.runs.config import DataConfig, DistillConfig, OptimConfig
from tests.helpers import run_killed_at_step, write_tiny_base_model, write_tiny_teacher


@pytest.fixture
def tiny_teacher(tmp_path, tiny_bert_config, tiny_tokenizer):
    return write_tiny_teacher(tmp_path, tiny_bert_config, tiny_tokenizer)


LR, GATE_LR = 1e-3, 3e-4


def _config(teacher, glue, output, method="lad", **optim) -> DistillConfig:
    values = {"lr": LR, "batch_size": 16, "max_steps": 12, "warmup_ratio": 0.0, "log_steps": 1, "eval_steps": 6}
    values.update(optim)
    return DistillConfig(
        teacher=str(teacher),
        output=str(output),
        method=method,
        student_layers=2,
        gate_lr=GATE_LR,  # distinct from the student's lr: a gate optimizer built with the wrong lr shows
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


def _layer_weight(model_or_dir, layer: int) -> torch.Tensor:
    """The FFN output weight of 0-based encoder layer `layer` of an HF BERT (model or dir)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_or_dir) if isinstance(model_or_dir, str | Path) else model_or_dir
    bert = getattr(model, "bert", model)
    return bert.encoder.layer[layer].output.dense.weight.detach()


def _assert_copied_from(student_dir: Path, source_dir: Path, source_layers: list[int], lr: float = LR):
    """After one AdamW step of `lr`, student layer j is source layer source_layers[j] (1-based) moved by <= ~lr."""
    for j, layer in enumerate(source_layers):
        student = _layer_weight(student_dir, j)
        assert (student - _layer_weight(source_dir, layer - 1)).abs().max() <= 1.1 * lr, (j, layer)
        others = [t for t in range(4) if t != layer - 1]  # and clearly not any other layer of the source
        assert all((student - _layer_weight(source_dir, t)).abs().max() > 10 * lr for t in others), (j, layer)


def _distill_cli(teacher, glue, output, *flags: str) -> dict:
    """`ladc distill` through the CLI for one optimizer step; returns the step-1 entry of its history."""
    from typer.testing import CliRunner

    from ladc.cli import app

    args = [
        "distill", "--task", "sst2", "--teacher", str(teacher), "--data-dir", str(glue), "--student-layers", "2",
        "--lr", str(LR), "--gate-lr", str(GATE_LR), "--batch-size", "16", "--max-steps", "1", "--warmup-ratio", "0",
        "--output", str(output), *flags,
    ]  # fmt: skip
    assert not Path(output).exists()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    history = json.loads((Path(output) / "metrics.json").read_text())["history"]
    return next(h for h in history if "loss" in h)


def test_distill_flags_reach_the_loss_through_the_cli(tiny_teacher):
    """Every loss flag changes the step-1 loss the way the LAD objective says; the others leave it alone.

    Same seed, same teacher, same first batch: the raw terms (hard, soft, hidden) of step 1 depend only on the
    student init, the temperature and the gate direction, and `loss` is their weighted sum.
    """
    teacher, glue, tmp = tiny_teacher
    base = _distill_cli(teacher, glue, tmp / "s-base")
    assert base["loss"] == pytest.approx(0.5 * base["hard"] + 0.5 * base["soft"] + 1000.0 * base["hidden"], rel=1e-5)
    assert base["hidden"] > 0 and base["soft"] > 0

    weighted = _distill_cli(teacher, glue, tmp / "s-w", "--hard-weight", "0.2", "--soft-weight", "3", "--mu", "10")
    for term in ("hard", "soft", "hidden"):
        assert weighted[term] == pytest.approx(base[term], rel=1e-6), term
    assert weighted["loss"] == pytest.approx(0.2 * base["hard"] + 3 * base["soft"] + 10 * base["hidden"], rel=1e-5)

    hot = _distill_cli(teacher, glue, tmp / "s-t", "--temperature", "2")
    assert (hot["hard"], hot["hidden"]) == pytest.approx((base["hard"], base["hidden"]), rel=1e-6)
    assert hot["soft"] != pytest.approx(base["soft"], rel=1e-3)  # tau enters the KL (and its tau^2 factor)

    reverse = _distill_cli(teacher, glue, tmp / "s-r", "--reverse-gates")
    assert (reverse["hard"], reverse["soft"]) == pytest.approx((base["hard"], base["soft"]), rel=1e-6)
    # other aggregated targets: a small change at init (LayerNorm'd targets of a random teacher), far above fp noise
    assert abs(reverse["hidden"] - base["hidden"]) > 1e-5 * base["hidden"]
    assert json.loads((tmp / "s-r" / "ladc.json").read_text())["config"]["reverse_gates"] is True

    on_cpu = _distill_cli(teacher, glue, tmp / "s-d", "--teacher-device", "cpu")
    terms = ("hard", "soft", "hidden", "loss")
    assert [on_cpu[t] for t in terms] == pytest.approx([base[t] for t in terms], rel=1e-6)  # the only device here
    assert json.loads((tmp / "s-d" / "ladc.json").read_text())["config"]["teacher_device"] == "cpu"

    patient = _distill_cli(teacher, glue, tmp / "s-p", "--method", "pkd", "--beta", "7")
    assert patient["patient"] > 0
    expected = 0.5 * patient["hard"] + 0.5 * patient["soft"] + 7 * patient["patient"]
    assert patient["loss"] == pytest.approx(expected, rel=1e-5)


def test_student_init_and_init_from_choose_the_copied_layers(tiny_teacher, tiny_bert_config, tiny_tokenizer):
    """By default the fine-tuned teacher's layers 2,4; even copies base layers 2,4; first copies 1,2; --init-from
    swaps the source checkpoint and, with no --student-init, means even (all via distill)."""
    teacher, glue, tmp = tiny_teacher
    base = json.loads((teacher / "ladc.json").read_text())["base_model"]
    _distill_cli(teacher, glue, tmp / "default")
    _assert_copied_from(tmp / "default", teacher, [2, 4])
    assert json.loads((tmp / "default" / "ladc.json").read_text())["student_init"] == "teacher"
    _distill_cli(teacher, glue, tmp / "even", "--student-init", "even")
    _assert_copied_from(tmp / "even", base, [2, 4])
    _distill_cli(teacher, glue, tmp / "first", "--student-init", "first")
    _assert_copied_from(tmp / "first", base, [1, 2])
    other = write_tiny_base_model(tmp / "other", tiny_bert_config(num_layers=4), tiny_tokenizer, seed=9)
    _distill_cli(teacher, glue, tmp / "from", "--init-from", str(other))
    _assert_copied_from(tmp / "from", other, [2, 4])
    manifest = json.loads((tmp / "from" / "ladc.json").read_text())
    assert (manifest["student_init"], manifest["init_from"]) == ("even", str(other))


def test_teacher_runs_without_gradients_inside_the_distill_loss(tiny_teacher):
    """distill's loss runs the teacher under inference_mode: even a teacher left trainable gets no gradient."""
    from ladc.commands.distill import _make_loss_fn
    from ladc.data.tasks import get_task
    from ladc.runs.config import LossWeights
    from ladc.training.lad import GateChain
    from ladc.training.models import build_student, load_classifier

    teacher_dir, glue, tmp = tiny_teacher
    cfg = _config(teacher_dir, glue, tmp / "unused")
    teacher = load_classifier(str(teacher_dir), get_task("sst2")).train()
    assert all(p.requires_grad for p in teacher.parameters())
    student = build_student(teacher, 2, init="teacher")
    modules = {"model": student, "gates": GateChain(4, 32)}
    loss_fn = _make_loss_fn(cfg, get_task("sst2"), teacher, (2, 4), LossWeights())
    ids = torch.tensor([[2, 41, 14, 44, 5, 3], [2, 42, 15, 45, 3, 0]])
    batch = {"input_ids": ids, "attention_mask": (ids > 0).long(), "labels": torch.tensor([1, 0])}
    terms = loss_fn(modules, batch)
    terms["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.classifier.weight.grad.abs().sum() > 0 and terms["hidden"] > 0


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
    """A real `ladc distill` dies right after its step-6 checkpoint; --resume reaches the uninterrupted result.

    The checkpoint also shows the optimizer's groups: the student's at --lr with BERT's decay/no-decay groups, the
    gates' at --gate-lr without weight decay.
    """
    from safetensors.torch import load_file

    teacher, glue, tmp = tiny_teacher
    run_dir = tmp / "cut"
    cli = [
        "distill", "--task", "sst2", "--teacher", str(teacher), "--data-dir", str(glue), "--student-layers", "2",
        "--lr", str(LR), "--gate-lr", str(GATE_LR), "--batch-size", "8", "--max-steps", "12", "--save-steps", "3",
        "--eval-steps", "12", "--warmup-ratio", "0", "--output", str(run_dir),
    ]  # fmt: skip
    run_killed_at_step([sys.executable, "-m", "ladc", *cli], step=6)
    checkpoint = run_dir / "checkpoints" / "step-6"
    groups = torch.load(checkpoint / "optimizer.bin", weights_only=False)["param_groups"]
    student_groups, gate_groups = groups[:2], groups[2:]  # one optimizer: the student's groups, then the gates'
    assert [g["initial_lr"] for g in student_groups] == [LR, LR]
    assert [g["initial_lr"] for g in gate_groups] == [GATE_LR, GATE_LR]
    assert [g["weight_decay"] for g in student_groups] == [0.01, 0.0]
    assert [g["weight_decay"] for g in gate_groups] == [0.0, 0.0]
    student = load_file(run_dir / "checkpoints" / "step-6" / "model.safetensors")
    matrices = [n for n, t in student.items() if t.ndim == 2 and "LayerNorm" not in n]
    assert len(student_groups[0]["params"]) == len(matrices)  # decay: weight matrices only
    assert len(student_groups[1]["params"]) == len(student) - len(matrices)  # no decay: biases and LayerNorms

    # the same run uninterrupted, and the resumed one, in this process (resume reads the killed run's config.yaml)
    options = {"batch_size": 8, "max_steps": 12, "save_steps": 3, "eval_steps": 12, "warmup_ratio": 0.0}
    distill(_config(teacher, glue, tmp / "full", log_steps=10, **options))
    distill(DistillConfig(**{**_config(teacher, glue, run_dir).__dict__, "resume": True}))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 6 and metrics["final_step"] == 12
    for name in ("model.safetensors", "gates.safetensors"):
        expected, got = load_file(tmp / "full" / name), load_file(run_dir / name)
        for key, tensor in expected.items():
            torch.testing.assert_close(got[key], tensor, rtol=1e-4, atol=1e-5, msg=f"{name}:{key}")
