"""Fault injection: real `ladc` processes killed at named points (ladc/runs/faults.py), then resumed or rerun.

Each command is killed again and again, every rerun at a later point, until a rerun finishes: SIGKILL in the
middle of a checkpoint, between a temp write and its rename, between moving a directory aside and renaming its
replacement in, while finalizing, between export artifacts and pipeline stages, plus one Ctrl-C. After every kill
the output holds nothing, the previous complete result, or a run that resumes; the finished output equals an
uninterrupted run's (weights within float tolerance, the same steps and metrics) and holds no leftovers.

The runs are forked from one warm interpreter (tests/helpers.py `LadcForkServer`): real processes that really
die, without importing torch again for each of the ~60 runs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ladc.runs.checkpoint_files import latest_checkpoint
from ladc.runs.faults import POINTS
from tests.conftest import TINY_VOCAB
from tests.helpers import LadcForkServer, write_tiny_base_model, write_tiny_sst2

# ~60 real runs; on a 2-core machine shared with other jobs one run can take 10 s
pytestmark = pytest.mark.timeout(900)
KILLED = -9
# 32 train rows, batch 8: 8 steps over 2 epochs; evaluated every 2 steps, checkpoints at steps 2, 4 and 6
OPTIM = {"lr": 1e-3, "batch_size": 8, "max_steps": 8, "warmup_ratio": 0.0, "eval_steps": 2, "save_steps": 2}
OPTIM["log_steps"] = 1
STUDENT = {"student_layers": 2, "gate_lr": 3e-4}

# Each entry kills one run; the next run resumes what it left (counts restart in every process). The comments
# say where each lands, given the run it resumes from.
TRAINING_CHAIN = [
    "atomic-dir:2",  # tokenizing: the dev cache is complete in its temp dir (no run dir yet)
    "atomic-write:1",  # the run dir exists; config.yaml is written and fsynced, not renamed
    "best-write:1",  # step 2: the best model is complete in its temp dir
    "checkpoint-write:1",  # step 2: half a checkpoint (weights and optimizer, no trainer state)
    "checkpoint-rename:1",  # step 2: the checkpoint is complete in its temp dir, not renamed
    "checkpoint-done:1",  # step 2: checkpoint in place -> later runs resume from step 2
    "train-step:1:INT",  # Ctrl-C at step 3: the step is finished and checkpointed, exit 130
    "checkpoint-done:2",  # from step 3: step 6's checkpoint in place, the old ones not yet pruned
    "train-step:2",  # from step 6: the last step is done, not yet evaluated
    "finalize:2",  # from step 6: two files of the final model are linked into the run dir
    "finalize-manifest:1",  # ladc.json is written, metrics.json (the 'finished' marker) is not
    "atomic-write:3",  # metrics.json is complete in its temp file, not renamed
]
EXPORT_KILLS = [  # each a fresh `export --overwrite` over the previous complete export
    "artifact-done:1",
    "artifact-done:2",
    "artifact-done:3",
    "artifact-done:4",
    "atomic-write:1",  # export.json inside the temp output dir
    "export-rename:1",  # the temp output dir is complete
    "atomic-dir:1",  # the same moment, seen by the directory writer
    "atomic-dir-swap:1",  # the previous export moved aside, the new one not yet renamed in
    "artifact-done:2:INT",  # Ctrl-C between two artifacts
]
PIPELINE_CHAIN = [
    "atomic-write:1",  # pipeline.yaml
    "train-step:2",  # teacher, step 2
    "checkpoint-done:1",  # teacher, step 2 checkpointed
    "finalize:1",  # teacher finalizing
    "stage-done:1",  # teacher finished
    "checkpoint-write:1",  # student, half a checkpoint
    "checkpoint-done:2",  # student, step 4 checkpointed
    "finalize-manifest:1",  # student almost finished
    "artifact-done:1",  # export, after its first artifact
    "export-rename:1",  # export complete in its temp dir
    "stage-done:1",  # onnx finished
    "stage-done:1",  # bench finished; the last rerun writes the report
]


def test_every_kill_point_named_here_exists():
    named = TRAINING_CHAIN + EXPORT_KILLS + PIPELINE_CHAIN
    assert {spec.split(":")[0] for spec in named} <= set(POINTS)
    assert min(len(TRAINING_CHAIN), len(EXPORT_KILLS) + 1, len(PIPELINE_CHAIN)) >= 10


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny base BERT, tiny SST-2, one config writer and the fork server, shared by the module."""
    from transformers import BertConfig, BertTokenizerFast

    root = tmp_path_factory.mktemp("faults")
    (root / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, pad_token_id=0,
    )  # fmt: skip
    base = write_tiny_base_model(root / "base", config, tokenizer)
    glue = write_tiny_sst2(root / "glue", train=32, dev=16)
    with LadcForkServer(root / "logs") as server:
        yield {"root": root, "base": base, "glue": glue, "server": server}


def _data(world, cache: str) -> dict:
    return {"task": "sst2", "data_dir": str(world["glue"]), "cache_dir": str(world["root"] / cache)}


def _training_config(world, kind: str, output: Path, teacher: Path | None, cache: str) -> Path:
    values = {"output": str(output), "data": _data(world, cache), "optim": OPTIM}
    if kind == "tune-teacher":
        values["model"] = str(world["base"])
    else:
        values.update(teacher=str(teacher), **STUDENT)
    path = world["root"] / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _run(world, args: list, kill_at: str | None = None) -> tuple[int | None, str]:
    env = {"LADC_TEST_KILL_AT": kill_at} if kill_at else {}
    return world["server"].run(args, env=env)


def _ok(code, log: str) -> None:
    assert code == 0, log[-4000:]
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def reference(world):
    """Uninterrupted teacher, student (from that teacher) and export (of that student): one run each."""
    root = world["root"]
    teacher, student, onnx = root / "ref-teacher", root / "ref-student", root / "ref-onnx"
    _ok(*_run(world, ["tune-teacher", "--config", _training_config(world, "tune-teacher", teacher, None, "cache")]))
    _ok(*_run(world, ["distill", "--config", _training_config(world, "distill", student, teacher, "cache")]))
    _ok(
        *_run(
            world, ["export", student, "--output", onnx, "--optimize", "--quantize", "dynamic", "--allow-drop", "100"]
        )
    )
    return {"tune-teacher": teacher, "distill": student, "export": onnx}


def _assert_killed(code, log: str, spec: str) -> None:
    if spec.endswith(":INT"):  # Ctrl-C: exit 130 and one line saying what to do
        assert code == 130, log[-4000:]
        lines = [line for line in re.split(r"[\r\n]", log) if line.startswith("interrupted")]
        assert len(lines) == 1 and "Traceback" not in log, log[-4000:]
    else:
        assert code == KILLED, f"not killed at {spec} (exit {code}):\n{log[-4000:]}"


def _assert_resumable(run_dir: Path) -> None:
    """Nothing, or an unfinished run whose saved config parses and whose complete checkpoints are all intact."""
    if not run_dir.exists():
        return
    assert not (run_dir / "metrics.json").exists()
    if (run_dir / "config.yaml").exists():
        yaml.safe_load((run_dir / "config.yaml").read_text())
    latest_checkpoint(run_dir)  # raises LadcError when a complete checkpoint is damaged


def _assert_same_weights(got_dir: Path, expected_dir: Path, names=("model.safetensors",)) -> None:
    import torch
    from safetensors.torch import load_file

    for name in names:
        expected, got = load_file(expected_dir / name), load_file(got_dir / name)
        assert sorted(got) == sorted(expected)
        for key, tensor in expected.items():
            torch.testing.assert_close(got[key], tensor, rtol=1e-4, atol=1e-5, msg=f"{name}:{key}")


def _assert_finished_like(run_dir: Path, reference_dir: Path, names) -> None:
    got, expected = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference_dir))
    assert got["final_step"] == expected["final_step"] == OPTIM["max_steps"]
    assert got["best_step"] == expected["best_step"]
    assert got["dev"] == pytest.approx(expected["dev"])
    _assert_same_weights(run_dir, reference_dir, names)
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".") or p.name in ("best", "checkpoints")]
    assert leftovers == []


@pytest.mark.parametrize("kind", ["tune-teacher", "distill"])
def test_training_killed_at_every_point_resumes_to_the_uninterrupted_result(world, reference, kind):
    run_dir = world["root"] / f"killed-{kind}"
    config = _training_config(world, kind, run_dir, reference["tune-teacher"], f"cache-{kind}")
    for number, spec in enumerate(TRAINING_CHAIN):
        args = [kind, "--config", config] + (["--resume"] if number else [])
        _assert_killed(*_run(world, args, kill_at=spec), spec)
        _assert_resumable(run_dir)
    _ok(*_run(world, [kind, "--config", config, "--resume"]))
    names = ("model.safetensors", "gates.safetensors") if kind == "distill" else ("model.safetensors",)
    _assert_finished_like(run_dir, reference[kind], names)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 6


def test_damaged_last_checkpoint_falls_back_to_the_previous_one(world, reference):
    run_dir = world["root"] / "damaged"
    config = _training_config(world, "tune-teacher", run_dir, None, "cache")
    _assert_killed(*_run(world, ["tune-teacher", "--config", config], kill_at="checkpoint-done:2"), "kill")
    none_left = world["root"] / "damaged-all"
    shutil.copytree(run_dir, none_left)
    newest = run_dir / "checkpoints" / "step-4" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a write cut short by a full disk

    code, log = _run(world, ["tune-teacher", "--config", config, "--resume"])
    _ok(code, log)
    assert "step-4 is damaged" in log and "resuming from step-2 instead" in log
    _assert_finished_like(run_dir, reference["tune-teacher"], ("model.safetensors",))
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from_step"] == 2

    for step in (2, 4):
        (none_left / "checkpoints" / f"step-{step}" / "model.safetensors").write_bytes(b"\0" * 64)
    other = _training_config(world, "tune-teacher", none_left, None, "cache")
    code, log = _run(world, ["tune-teacher", "--config", other, "--resume"])
    lines = log.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in log, log[-3000:]
    assert "no usable checkpoint" in lines[0] and "step-2" in lines[0] and "step-4" in lines[0]
    assert "--overwrite" in lines[0]


def _export_state(out: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    manifest = json.loads((out / "export.json").read_text())
    graph = onnx.load(str(out / "model.onnx")).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    return {"artifacts": [a["name"] for a in manifest["artifacts"]], "weights": weights}


def _assert_same_export(out: Path, expected: dict) -> None:
    import numpy as np

    state = _export_state(out)
    assert state["artifacts"] == expected["artifacts"]
    assert sorted(state["weights"]) == sorted(expected["weights"])
    for name, array in expected["weights"].items():
        np.testing.assert_allclose(state["weights"][name], array, rtol=1e-5, atol=1e-6)


def test_export_killed_keeps_the_previous_export_or_nothing(world, reference):
    student, expected = reference["distill"], _export_state(reference["export"])
    out = world["root"] / "killed-onnx"
    args = ["export", student, "--output", out, "--optimize", "--quantize", "dynamic", "--allow-drop", "100"]
    # into a fresh location: a kill leaves nothing there, and the rerun cleans the killed run's temp dir
    _assert_killed(*_run(world, args, kill_at="artifact-done:1"), "artifact-done:1")
    assert not out.exists()
    _ok(*_run(world, args))
    for spec in EXPORT_KILLS:
        _assert_killed(*_run(world, [*args, "--overwrite"], kill_at=spec), spec)
        if spec != "atomic-dir-swap:1":
            _assert_same_export(out, expected)  # the previous complete export, untouched
        else:
            assert not out.exists()  # the one moment with nothing there; the next run puts the previous one back
    _ok(*_run(world, [*args, "--overwrite"]))
    _assert_same_export(out, expected)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def test_pipeline_killed_at_every_stage_reruns_to_the_uninterrupted_result(world, reference):
    run_dir = world["root"] / "killed-pipeline"
    config = {
        "run_dir": str(run_dir),
        "data": _data(world, "cache-pipeline"),
        "teacher": {"model": str(world["base"]), "optim": OPTIM},
        "distill": {**STUDENT, "optim": OPTIM},
        "export": {"optimize": True, "quantize": "dynamic", "select": None, "allow_drop": 100.0},
        "bench": {"batch_sizes": [1], "seq_lens": [16], "warmup": 1, "iterations": 2, "isolation": "interleaved"},
    }
    path = world["root"] / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    for spec in PIPELINE_CHAIN:
        _assert_killed(*_run(world, ["pipeline", "--config", path], kill_at=spec), spec)
        for stage in ("teacher", "student"):
            if not (run_dir / stage / "metrics.json").exists():
                _assert_resumable(run_dir / stage)
    _ok(*_run(world, ["pipeline", "--config", path]))
    assert (run_dir / "report.md").is_file() and (run_dir / "bench" / "bench.json").is_file()
    _assert_finished_like(run_dir / "teacher", reference["tune-teacher"], ("model.safetensors",))
    _assert_finished_like(run_dir / "student", reference["distill"], ("model.safetensors", "gates.safetensors"))
    _assert_same_export(run_dir / "onnx", _export_state(reference["export"]))
