"""Builders shared by the tests: tiny GLUE SST-2 data, tiny BERT dirs, a briefly trained classifier, ladc runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import torch

from ladc.runs.config import OptimConfig
from ladc.training.train import TrainResult

POSITIVE = ["good", "great", "funny", "charming"]
NEGATIVE = ["bad", "boring"]
NOUNS = ["movie", "film", "story", "book", "city", "car"]


def sst2_rows(count: int, rng: random.Random) -> list[str]:
    """`count` lines `sentence<TAB>label` from the tiny vocab; the label is the sentiment of the adjective."""
    out = []
    for _ in range(count):
        positive = rng.random() < 0.5
        adjective = rng.choice(POSITIVE if positive else NEGATIVE)
        extra = " ".join(rng.choice(["very", "the", "one", "new", "old"]) for _ in range(rng.randint(0, 6)))
        out.append(f"the {rng.choice(NOUNS)} was {extra} {adjective} .\t{int(positive)}")
    return out


def write_tiny_sst2(root: Path, train: int = 96, dev: int = 32, seed: int = 0) -> Path:
    """GLUE-layout SST-2 with sentences from the tiny vocab; the label is the sentiment of the adjective."""
    rng = random.Random(seed)
    task_dir = root / "SST-2"
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(sst2_rows(train, rng)) + "\n")
    (task_dir / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(sst2_rows(dev, rng)) + "\n")
    return root


def sst2_dev_accuracy(model_dir: Path, glue: Path) -> float:
    """A saved classifier's accuracy on `glue`/SST-2/dev.tsv, computed outside ladc: one sentence at a time."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [line.split("\t") for line in (glue / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    with torch.no_grad():
        hits = [int(model(**tokenizer(text, return_tensors="pt")).logits.argmax(-1)) == int(y) for text, y in rows]
    return sum(hits) / len(hits)


def tiny_config(num_layers: int = 2, num_labels: int = 2, **overrides):
    """A tiny random BERT config that fits the tests' WordPiece vocabulary (conftest.TINY_VOCAB): hidden 32, 2 heads,
    FFN 64; for module-scoped fixtures, which cannot use conftest's function-scoped `tiny_bert_config`."""
    from transformers import BertConfig

    from tests.conftest import TINY_VOCAB

    values = {"vocab_size": len(TINY_VOCAB), "hidden_size": 32, "num_hidden_layers": num_layers,
              "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128, "pad_token_id": 0,
              "num_labels": num_labels}  # fmt: skip
    return BertConfig(**{**values, **overrides})


def tiny_tokenizer_of(vocab_file: Path):
    """The tests' lower-casing WordPiece tokenizer over `vocab_file` (conftest's `tiny_vocab_file`)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=128)


def write_tiny_base_model(path: Path, config, tokenizer, seed: int = 0) -> Path:
    """A randomly initialised BertModel + tokenizer saved like a pretrained hub checkpoint."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_tiny_classifier(path: Path, config, tokenizer, manifest: dict | None = None, seed: int | None = None) -> Path:
    """A random BertForSequenceClassification dir (weights, config, tokenizer, and `ladc.json` when given)."""
    import torch
    from transformers import BertForSequenceClassification

    if seed is not None:
        torch.manual_seed(seed)
    config.architectures = ["BertForSequenceClassification"]
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    if manifest is not None:
        (path / "ladc.json").write_text(json.dumps(manifest))
    return path


def write_tiny_teacher(root: Path, tiny_bert_config, tokenizer) -> tuple[Path, Path, Path]:
    """A 4-layer 'fine-tuned' teacher dir (random weights) whose ladc.json names its 4-layer base checkpoint, and a
    tiny SST-2; returns (teacher dir, GLUE dir, root)."""
    base = write_tiny_base_model(root / "base", tiny_bert_config(num_layers=4), tokenizer, seed=1)
    config = tiny_bert_config(num_layers=4, id2label={0: "negative", 1: "positive"})
    write_tiny_classifier(root / "teacher", config, tokenizer, {"task": "sst2", "base_model": str(base)}, seed=2)
    return root / "teacher", write_tiny_sst2(root / "glue"), root


def run_killed_at_step(command: list[str], step: int, timeout_s: float = 240) -> subprocess.CompletedProcess:
    """Run a real `python -m ladc ...` process that SIGKILLs itself right after its checkpoint of `step` is complete.

    The kill comes from ladc/training/train.py's test-only LADC_TEST_KILL_AT_STEP hook, so it is deterministic: the test
    fails (never skips) when the run was not killed at that step, and a child still running after `timeout_s` is
    killed by `subprocess.run` before the test fails.
    """
    env = {**os.environ, "LADC_TEST_KILL_AT_STEP": str(step)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    assert proc.returncode == -signal.SIGKILL, (
        f"expected the run to be SIGKILLed after its step-{step} checkpoint, got exit code {proc.returncode}\n"
        f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    )
    return proc


def run_ladc(args: list[str], timeout_s: float = 240) -> subprocess.CompletedProcess:
    """Run `python -m ladc ARGS` to completion (killed after `timeout_s`) and assert it succeeded."""
    proc = subprocess.run([sys.executable, "-m", "ladc", *args], capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def train_tiny_classifier(config, tokenizer, steps: int = 60, seed: int = 0):
    """A tiny BERT classifier trained briefly (plain PyTorch) on fresh tiny-SST-2 sentences: it predicts both classes.

    The sentences come from `sst2_rows` with their own seed, so they are not the dev rows a test evaluates on.
    """
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    rows = [line.split("\t") for line in sst2_rows(512, random.Random(seed + 1000))]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        chunk = [rows[(step * 16 + i) % len(rows)] for i in range(16)]
        batch = tokenizer([text for text, _ in chunk], padding=True, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor([int(label) for _, label in chunk])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


_FORK_SERVER = r"""
import json, os, signal, sys, time, traceback
# Ctrl-C as a terminal gives it: a test suite started in the background by a non-interactive shell (`cmd &`, as CI
# scripts may be) inherits SIGINT ignored, and a simulated Ctrl-C would then do nothing
signal.signal(signal.SIGINT, signal.default_int_handler)
# the heavy imports once, before any torch op starts a thread pool: a fork after that would hang in OpenMP
# (transformers loads its model classes lazily: ~20 s per process on a busy 2-core machine)
import torch, transformers, accelerate, datasets, onnx, onnxruntime  # noqa: F401
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertModel  # noqa: F401
from transformers import BertForSequenceClassification, BertTokenizerFast, get_linear_schedule_with_warmup  # noqa
import onnxruntime.quantization, onnxruntime.transformers.optimizer, torch.onnx, safetensors.torch  # noqa: F401
import ladc.cli, ladc.commands.distill, ladc.commands.teacher, ladc.training.train, ladc.deploy.export, ladc.commands.pipeline, ladc.bench.bench  # noqa: F401
import ladc.data.data, ladc.training.models, ladc.deploy.runners, ladc.deploy.parity, ladc.bench.compression, ladc.engines.onnx_graphs  # noqa: F401

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(request["cwd"])
            os.environ.update(request["env"])
            ladc.cli.main(request["args"])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + request["timeout_s"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = None
            break
        time.sleep(0.02)
    print(json.dumps({"code": None if status is None else os.waitstatus_to_exitcode(status)}), flush=True)
"""


class LadcForkServer:
    """Runs `ladc ARGS` in processes forked from one warm interpreter: a real process per run (SIGKILL ends it
    for real), without paying the ~10 s of importing torch and transformers each time.

    Example:
        with LadcForkServer() as server:
            code, log = server.run(["distill", ...], env={"LADC_TEST_KILL_AT": "checkpoint-write:1"})
    """

    def __init__(self, log_dir: Path):
        self.log_dir, self.count = Path(log_dir), 0

    def __enter__(self) -> LadcForkServer:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LADC_TEST_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        return self

    def run(self, args: list[str], env: dict | None = None, timeout_s: float = 120) -> tuple[int | None, str]:
        """(exit code: negative for a signal, None for a timeout; the run's stdout and stderr)."""
        self.count += 1
        log = self.log_dir / f"run-{self.count}.log"
        request = {"args": [str(a) for a in args], "env": env or {}, "log": str(log), "timeout_s": timeout_s}
        self.proc.stdin.write(json.dumps({**request, "cwd": os.getcwd()}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, "the fork server died"
        return json.loads(reply)["code"], log.read_text(errors="replace")

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_plain_onnx(model, path: Path, example: tuple | None = None) -> Path:
    """`model` as fp32 ONNX fed ONNX_INPUTS, with dynamic batch and sequence axes (torch's TorchScript exporter).

    `example`: one tensor per input to trace with; default a (1, 4) batch of ones.
    """
    import torch

    example = example or tuple(torch.ones(1, 4, dtype=torch.long) for _ in ONNX_INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS} | {"logits": {0: "batch"}}
    torch.onnx.export(model, example, str(path), input_names=list(ONNX_INPUTS), output_names=["logits"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    return path


def export_config(model: Path, output: Path, data: Path, **overrides):
    """An ExportConfig of `model` into `output`, on the tiny SST-2 dir `data`, with 3 timed runs under --select."""
    from ladc.runs.config import ExportConfig

    values = {"task": "sst2", "data_dir": str(data), "cache_dir": str(data / "cache"), "select_iterations": 3}
    return ExportConfig(model=str(model), output=str(output), **{**values, **overrides})


def add_artifact_row(monkeypatch, row) -> None:
    """Add `row` to its engine's rows for one test: the artifact table reads the engine registry at each call."""
    import dataclasses

    from ladc.engines import ENGINES

    engine = ENGINES[row.engine]
    monkeypatch.setitem(ENGINES, row.engine, dataclasses.replace(engine, artifacts=(*engine.artifacts, row)))


def write_run_manifest(run_dir: Path, text: str) -> Path:
    """`run_dir`/ladc.json holding `text` as given (valid or not); returns the run dir."""
    from ladc.runs.manifest import RUN_MANIFEST

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_MANIFEST).write_text(text)
    return run_dir


def write_tsv(path: Path, rows: list[str]) -> Path:
    """Write rows given with `|` for each tab."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(row.replace("|", "\t") + "\n" for row in rows), encoding="utf-8")
    return path


def _sst2_dir(root: Path, num_rows: int) -> Path:
    rows = ["sentence|label"] + [f"row {i}|{i % 2}" for i in range(num_rows)]
    for stem in ("train", "dev"):
        write_tsv(root / "SST-2" / f"{stem}.tsv", rows)
    return root


# ----------------------------------------------------------------------------- fit() on a tiny classifier (test_train*.py)


def _examples(count: int = 32, length: int = 8, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 90, (count, length), generator=generator)
    labels = torch.randint(0, 2, (count,), generator=generator)
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(length, dtype=torch.long), "labels": labels[i]}
        for i in range(count)
    ]


def _tiny_classifier(tiny_bert_config, seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    # no dropout: fit and the reference loop see the same function, whatever their RNG streams
    config = tiny_bert_config(num_layers=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def _scripted(*scores: float):
    """An evaluator that returns these accuracies, one per evaluation, whatever the model."""
    remaining = iter(scores)
    return lambda model, accelerator: {"accuracy": next(remaining)}


def _fit(
    model,
    run_dir: Path,
    examples: list[dict],
    micro_batch: int,
    evaluate=None,
    resume: bool = False,
    score_dev=None,
    frozen=None,
    clock=None,
    on_batch=None,
    epochs_seen=None,
    select_split=None,
    **optim,
) -> TrainResult:
    """ladc.training.train.fit on one classifier with plain cross-entropy and an in-order loader.

    `evaluate`: None scores a constant 0.5 at each evaluation; False passes no evaluator (the last step is kept).
    """
    from torch.utils.data import DataLoader

    from ladc.data.tasks import get_task
    from ladc.training.optimizer import OptimizerSpec
    from ladc.training.train import TrainPlan, fit, model_inputs

    values = {"lr": 1e-2, "weight_decay": 0.0, "max_grad_norm": 0.0, "warmup_ratio": 0.0, "log_steps": 1}
    values.update(optim)
    config = OptimConfig(**values)

    def loss_fn(modules, batch):
        if on_batch is not None:
            on_batch(batch)
        return {"loss": modules["model"](**model_inputs(batch), labels=batch["labels"]).loss}

    def make_loader(epoch):
        if epochs_seen is not None:
            epochs_seen.append(epoch)
        return DataLoader(examples, batch_size=micro_batch)

    plan = TrainPlan(
        trainable={"model": model},
        optimizers=[OptimizerSpec("model", ("model",), config.lr, config.weight_decay, config.max_grad_norm or None)],
        loss_fn=loss_fn,
        save_fn=lambda modules, directory: modules["model"].save_pretrained(directory),
        frozen=frozen or {},
    )
    return fit(
        plan, make_loader=make_loader, **({"clock": clock} if clock else {}),
        **({"select_split": select_split} if select_split else {}),  # fit's own default ("dev") otherwise
        evaluate=(lambda model, accelerator: {"accuracy": 0.5}) if evaluate is None else evaluate or None, optim=config, run_dir=run_dir,
        task=get_task("sst2"), score_dev=score_dev, **({"resume": True} if resume else {}),  # else fit's default
    )  # fmt: skip
