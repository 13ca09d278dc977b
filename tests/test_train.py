"""Tests for the shared training loop (ladc/training/train.py) through `tune_teacher` on tiny random BERTs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ladc.commands.teacher import tune_teacher
from ladc.errors import LadcError
from ladc.runs.config import DataConfig, OptimConfig, TuneTeacherConfig
from ladc.training.checkpoints import kept_index
from ladc.training.train import TrainResult
from tests.helpers import (
    _examples,
    _fit,
    _tiny_classifier,
    run_killed_at_step,
    sst2_dev_accuracy,
    write_tiny_base_model,
    write_tiny_sst2,
)


@pytest.fixture
def tiny_setup(tmp_path, tiny_bert_config, tiny_tokenizer):
    base = write_tiny_base_model(tmp_path / "base", tiny_bert_config(num_layers=4), tiny_tokenizer)
    glue = write_tiny_sst2(tmp_path / "glue")
    return base, glue, tmp_path


def _config(base, glue, output, **optim) -> TuneTeacherConfig:
    values = {"lr": 1e-3, "batch_size": 16, "epochs": 3, "warmup_ratio": 0.0, "log_steps": 1, "seed": 7}
    values.update(optim)
    return TuneTeacherConfig(
        model=str(base),
        output=str(output),
        data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(Path(output).parent / "cache")),
        optim=OptimConfig(**values),
    )


def test_tune_teacher_learns_and_writes_hf_dir(tiny_setup):
    from transformers import AutoModelForSequenceClassification

    base, glue, tmp = tiny_setup
    metrics = tune_teacher(_config(base, glue, tmp / "teacher", epochs=10, lr=3e-3))
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses  # training lowers the loss
    assert metrics["dev"]["accuracy"] >= 0.75  # the adjective decides the label: learnable in a few steps
    model = AutoModelForSequenceClassification.from_pretrained(tmp / "teacher").eval()
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.num_hidden_layers == 4
    # the kept model is the best holdout evaluation's (the default selection); re-evaluated independently on dev it
    # gives the reported dev metric
    evals = [h for h in metrics["history"] if "holdout" in h]
    best = evals[kept_index([h["holdout"]["accuracy"] for h in evals], metrics["selection"]["examples"])]
    assert (metrics["best_step"], metrics["selection"]["best"]) == (best["step"], best["holdout"])
    accuracy = sst2_dev_accuracy(tmp / "teacher", glue)
    assert metrics["dev"]["accuracy"] == pytest.approx(accuracy)
    saved = json.loads((tmp / "teacher" / "metrics.json").read_text())
    assert saved["dev"]["accuracy"] == pytest.approx(accuracy)
    assert (tmp / "teacher" / "config.yaml").is_file() and (tmp / "teacher" / "tokenizer.json").is_file()
    assert not (tmp / "teacher" / "checkpoints").exists() and not (tmp / "teacher" / "best").exists()


def test_existing_output_needs_overwrite(tiny_setup):
    base, glue, tmp = tiny_setup
    (tmp / "teacher").mkdir()
    (tmp / "teacher" / "keep.txt").write_text("x")
    with pytest.raises(LadcError, match="--overwrite"):
        tune_teacher(_config(base, glue, tmp / "teacher", max_steps=1))
    assert (tmp / "teacher" / "keep.txt").is_file()


def test_not_a_bert_encoder_is_a_user_error(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt")
    cfg = TuneTeacherConfig(model=str(tmp_path / "gpt"), output=str(tmp_path / "out"))
    with pytest.raises(LadcError, match="BERT-style encoder"):
        tune_teacher(cfg)


def test_resume_continues_from_saved_step_and_matches_uninterrupted(tiny_setup):
    """A real run dies (SIGKILL) right after its step-8 checkpoint; --resume reaches the uninterrupted weights.

    grad_accum 2 (batch 4): the resumed run must also skip the right number of micro-batches.
    """
    from safetensors.torch import load_file

    base, glue, tmp = tiny_setup
    optim = {
        "lr": 1e-3,
        "batch_size": 4,
        "grad_accum": 2,
        "max_steps": 20,
        "save_steps": 4,
        "eval_steps": 10,
        "seed": 3,
    }
    cli = [
        "tune-teacher", "--task", "sst2", "--model", str(base), "--data-dir", str(glue), "--lr", "1e-3",
        "--batch-size", "4", "--grad-accum", "2", "--max-steps", "20", "--save-steps", "4", "--eval-steps", "10",
        "--seed", "3", "--output", str(tmp / "interrupted"),
    ]  # fmt: skip
    run_dir = tmp / "interrupted"
    run_killed_at_step([sys.executable, "-m", "ladc", *cli], step=8)  # a real process, really killed
    state = json.loads((run_dir / "checkpoints" / "step-8" / "trainer_state.json").read_text())
    assert state["step"] == 8 and not (run_dir / "metrics.json").exists()

    def config(output: Path, resume: bool) -> TuneTeacherConfig:  # the same run as `cli`, in this process
        data = DataConfig(task="sst2", data_dir=str(glue))
        return TuneTeacherConfig(
            model=str(base), output=str(output), data=data, optim=OptimConfig(**optim), resume=resume
        )

    tune_teacher(config(tmp / "full", resume=False))
    tune_teacher(config(run_dir, resume=True))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 8
    assert metrics["final_step"] == 20
    full_weights = load_file(tmp / "full" / "model.safetensors")
    resumed_weights = load_file(run_dir / "model.safetensors")
    for name, tensor in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    full_history = json.loads((tmp / "full" / "metrics.json").read_text())["history"]
    assert [h for h in metrics["history"] if "dev" in h] == [h for h in full_history if "dev" in h]


# ----------------------------------------------------------------------------- fit() against a plain PyTorch loop


def _linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """The lr factor after `step` optimizer steps: linear warm-up from 0, then linear decay to 0 at `total`."""
    return step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))


def _reference_loop(model, examples, micro_batch, accumulate, steps, lr, warmup, weight_decay, max_grad_norm):
    """What fit promises, in plain PyTorch: AdamW with BERT's no-decay group, clipping, warm-up + decay, accumulation."""
    named = list(model.named_parameters())
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True
    )
    batches = [examples[i : i + micro_batch] for i in range(0, len(examples), micro_batch)]
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * _linear_warmup_decay(step, warmup, steps)
        for k in range(accumulate):
            chunk = batches[(step * accumulate + k) % len(batches)]
            batch = {key: torch.stack([e[key] for e in chunk]) for key in chunk[0]}
            (model(**batch).loss / accumulate).backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return model


def _max_difference(a, b) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_fit_equals_a_plain_pytorch_loop(tmp_path, tiny_bert_config):
    """Warm-up + linear decay, weight-decay groups, clipping and accumulation, checked against a plain loop.

    32 examples in micro-batches of 4 with grad_accum 2 -> 4 steps per epoch; 6 steps cross an epoch boundary.
    """
    examples = _examples()
    settings = {"lr": 1e-2, "warmup": 2, "weight_decay": 0.5, "max_grad_norm": 0.05}
    teacher = _tiny_classifier(tiny_bert_config, seed=2).train()  # a frozen module: used, never trained
    result = _fit(
        model := _tiny_classifier(tiny_bert_config), tmp_path / "run", examples, micro_batch=4, grad_accum=2,
        max_steps=6, warmup_steps=2, lr=1e-2, weight_decay=0.5, max_grad_norm=0.05, eval_steps=6,
        frozen={"teacher": teacher},
    )  # fmt: skip
    assert result.final_step == 6
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    reference = _reference_loop(_tiny_classifier(tiny_bert_config), examples, 4, 2, 6, **settings)
    for (name, got), expected in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
    # the lr logged after each step follows warm-up then linear decay: 0.5, 1, 0.75, 0.5, 0.25, 0 times the base lr
    logged = [h["lr"] for h in result.history if "lr" in h]
    assert logged == pytest.approx([1e-2 * _linear_warmup_decay(s, 2, 6) for s in range(1, 7)])
    assert logged == pytest.approx([5e-3, 1e-2, 7.5e-3, 5e-3, 2.5e-3, 0.0])
    # each knob matters at this tolerance: the comparison above would see it dropped
    for knob in ({"weight_decay": 0.0}, {"max_grad_norm": 0.0}, {"warmup": 0}):
        other = _reference_loop(_tiny_classifier(tiny_bert_config), examples, 4, 2, 6, **{**settings, **knob})
        assert _max_difference(other, reference) > 1e-4, knob


def test_grad_accum_k_with_batch_b_equals_batch_k_times_b(tmp_path, tiny_bert_config):
    examples = _examples()
    common = {"max_steps": 5, "warmup_steps": 1, "weight_decay": 0.01, "max_grad_norm": 1.0, "eval_steps": 5}
    accumulated = _tiny_classifier(tiny_bert_config)
    _fit(accumulated, tmp_path / "a", examples, micro_batch=4, grad_accum=2, **common)
    whole = _tiny_classifier(tiny_bert_config)
    _fit(whole, tmp_path / "b", examples, micro_batch=8, grad_accum=1, **common)
    for (name, got), expected in zip(accumulated.state_dict().items(), whole.state_dict().values()):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=name)
    small = _tiny_classifier(tiny_bert_config)
    _fit(small, tmp_path / "c", examples, micro_batch=4, grad_accum=1, **common)
    assert _max_difference(small, whole) > 1e-3  # batch 4 alone differs: the equality above is not trivial


def test_fit_keeps_the_best_evaluation_not_the_last(tmp_path, tiny_bert_config):
    """Scripted dev scores 0.6, 0.9, 0.9, 0.7: the kept model is the one evaluated at step 6 (the later of the ties;
    the number of dev rows is not given, so there is no margin beyond a tie)."""
    from transformers import BertForSequenceClassification

    scores = iter([0.6, 0.9, 0.9, 0.7])
    snapshots: list[dict] = []

    def evaluate(model, accelerator):
        snapshots.append({k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()})
        return {"accuracy": next(scores)}

    result = _fit(
        _tiny_classifier(tiny_bert_config), tmp_path / "run", _examples(), micro_batch=4, evaluate=evaluate,
        max_steps=8, eval_steps=2,
    )  # fmt: skip
    assert (result.best_step, result.best_metrics) == (6, {"accuracy": 0.9})
    assert [h["dev"]["accuracy"] for h in result.history if "dev" in h] == [0.6, 0.9, 0.9, 0.7]
    kept = BertForSequenceClassification.from_pretrained(tmp_path / "run" / "best").state_dict()
    for name, tensor in kept.items():
        torch.testing.assert_close(tensor, snapshots[2][name], msg=name)
    assert any(not torch.equal(kept[name], snapshots[1][name]) for name in kept)  # step 4's model is another one
    assert any(not torch.equal(kept[name], snapshots[3][name]) for name in kept)


def test_a_plan_whose_optimizers_miss_a_trainable_module_is_refused(tmp_path, tiny_bert_config):
    from ladc.data.tasks import get_task
    from ladc.training.lad import GateChain
    from ladc.training.optimizer import OptimizerSpec
    from ladc.training.train import TrainPlan, fit

    model = _tiny_classifier(tiny_bert_config)
    plan = TrainPlan(trainable={"model": model, "gates": GateChain(3, 32)},
                     optimizers=[OptimizerSpec("model", ("model",), 1e-3)], loss_fn=None, save_fn=None)  # fmt: skip
    with pytest.raises(ValueError) as caught:
        fit(plan, make_loader=lambda epoch: [], evaluate=None, optim=OptimConfig(),
            run_dir=tmp_path, task=get_task("sst2"))  # fmt: skip
    assert str(caught.value) == "optimizer specs cover ['model'], trainable modules are ['model', 'gates']"


def test_samples_per_s_counts_training_time_only_and_each_micro_batch_has_its_own_seed(tmp_path, tiny_bert_config):
    """On a fake clock each micro-batch takes 1/16 s and each evaluation 100 s: samples/s is then exactly 16 times the
    micro-batch size, so evaluation and checkpoint time are left out. Each micro-batch runs under its own torch seed (its dropout
    masks), distinct across (seed, epoch, index), and the loader is asked for each epoch in turn."""
    now = [1000.0]  # not 0: the time training started is subtracted, not added
    seeds: list[int] = []

    def forward(batch):
        now[0] += 0.0625  # under a second in all: samples/s must not floor the time at 1 s
        seeds.append(torch.initial_seed())

    def evaluate(model, accelerator):
        now[0] += 100.0
        return {"accuracy": 0.5}

    epochs: list[int] = []
    common = {"micro_batch": 4, "max_steps": 12, "eval_steps": 4, "save_steps": 4, "clock": lambda: now[0],
              "on_batch": forward, "evaluate": evaluate}  # fmt: skip
    result = _fit(_tiny_classifier(tiny_bert_config), tmp_path / "a", _examples(), epochs_seen=epochs, seed=0, **common)
    assert epochs == [0, 0, 1]  # the step count, then epochs 0 and 1 (8 steps per epoch)
    logged = [h["samples_per_s"] for h in result.history if "samples_per_s" in h]
    assert logged == [64.0] * 12 and result.train_samples_per_s == 64.0  # 4 samples per 1/16 s
    _fit(_tiny_classifier(tiny_bert_config), tmp_path / "b", _examples(), seed=1, **common)
    assert len(seeds) == 24 and len(set(seeds)) == 24


def test_the_progress_bar_counts_steps_and_shows_loss_lr_speed_and_each_evaluation(tmp_path, tiny_bert_config, capsys):
    def evaluate(model, accelerator):
        return {"accuracy": 0.123456}

    _fit(_tiny_classifier(tiny_bert_config), tmp_path / "a", _examples(), micro_batch=4, evaluate=evaluate,
         max_steps=8, eval_steps=4, lr=1e-2)  # fmt: skip
    captured = capsys.readouterr()
    final = captured.err.replace("\r", "\n").splitlines()[-1]  # the bar, on stderr
    assert " 8/8 [" in final and ("step/s" in final or "s/step" in final)
    assert "loss=" in final and "lr=0.00e+00" in final and "samples/s=" in final
    assert 'step 4: dev {"accuracy": 0.1235}\nstep 8: dev {"accuracy": 0.1235}\n' in captured.out  # tqdm.write


def test_model_inputs_keep_what_a_bert_forward_takes():
    from ladc.training.train import model_inputs

    batch = {"input_ids": 1, "attention_mask": 2, "token_type_ids": 3, "labels": 4, "idx": 5}
    assert model_inputs(batch) == {"input_ids": 1, "attention_mask": 2, "token_type_ids": 3}


def test_result_metrics_are_the_metrics_json_fields():
    from ladc.data.tasks import get_task
    from ladc.training.train import result_metrics

    history = [{"step": 2, "loss": 0.5, "lr": 1e-4, "samples_per_s": 10.0}, {"step": 2, "holdout": {"accuracy": 0.8}}]
    result = TrainResult(best_step=2, best_metrics={"accuracy": 0.8}, final_step=4, history=history,
                         train_samples_per_s=12.5, resumed_from_step=2, dev={"accuracy": 0.75},
                         dev_last={"accuracy": 0.7}, selected_on="train-holdout", mixed_precision="bf16")  # fmt: skip
    assert result_metrics(result, get_task("rte"), train_examples=90, holdout_examples=10) == {
        "task": "rte", "dev": {"accuracy": 0.75}, "dev_last": {"accuracy": 0.7},
        "selection": {"on": "train-holdout", "examples": 10, "best": {"accuracy": 0.8}}, "best_step": 2,
        "final_step": 4, "train_examples": 90, "train_samples_per_s": 12.5, "resumed_from_step": 2,
        "mixed_precision": "bf16", "history": history,
    }  # fmt: skip
    assert result_metrics(result, get_task("rte"), train_examples=90)["selection"]["examples"] == 0


@pytest.mark.integration
def test_minilm_teacher_on_real_sst2_rises_clearly_above_chance(tmp_path, minilm_dir, glue_dir):
    """A few dozen steps of the real offline teacher on real SST-2 (issue 2's integration check)."""
    cfg = TuneTeacherConfig(
        model="minilm",
        output=str(tmp_path / "teacher"),
        data=DataConfig(task="sst2", data_dir=str(glue_dir), train_limit=960, cache_dir=str(tmp_path / "cache")),
        # holdout_size: the default (2,000 rows of the whole split) would cost more than these 60 steps on 2 cores
        optim=OptimConfig(
            lr=1e-4, batch_size=16, max_steps=60, warmup_ratio=0.1, mixed_precision="auto", holdout_size=96
        ),
    )
    metrics = tune_teacher(cfg)
    assert metrics["dev"]["accuracy"] >= 0.70, metrics["dev"]  # chance is ~0.51 on SST-2 dev (444/872 positive)
