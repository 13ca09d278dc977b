"""Every command's error paths, end to end: the real `python -m ladc` on bad invocations (ladc/cli.py and below).

Each invocation must exit with code 2, print no traceback and at most 3 lines, and leave the files it was given
as it found them: no output directory created, no run dir changed (`test_no_invocation_created_or_changed_a_file`).
The tiny models and files are built once. Most invocations run in this process through the same Typer app that
`python -m ladc` runs (a process start costs seconds of torch imports and adds nothing to an argument check); the
cases in REAL_PROCESS, one per way of failing (option check, YAML, model loading, ONNX loading, --overwrite of a
directory ladc did not write), run as real `python -m ladc` processes, concurrently with the in-process ones, so the
entry point itself stays covered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import write_tiny_base_model, write_tiny_classifier, write_tiny_sst2

# the module fixture runs every invocation once, inside the first test's setup
pytestmark = pytest.mark.timeout(600)
REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout these tests belong to, whatever the working dir


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[SimpleNamespace], list[str]]
    message: str  # a fragment of the one-line error
    xfail: str | None = None  # why it still fails, and the file:line that needs the fix (not ours to edit)


DATA = ["--task", "sst2"]
# the world's `foreign` dir holds a thesis and no ladc manifest: --overwrite names the file instead of deleting it
OVERWRITE_REFUSED = "--overwrite would delete "
FAST = ["--max-steps", "2", "--eval-steps", "1", "--batch-size", "4"]


def _glue(w, name="glue"):
    return [*DATA, "--data-dir", str(getattr(w, name))]


CASES = [
    # ------------------------------------------------------------------ tune-teacher
    Case("teacher-negative-lr", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), "--lr", "-1",
                                           "-o", str(w.out / "t1")], "lr must be positive, got -1.0"),
    Case("teacher-batch-size-0", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), "--batch-size", "0",
                                            "-o", str(w.out / "t2")], "batch_size must be positive, got 0"),
    Case("teacher-eval-steps-0", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), "--eval-steps", "0",
                                            "-o", str(w.out / "t3")], "eval_steps must be positive"),
    Case("teacher-negative-seed", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), "--seed", "-1",
                                             "-o", str(w.out / "t6")], "seed must be in [0, 2**32), got -1"),
    Case("teacher-mixed-precision", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), "--mixed-precision",
                                               "fp8", "-o", str(w.out / "t4")], "mixed_precision 'fp8' is not one of"),
    Case("teacher-yaml-unknown-key", lambda w: ["tune-teacher", "--config", str(w.yaml_unknown), "-o",
                                                str(w.out / "t5")], "line 2: unknown key 'optim.lrate'"),
    Case("teacher-yaml-latin1", lambda w: ["tune-teacher", "--config", str(w.yaml_latin1)],
         "is not UTF-8: byte 0xe9 at offset"),
    Case("teacher-yaml-inf-lr", lambda w: ["tune-teacher", "--config", str(w.yaml_inf)],
         "optim.lr: expected a finite number"),
    Case("teacher-header-only-tsv", lambda w: ["tune-teacher", *_glue(w, "glue_header_only"), "--model", str(w.base),
                                               *FAST, "-o", str(w.out / "t6")], "has no data rows after the header"),
    Case("teacher-latin1-tsv", lambda w: ["tune-teacher", *_glue(w, "glue_latin1"), "--model", str(w.base), *FAST,
                                          "-o", str(w.out / "t7")], "is not UTF-8: byte 0xe9 at offset 21 (line 2)"),
    Case("teacher-model-is-a-file", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.file), "-o",
                                               str(w.out / "t9")], "is a file; expected an HF model directory"),
    Case("teacher-output-under-a-file", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), "-o",
                                                   str(w.file / "out")], "is a file, not a directory"),
    Case("teacher-output-unwritable", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), "-o",
                                                 "/proc/ladc-test-out"], "/proc"),
    Case("teacher-resume-other-config", lambda w: ["tune-teacher", "--resume", "-o", str(w.partial_teacher), "--lr",
                                                   "0.5"], "optim.lr (saved 0.001, given 0.5)"),
    Case("teacher-resume-a-student-run", lambda w: ["tune-teacher", "--resume", "-o", str(w.partial_student)],
         "is a `ladc distill` run, not a `ladc tune-teacher` one"),
    Case("teacher-resume-and-overwrite", lambda w: ["tune-teacher", "--resume", "--overwrite", "-o",
                                                    str(w.partial_teacher)], "pass one of them"),
    Case("teacher-resume-damaged-checkpoint", lambda w: ["tune-teacher", "--resume", "-o", str(w.damaged_run)],
         "is damaged (model.safetensors"),
    Case("teacher-max-seq-len-beyond-positions", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base),
                                                            "--max-seq-len", "1000", "-o", str(w.out / "t11")],
         "max_seq_len 1000 exceeds the 128 positions"),
    Case("distill-student-as-teacher", lambda w: ["distill", *_glue(w), "--teacher", str(w.student), "-o",
                                                  str(w.out / "d1")], "is a distilled student"),
    Case("distill-label-count", lambda w: ["distill", "--task", "mnli", "--data-dir", str(w.glue), "--teacher",
                                           str(w.teacher), "-o", str(w.out / "d2")], "2 labels but task mnli has 3"),
    Case("distill-label-set-manifest", lambda w: ["distill", "--task", "rte", "--data-dir", str(w.glue), "--teacher",
                                                  str(w.teacher), "-o", str(w.out / "d3")], "was tuned on sst2"),
    Case("distill-student-layers-too-many", lambda w: ["distill", *_glue(w), "--teacher", str(w.teacher),
                                                       "--student-layers", "4", "-o", str(w.out / "d5")],
         "must be between 1 and 3"),
    Case("distill-student-layers-0", lambda w: ["distill", *_glue(w), "--teacher", str(w.teacher), "--student-layers",
                                                "0", "-o", str(w.out / "d6")], "--student-layers must be at least 1"),
    Case("distill-temperature-0", lambda w: ["distill", *_glue(w), "--teacher", str(w.teacher), "--temperature", "0",
                                             "-o", str(w.out / "d7")], "temperature=0.0 must be > 0"),
    Case("distill-corrupted-teacher", lambda w: ["distill", *_glue(w), "--teacher", str(w.corrupt_teacher), "-o",
                                                 str(w.out / "d8")], "cannot load model weights"),
    Case("distill-tokenizer-larger-than-vocab", lambda w: ["distill", *_glue(w), "--teacher", str(w.bad_vocab), "-o",
                                                           str(w.out / "d9")], "but the model's vocabulary has"),
    Case("distill-output-under-a-file", lambda w: ["distill", *_glue(w), "--teacher", str(w.teacher), "-o",
                                                   str(w.file / "out")], "is a file, not a directory"),
    # ------------------------------------------------------------------ evaluate
    Case("evaluate-batch-size-0", lambda w: ["evaluate", str(w.teacher), "--batch-size", "0"],
         "--batch-size must be positive"),
    Case("evaluate-output-under-a-file", lambda w: ["evaluate", str(w.teacher), "-o", str(w.file / "m.json")],
         "notes.txt exists and is not a directory"),
    # ------------------------------------------------------------------ export
    Case("export-model-is-a-file", lambda w: ["export", str(w.file), "-o", str(w.out / "x2")], "does not exist"),
    Case("export-output-under-a-file", lambda w: ["export", str(w.teacher), "--data-dir", str(w.glue), "-o",
                                                  str(w.file / "out")], "is a file, not a directory"),
    Case("export-bad-quantize", lambda w: ["export", str(w.teacher), "--quantize", "static", "-o", str(w.out / "x3")],
         "--quantize 'static' is not supported"),
    # ------------------------------------------------------------------ bench
    Case("bench-not-a-model", lambda w: ["bench", str(w.file), *_glue(w), "-o", str(w.out / "b1")], "notes.txt"),
    Case("bench-truncated-onnx", lambda w: ["bench", str(w.truncated_onnx), *_glue(w), "-o", str(w.out / "b3")],
         "is not a valid ONNX model"),
    # ------------------------------------------------------------------ pipeline / demo
    Case("pipeline-unknown-key", lambda w: ["pipeline", "--config", str(w.pipeline_unknown)], "unknown key"),
    Case("pipeline-bad-stage", lambda w: ["pipeline", "--config", str(w.pipeline_ok), "--from", "distil"],
         "--from 'distil' is not a stage"),
    Case("demo-output-under-a-file", lambda w: ["demo", "--output", str(w.file / "demo")],
         "is a file, not a directory"),
    # ------------------------------------------------------------------ --overwrite of a directory ladc did not write
    Case("export-overwrite-foreign-dir", lambda w: ["export", str(w.student), "--data-dir", str(w.glue), "-o",
                                                    str(w.foreign), "--overwrite"], OVERWRITE_REFUSED),
    Case("teacher-overwrite-foreign-dir", lambda w: ["tune-teacher", *_glue(w), "--model", str(w.base), *FAST, "-o",
                                                     str(w.foreign), "--overwrite"], OVERWRITE_REFUSED),
    Case("bench-overwrite-foreign-dir", lambda w: ["bench", str(w.student), *_glue(w), "-o", str(w.foreign),
                                                   "--overwrite"], OVERWRITE_REFUSED),
    Case("pipeline-overwrite-foreign-dir", lambda w: ["pipeline", "--config", str(w.pipeline_foreign), "--overwrite"],
         OVERWRITE_REFUSED),
    Case("demo-overwrite-foreign-dir", lambda w: ["demo", "--output", str(w.foreign), "--overwrite"],
         OVERWRITE_REFUSED),
]  # fmt: skip


def _tree(root: Path) -> dict[str, object]:
    """Every path under root with its size and mtime (dirs by name only: a lock file comes and goes beside a run)."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        state[relative] = "dir" if path.is_dir() else (path.stat().st_size, path.stat().st_mtime_ns)
    return state


def _classifier(path: Path, tokenizer, config, manifest: dict | None, seed: int = 0) -> Path:
    return write_tiny_classifier(path, config, tokenizer, manifest, seed=seed)


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.INT64, ["batch", "seq"])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph), path)
    return path


def _world(root: Path, tiny_tokenizer, tiny_bert_config) -> SimpleNamespace:
    """The models, run dirs and files the bad invocations point at (built once per module, in this process)."""
    from ladc.runs.config import DataConfig, DistillConfig, OptimConfig, TuneTeacherConfig, save_yaml

    w = SimpleNamespace(root=root, out=root / "outputs")
    w.out.mkdir(parents=True)
    sst2 = {"id2label": {0: "negative", 1: "positive"}}
    w.base = write_tiny_base_model(root / "base", tiny_bert_config(num_layers=4), tiny_tokenizer)
    w.glue = write_tiny_sst2(root / "glue", train=16, dev=8)
    w.glue_header_only = write_tiny_sst2(root / "glue-header-only", train=4, dev=4)
    (w.glue_header_only / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    w.glue_latin1 = root / "glue-latin1"
    (w.glue_latin1 / "SST-2").mkdir(parents=True)
    for split in ("train", "dev"):
        (w.glue_latin1 / "SST-2" / f"{split}.tsv").write_bytes(b"sentence\tlabel\nun caf\xe9 .\t1\n")
    teacher_manifest = {"kind": "teacher", "task": "sst2", "base_model": str(w.base)}
    w.teacher = _classifier(root / "teacher", tiny_tokenizer, tiny_bert_config(4, **sst2), teacher_manifest)
    (w.teacher / "metrics.json").write_text(json.dumps({"dev": {"accuracy": 0.5}}))
    w.teacher_bare = _classifier(root / "teacher-bare", tiny_tokenizer, tiny_bert_config(4, **sst2), None)
    student_manifest = {"kind": "student", "task": "sst2", "teacher": str(w.teacher)}
    w.student = _classifier(root / "student", tiny_tokenizer, tiny_bert_config(2, **sst2), student_manifest)
    w.corrupt_teacher = Path(shutil.copytree(w.teacher, root / "teacher-corrupt"))
    weights = w.corrupt_teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    w.bad_vocab = _classifier(
        root / "bad-vocab", tiny_tokenizer, tiny_bert_config(4, vocab_size=40, **sst2), {"task": "sst2"}
    )
    data = DataConfig(task="sst2", data_dir=str(w.glue))
    w.partial_teacher = root / "runs" / "teacher-partial"
    teacher_cfg = TuneTeacherConfig(
        model=str(w.base), output=str(w.partial_teacher), data=data, optim=OptimConfig(lr=1e-3, max_steps=4)
    )
    save_yaml(teacher_cfg, w.partial_teacher / "config.yaml")
    w.damaged_run = root / "runs" / "teacher-damaged"
    save_yaml(teacher_cfg, w.damaged_run / "config.yaml")
    checkpoint = w.damaged_run / "checkpoints" / "step-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 2, "best_step": 0, "best_metrics": {}}))
    (checkpoint / "model.safetensors").write_bytes(weights.read_bytes()[:100])
    w.partial_student = root / "runs" / "student-partial"
    save_yaml(DistillConfig(teacher=str(w.teacher), output=str(w.partial_student), data=data),
              w.partial_student / "config.yaml")  # fmt: skip
    w.file = root / "notes.txt"
    w.file.write_text("not a model, not a directory\n")
    w.truncated_onnx = _tiny_onnx(root / "truncated.onnx")
    w.truncated_onnx.write_bytes(w.truncated_onnx.read_bytes()[:40])
    w.yaml_unknown = root / "unknown.yaml"
    w.yaml_unknown.write_text("optim:\n  lrate: 0.1\n")
    w.yaml_latin1 = root / "latin1.yaml"
    w.yaml_latin1.write_bytes(b"model: caf\xe9\n")
    w.yaml_inf = root / "inf.yaml"
    w.yaml_inf.write_text("optim:\n  lr: .inf\n")
    w.pipeline_unknown = root / "pipeline-unknown.yaml"
    w.pipeline_unknown.write_text("run_dir: x\nteachr: {}\n")
    w.foreign = root / "thesis"
    w.foreign.mkdir()
    (w.foreign / "thesis.tex").write_text("\\chapter{Years of work}\n")
    w.pipeline_foreign = root / "pipeline-foreign.yaml"
    w.pipeline_foreign.write_text(f"run_dir: {w.foreign}\ndata:\n  task: sst2\n  data_dir: {w.glue}\n")
    w.pipeline_ok = root / "pipeline.yaml"
    w.pipeline_ok.write_text(f"run_dir: {w.out / 'p1'}\ndata:\n  task: sst2\n  data_dir: {w.glue}\n")
    return w


# real `python -m ladc` processes: an early option check, a YAML error, a model that fails to load, a broken ONNX file
REAL_PROCESS = {
    "teacher-negative-lr",
    "teacher-yaml-latin1",
    "distill-corrupted-teacher",
    "bench-truncated-onnx",
    "export-overwrite-foreign-dir",
}
_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(PYTHONPATH=str(REPO_ROOT), HOME=str(home), **_ENV)
    return subprocess.run(
        [sys.executable, "-m", "ladc", *args], capture_output=True, text=True, env=env, timeout=240, cwd=home
    )


def _invoke(args: list[str], home: Path) -> SimpleNamespace:
    """The same invocation in this process; an exception that escaped the command shows as a traceback on stderr."""
    from typer.testing import CliRunner

    from ladc.cli import app

    with pytest.MonkeyPatch.context() as patch:
        for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
            patch.delenv(name, raising=False)
        patch.chdir(home)  # default output dirs (runs/...) would land here
        result = CliRunner().invoke(app, args, env={"HOME": str(home), **_ENV})
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (in process):\n" + "".join(traceback.format_exception(*result.exc_info))
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=stderr)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Build the world, run every case (concurrently), and record the tree before and after."""
    from transformers import BertConfig, BertTokenizerFast

    from tests.conftest import TINY_VOCAB

    root = tmp_path_factory.mktemp("cli-errors")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=128)

    def config(num_layers=2, num_labels=2, **overrides):
        values = {"vocab_size": len(TINY_VOCAB), "hidden_size": 32, "num_hidden_layers": num_layers,
                  "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128,
                  "pad_token_id": 0, "num_labels": num_labels}  # fmt: skip
        return BertConfig(**{**values, **overrides})

    world = _world(root / "world", tokenizer, config)
    home = tmp_path_factory.mktemp("home")
    before = _tree(world.root)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case.name: pool.submit(_run, case.args(world), home) for case in CASES if case.name in REAL_PROCESS}
        results = {case.name: _invoke(case.args(world), home) for case in CASES if case.name not in REAL_PROCESS}
        results.update({name: future.result() for name, future in futures.items()})
    return SimpleNamespace(results=results, before=before, after=_tree(world.root), world=world)


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.xfail)) if c.xfail else c for c in CASES],
    ids=[c.name for c in CASES],
)  # fmt: skip
def test_bad_invocation_exits_2_with_one_short_error(case, outcomes):
    proc = outcomes.results[case.name]
    output = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert len(output) <= 3, output
    assert any(line.startswith("error: ") and case.message in line for line in output), (case.message, output)


def test_no_invocation_created_or_changed_a_file(outcomes):
    changed = {
        path: (outcomes.before.get(path), outcomes.after.get(path))
        for path in set(outcomes.before) | set(outcomes.after)
        if outcomes.before.get(path) != outcomes.after.get(path)
    }
    assert not changed, changed
    assert not any(outcomes.world.out.iterdir())  # no output dir, no lock file left behind
    assert (outcomes.world.foreign / "thesis.tex").read_text() == "\\chapter{Years of work}\n"  # --overwrite refused


def test_at_least_thirty_invocations_across_every_command():
    commands = {case.args(SimpleNamespace(**{k: Path("x") for k in _WORLD_KEYS}))[0] for case in CASES}
    assert len(CASES) >= 30
    assert REAL_PROCESS <= {case.name for case in CASES}  # a renamed case must not drop out of the real processes
    assert commands == {"tune-teacher", "distill", "evaluate", "export", "bench", "pipeline", "demo"}


_WORLD_KEYS = [
    "root", "out", "base", "glue", "glue_header_only", "glue_latin1", "teacher", "teacher_bare", "student",
    "corrupt_teacher", "bad_vocab", "partial_teacher", "damaged_run", "partial_student", "file", "truncated_onnx",
    "yaml_unknown", "yaml_latin1", "yaml_inf", "pipeline_unknown", "pipeline_ok", "foreign", "pipeline_foreign",
]  # fmt: skip
