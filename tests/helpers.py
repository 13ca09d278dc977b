"""Builders shared by the training tests: a tiny pretrained-style BERT dir and a tiny GLUE SST-2 dir."""

from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ["good", "great", "funny", "charming"]
NEGATIVE = ["bad", "boring"]
NOUNS = ["movie", "film", "story", "book", "city", "car"]


def write_tiny_sst2(root: Path, train: int = 96, dev: int = 32, seed: int = 0) -> Path:
    """GLUE-layout SST-2 with sentences from the tiny vocab; the label is the sentiment of the adjective."""
    rng = random.Random(seed)

    def rows(count: int) -> list[str]:
        out = []
        for _ in range(count):
            positive = rng.random() < 0.5
            adjective = rng.choice(POSITIVE if positive else NEGATIVE)
            extra = " ".join(rng.choice(["very", "the", "one", "new", "old"]) for _ in range(rng.randint(0, 6)))
            out.append(f"the {rng.choice(NOUNS)} was {extra} {adjective} .\t{int(positive)}")
        return out

    task_dir = root / "SST-2"
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows(train)) + "\n")
    (task_dir / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows(dev)) + "\n")
    return root


def write_tiny_base_model(path: Path, config, tokenizer, seed: int = 0) -> Path:
    """A randomly initialised BertModel + tokenizer saved like a pretrained hub checkpoint."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_and_kill_after_checkpoint(command: list[str], checkpoints: Path, timeout_s: float = 300) -> None:
    """Start a real `python -m ladc ...` process and SIGKILL it once a complete checkpoint exists in `checkpoints`.

    Skips the calling test when the process finished before it could be interrupted.
    """
    import subprocess
    import time

    import pytest

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        if list(checkpoints.glob("step-*/trainer_state.json")):
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
