"""Tests for the shared training loop (ladc/train.py) through `tune_teacher` on tiny random BERTs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ladc.config import DataConfig, OptimConfig, TuneTeacherConfig
from ladc.errors import LadcError
from ladc.teacher import tune_teacher
from tests.helpers import run_and_kill_after_checkpoint, write_tiny_base_model, write_tiny_sst2


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
    model = AutoModelForSequenceClassification.from_pretrained(tmp / "teacher")
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.num_hidden_layers == 4
    saved = json.loads((tmp / "teacher" / "metrics.json").read_text())
    assert saved["dev"] == metrics["dev"]
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


def _run_cli(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "ladc", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )


def test_resume_continues_from_saved_step_and_matches_uninterrupted(tiny_setup):
    """Kill a real run after its first checkpoint; --resume continues from that step to the same final weights."""
    from safetensors.torch import load_file

    base, glue, tmp = tiny_setup
    common = [
        "tune-teacher", "--task", "sst2", "--model", str(base), "--data-dir", str(glue), "--lr", "1e-3",
        "--batch-size", "8", "--max-steps", "36", "--save-steps", "4", "--eval-steps", "12", "--seed", "3",
    ]  # fmt: skip
    full = subprocess.run([sys.executable, "-m", "ladc", *common, "--output", str(tmp / "full")], capture_output=True)
    assert full.returncode == 0, full.stdout.decode()[-2000:] + full.stderr.decode()[-2000:]

    run_dir = tmp / "interrupted"
    run_and_kill_after_checkpoint(
        [sys.executable, "-m", "ladc", *common, "--output", str(run_dir)], run_dir / "checkpoints"
    )
    saved_step = json.loads(next((run_dir / "checkpoints").glob("step-*/trainer_state.json")).read_text())["step"]
    assert 0 < saved_step < 36
    resumed = subprocess.run(
        [sys.executable, "-m", "ladc", *common, "--output", str(run_dir), "--resume"], capture_output=True
    )
    assert resumed.returncode == 0, resumed.stdout.decode()[-2000:] + resumed.stderr.decode()[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == saved_step
    assert metrics["final_step"] == 36
    full_weights = load_file(tmp / "full" / "model.safetensors")
    resumed_weights = load_file(run_dir / "model.safetensors")
    for name, tensor in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.integration
def test_minilm_teacher_on_real_sst2_rises_clearly_above_chance(tmp_path, minilm_dir, glue_dir):
    """A few dozen steps of the real offline teacher on real SST-2 (issue 2's integration check)."""
    cfg = TuneTeacherConfig(
        model="minilm",
        output=str(tmp_path / "teacher"),
        data=DataConfig(task="sst2", data_dir=str(glue_dir), train_limit=960, cache_dir=str(tmp_path / "cache")),
        optim=OptimConfig(lr=1e-4, batch_size=16, max_steps=60, warmup_ratio=0.1, mixed_precision="bf16"),
    )
    metrics = tune_teacher(cfg)
    assert metrics["dev"]["accuracy"] >= 0.70, metrics["dev"]  # chance is ~0.51 on SST-2 dev (444/872 positive)
