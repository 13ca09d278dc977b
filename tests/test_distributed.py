"""Multi-process training (ladc/training/train.py under accelerate + DDP) on CPU: 2 gloo processes vs one process, same data.

The 2-process runs are real `torchrun --nproc_per_node 2 -m ladc distill` launches (1 thread each) with no
accelerate config and no ACCELERATE_USE_CPU: ladc itself must form the process group. Each rank gets half of the
global batch, so the single-process reference runs with twice the per-process batch size.

Also the fp16 step order (unscale once, clip, step, one scaler update) on torch's CPU GradScaler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ladc.runs.config import DataConfig, DistillConfig, OptimConfig
from tests.conftest import TINY_VOCAB
from tests.helpers import run_killed_at_step, write_tiny_base_model, write_tiny_sst2

PER_PROCESS_BATCH, PROCESSES = 8, 2
# 96 train rows less the 10-row selection holdout (ladc's default) = 86, global batch 16: 6 optimizer steps per epoch,
# 12 in all, evaluated once at the end (best = last)
OPTIM = {"lr": 1e-3, "epochs": 2, "warmup_ratio": 0.25, "log_steps": 1, "eval_steps": 12, "save_steps": 100}
EXPECTED_STEPS = 12
# The batches differ in composition (rank r gets the r-th half of each global batch, one process gets one batch of
# 16 from another order), so the runs are close, not equal; each logged loss is also rank 0's half-batch only, so
# the comparison uses the mean over the last 4 steps. Measured (torch 2.13 CPU, 2026-11-27): lad 1197.3 vs 1195.5
# (0.15%), pkd 3.691 vs 3.668 (0.6%); single steps differ by up to 2.3%. 3% holds with margin; a run that trained
# P times as long, or with the lr at 0 from half-way, is caught by the step and lr checks before this one.
LOSS_RTOL = 0.03
LAST_STEPS = 4


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory):
    """A 4-layer random 'fine-tuned' teacher (with a base checkpoint for the student's layer copy) and tiny SST-2."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    root = tmp_path_factory.mktemp("distributed")
    (root / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True, model_max_length=128)
    sizes = {"vocab_size": len(TINY_VOCAB), "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2}
    sizes.update(intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    base = write_tiny_base_model(root / "base", BertConfig(**sizes), tokenizer, seed=1)
    torch.manual_seed(2)
    config = BertConfig(
        **sizes, id2label={0: "negative", 1: "positive"}, architectures=["BertForSequenceClassification"]
    )
    BertForSequenceClassification(config).save_pretrained(root / "teacher")
    tokenizer.save_pretrained(root / "teacher")
    (root / "teacher" / "ladc.json").write_text(json.dumps({"task": "sst2", "base_model": str(base)}))
    return root / "teacher", write_tiny_sst2(root / "glue"), root


def _config(teacher: Path, glue: Path, output: Path, method: str, batch_size: int) -> DistillConfig:
    return DistillConfig(
        teacher=str(teacher), output=str(output), method=method, student_layers=2, gate_lr=3e-4,
        student_init="even",  # LOSS_RTOL was sized on students started from the pretrained layers
        data=DataConfig(task="sst2", data_dir=str(glue), cache_dir=str(output.parent / f"cache-{output.name}")),
        optim=OptimConfig(batch_size=batch_size, **OPTIM),
    )  # fmt: skip


def _torchrun_distill(cfg: DistillConfig, root: Path) -> subprocess.CompletedProcess:
    from ladc.runs.config import to_dict

    raw = to_dict(cfg)
    path = root / f"{Path(cfg.output).name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = _torch_env()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES),
        "-m", "ladc", "distill", "--config", str(path),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)


def _torch_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def test_resume_under_another_world_size_is_refused_in_one_line(teacher_and_data):
    """A 1-process run killed after its step-2 checkpoint, continued by a 2-process torchrun with --resume: refused
    before any step, naming both world sizes and global batches (each step would stand for twice the samples)."""
    _, glue, root = teacher_and_data
    output = root / "resume-world-size"
    args = ["tune-teacher", "--task", "sst2", "--model", str(root / "base"), "--data-dir", str(glue), "--batch-size",
            "8", "--max-steps", "6", "--save-steps", "2", "--eval-steps", "6", "--output", str(output)]  # fmt: skip
    run_killed_at_step([sys.executable, "-m", "ladc", *args], step=2)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES),
               "-m", "ladc", *args, "--resume"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=_torch_env(), timeout=240)
    assert proc.returncode != 0, proc.stdout[-2000:]
    refusals = [line for line in proc.stderr.splitlines() if "cannot resume from" in line]
    assert refusals, proc.stderr[-4000:]
    expected = "trained with world size 1 (global batch 8), this launch has world size 2 (global batch 16)"
    assert all(expected in line and str(output / "checkpoints" / "step-2") in line for line in refusals), refusals
    assert not (output / "metrics.json").exists() and (output / "checkpoints" / "step-2").is_dir()


def _steps(metrics: dict) -> list[dict]:
    return [h for h in metrics["history"] if "loss" in h]


@pytest.mark.parametrize("method", ["lad", "pkd"])
def test_two_processes_train_like_one_on_the_same_global_batch(teacher_and_data, method):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from ladc.commands.distill import distill

    teacher, glue, root = teacher_and_data
    proc = _torchrun_distill(_config(teacher, glue, root / f"ddp-{method}", method, PER_PROCESS_BATCH), root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "Traceback" not in proc.stderr
    # one report, from the main process: the last selection pass and the closing line once each, not once per rank
    assert proc.stdout.count(f"step {EXPECTED_STEPS}: holdout") == 1, proc.stdout[-3000:]
    assert proc.stdout.count(f"student written to {root / f'ddp-{method}'}: dev") == 1, proc.stdout[-3000:]
    ddp_dir = root / f"ddp-{method}"
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    single = distill(_config(teacher, glue, root / f"one-{method}", method, PER_PROCESS_BATCH * PROCESSES))

    # as many optimizer steps as one process with the same global batch, each logged once, on the same schedule
    assert ddp["final_step"] == single["final_step"] == EXPECTED_STEPS
    ddp_steps, single_steps = _steps(ddp), _steps(single)
    assert [h["step"] for h in ddp_steps] == list(range(1, EXPECTED_STEPS + 1))
    assert [h["lr"] for h in ddp_steps] == pytest.approx([h["lr"] for h in single_steps])
    assert ddp_steps[-1]["lr"] == 0.0 and ddp_steps[-2]["lr"] > 0  # the linear decay ends exactly on the last step
    assert ddp["train_examples"] == 86 and ddp["resumed_from_step"] is None
    assert ddp["selection"]["examples"] == 10 and ddp["dev"] == ddp["dev_last"]
    ddp_loss, single_loss = (
        sum(h["loss"] for h in steps[-LAST_STEPS:]) / LAST_STEPS for steps in (ddp_steps, single_steps)
    )
    assert ddp_loss == pytest.approx(single_loss, rel=LOSS_RTOL)
    assert ddp_steps[-1]["loss"] < ddp_steps[0]["loss"]  # it trained

    # one finished run dir, written once: no leftovers of a second rank's attempt
    assert sorted(p.name for p in ddp_dir.iterdir() if p.name.startswith(".")) == []
    assert not (ddp_dir / "checkpoints").exists() and not (ddp_dir / "best").exists()
    student = AutoModelForSequenceClassification.from_pretrained(ddp_dir)
    assert student.config.num_hidden_layers == 2
    if method == "lad":
        gates = load_file(ddp_dir / "gates.safetensors")
        # init: linear bias 0, LayerNorm weight 1. Gates 1..3 are trained; gate 0 is never used, so it stays frozen.
        for index in (1, 2, 3):
            assert gates[f"gates.{index}.linear.bias"].abs().max() > 0, index
            assert (gates[f"gates.{index}.layer_norm.weight"] - 1).abs().max() > 0, index
        assert torch.equal(gates["gates.0.linear.bias"], torch.zeros(32))
        assert torch.equal(gates["gates.0.layer_norm.weight"], torch.ones(32))


def _two_modules():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)


def _two_group_step(scaler, clip: float):
    """One step of apply_gradients over two modules (two lrs) with a known loss: (params after, stepped, scale)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    from ladc.training.optimizer import apply_gradients

    AcceleratorState._reset_state()
    GradientState._reset_state()
    accelerator = Accelerator(cpu=True)
    student, gates = accelerator.prepare(*_two_modules())
    if scaler is not None:  # accelerate makes no scaler on CPU; the CPU GradScaler has the same unscale/step logic
        accelerator.native_amp, accelerator.scaler = True, scaler
        accelerator.state._mixed_precision = "fp16"  # after the modules: no fp16 autocast of their forward
    groups = [{"params": student.parameters(), "lr": 0.1}, {"params": gates.parameters(), "lr": 0.01}]
    optimizer = accelerator.prepare(torch.optim.SGD(groups, lr=0.1))
    inputs = torch.linspace(-1, 1, 20).reshape(5, 4)
    loss = (gates(student(inputs)) ** 2).sum() * 50  # large gradients: the student's clip is active
    accelerator.backward(loss)
    # the gates unclipped: a second unscale (or none) would show in their step directly
    clip_groups = [(list(student.parameters()), clip), (list(gates.parameters()), None)]
    stepped = apply_gradients(accelerator, optimizer, clip_groups)
    params = [p.detach().clone() for module in (student, gates) for p in module.parameters()]
    return params, stepped, None if scaler is None else scaler.get_scale()


def test_fp16_scaler_unscales_once_and_updates_once_per_step():
    """With a GradScaler the step equals the unscaled fp32 step (clipping sees true gradients), and the
    scale grows once per optimizer step, not once per parameter group."""
    reference, stepped, _ = _two_group_step(None, clip=1.0)
    initial = [p.detach().clone() for module in _two_modules() for p in module.parameters()]
    assert stepped and any(not torch.equal(a, b) for a, b in zip(reference, initial, strict=True))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    scaled, stepped, scale = _two_group_step(scaler, clip=1.0)
    assert stepped and scale == 2.0**11
    for got, expected in zip(scaled, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_fp16_overflow_skips_the_step_and_reports_it():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, growth_interval=1)  # loss * scale overflows to inf
    params, stepped, scale = _two_group_step(scaler, clip=1.0)
    assert not stepped and scale == 2.0**126  # skipped, and the scale backs off once
    initial = [p.detach().clone() for module in _two_modules() for p in module.parameters()]
    for got, expected in zip(params, initial, strict=True):
        torch.testing.assert_close(got, expected)
