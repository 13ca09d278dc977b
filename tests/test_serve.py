"""Tests for ladc/commands/serve.py: a real `ladc serve` process on a free 127.0.0.1 port, driven by a real HTTP client
(httpx), every request bounded by a timeout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from ladc.cli import app
from tests.helpers import train_tiny_classifier

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

TEXTS = ["the movie was good .", "a very boring old film", "bad .", "the story was very very funny and charming !"]
REQUEST_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_vocab_file) -> Path:
    from transformers import BertConfig, BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab_file=str(tiny_vocab_file), do_lower_case=True, model_max_length=128)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)  # fmt: skip
    path = tmp_path_factory.mktemp("serve") / "student"
    train_tiny_classifier(config, tokenizer, steps=40).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "ladc.json").write_text(json.dumps({"kind": "student", "task": "sst2", "data": {"max_seq_len": 64}}))
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A `python -m ladc serve` child process; stopped with SIGTERM (killed if it does not exit in time)."""

    def __init__(self, target: Path, *flags: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "ladc", "serve", str(target), "--port", str(self.port), *flags]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}: {self.process.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError("server did not answer /health within 120 s")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


@pytest.fixture(scope="module")
def server(model_dir):
    running = Server(model_dir, "--max-wait-ms", "100", "--max-batch", "8", "--max-request-rows", "64",
                     "--max-body-bytes", "20000")  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def expected(model_dir) -> dict[str, dict]:
    """What ladc's own Predictor gives for each text alone (the same path `ladc predict` takes)."""
    from ladc.commands.predict import open_predictor

    predictor = open_predictor(str(model_dir))
    return {text: predictor.outputs(predictor.logits([(text,)], batch_size=1))[0] for text in TEXTS}


def _post(url: str, payload) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=payload, timeout=REQUEST_TIMEOUT_S)


def _assert_same(got: dict, want: dict) -> None:
    assert got["label"] == want["label"]
    np.testing.assert_allclose(list(got["probabilities"].values()), list(want["probabilities"].values()), atol=1e-5)


def test_predict_returns_labels_and_probabilities_in_request_order(server, expected):
    response = _post(server.url, {"texts": TEXTS})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(TEXTS)
    for text, prediction in zip(TEXTS, predictions, strict=True):
        _assert_same(prediction, expected[text])


def test_concurrent_requests_are_micro_batched_and_each_gets_its_own_answer(server, expected):
    before = httpx.get(f"{server.url}/metadata", timeout=REQUEST_TIMEOUT_S).json()["stats"]
    clients = 12
    barrier, results = threading.Barrier(clients), [None] * clients

    def call(i: int) -> None:
        barrier.wait(timeout=REQUEST_TIMEOUT_S)
        results[i] = _post(server.url, {"texts": [TEXTS[i % len(TEXTS)]]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * REQUEST_TIMEOUT_S)
    for i, response in enumerate(results):
        assert response is not None and response.status_code == 200
        _assert_same(response.json()["predictions"][0], expected[TEXTS[i % len(TEXTS)]])
    after = httpx.get(f"{server.url}/metadata", timeout=REQUEST_TIMEOUT_S).json()["stats"]
    requests, calls = after["requests"] - before["requests"], after["model_calls"] - before["model_calls"]
    assert requests == clients
    assert calls < clients, f"{clients} concurrent requests took {calls} model calls: nothing was batched"


def test_metadata_describes_the_model_and_the_limits(server, model_dir):
    metadata = httpx.get(f"{server.url}/metadata", timeout=REQUEST_TIMEOUT_S).json()
    assert metadata["task"] == "sst2" and metadata["labels"] == ["negative", "positive"]
    assert metadata["artifact"] == "student" and metadata["engine"].startswith("torch")
    assert metadata["precision"] == "fp32" and metadata["cpu"]
    assert metadata["batching"] == {"max_batch": 8, "max_wait_ms": 100.0, "max_request_rows": 64,
                                    "max_body_bytes": 20000, "max_batch_from": "--max-batch"}  # fmt: skip


def test_by_default_no_request_waits_and_the_batch_limit_is_measured_at_startup(model_dir):
    from ladc.commands.serve import CALIBRATION_BATCHES, choose_max_batch

    server = Server(model_dir)
    try:
        batching = httpx.get(f"{server.url}/metadata", timeout=REQUEST_TIMEOUT_S).json()["batching"]
        response = _post(server.url, {"texts": TEXTS})
    finally:
        assert server.stop() == 0
    assert batching["max_wait_ms"] == 0.0 and batching["max_batch_from"].startswith("measured at startup")
    measured = {int(batch): rate for batch, rate in batching["measured_rows_per_s"].items()}
    assert sorted(measured) == list(CALIBRATION_BATCHES) and all(rate > 0 for rate in measured.values())
    assert batching["max_batch"] == choose_max_batch(measured)  # the limit is the one the measurement picks
    assert response.status_code == 200 and len(response.json()["predictions"]) == len(TEXTS)


def test_the_smallest_batch_within_noise_of_the_best_rows_per_s_is_kept():
    from ladc.commands.serve import choose_max_batch

    # batching pays up to 16 rows; 64 adds 3 % (noise), so 16 is kept: its rows wait less
    assert choose_max_batch({1: 900.0, 4: 1500.0, 16: 1700.0, 64: 1750.0}) == 16
    assert choose_max_batch({1: 916.0, 4: 880.0, 16: 870.0, 64: 860.0}) == 1  # batches cost more per row: none
    assert choose_max_batch({1: 100.0, 4: 200.0, 16: 400.0, 64: 1000.0}) == 64
    assert choose_max_batch({1: 899.0, 4: 1000.0}) == 4 and choose_max_batch({1: 900.0, 4: 1000.0}) == 1  # 10 %


def test_the_startup_measurement_times_each_batch_size_on_the_same_rows():
    """A stand-in predictor whose model calls cost 2 ms plus 1 ms per row on a fake clock: rows/s follow exactly."""
    from ladc.commands.serve import CALIBRATION_BATCHES, CALIBRATION_ROWS, measure_batches

    now, calls = [0.0], []

    class Predictor:
        info = {"text_fields": ["question", "sentence"]}

        def logits(self, rows, batch_size):
            calls.append((len(rows), batch_size, rows[0]))
            now[0] += 0.002 + 0.001 * len(rows)  # measure_batches never hands a call more rows than its batch size

    measured = measure_batches(Predictor(), clock=lambda: now[0])
    expected = {
        b: round(CALIBRATION_ROWS / (CALIBRATION_ROWS / b * (0.002 + 0.001 * b)), 1) for b in CALIBRATION_BATCHES
    }
    assert measured == expected  # 1: 333.3 rows/s, 4: 666.7, 16: 888.9, 64: 969.7
    assert calls[0][:2] == (CALIBRATION_ROWS, max(CALIBRATION_BATCHES))  # the warm-up call, at the largest batch
    assert all(len(row) == 2 for *_, row in calls)  # pair tasks get pairs


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/predict", b"{not json", 400, "body is not valid JSON"),
        ("POST", "/predict", b'{"texts": []}', 422, "texts is empty"),
        ("POST", "/predict", b'{"texts": [1]}', 422, "texts[0]: expected a string"),
        ("POST", "/predict", b'{"sentences": ["a"]}', 422, 'expected a JSON object {"texts"'),
        ("POST", "/predict", json.dumps({"texts": ["a"] * 65}).encode(), 413, "65 texts in one request"),
        ("POST", "/predict", json.dumps({"texts": ["a" * 30000]}).encode(), 413, "this server takes at most 20000"),
        ("GET", "/nowhere", None, 404, "Not Found"),
        ("GET", "/predict", None, 405, "Method Not Allowed"),
    ],
)
def test_bad_requests_get_a_one_line_json_error(server, method, path, body, status, message):
    response = httpx.request(method, f"{server.url}{path}", content=body, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == status
    payload = response.json()
    assert list(payload) == ["error"] and message in payload["error"]
    assert "\n" not in payload["error"] and "Traceback" not in response.text
    assert httpx.get(f"{server.url}/health", timeout=REQUEST_TIMEOUT_S).status_code == 200  # still serving


def test_sigterm_finishes_the_request_in_flight_then_exits(model_dir, expected):
    server = Server(model_dir, "--max-wait-ms", "1500")  # the request waits 1.5 s in the batcher: SIGTERM lands there
    result = {}
    client = threading.Thread(target=lambda: result.update(response=_post(server.url, {"texts": TEXTS[:2]})))
    client.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    client.join(timeout=2 * REQUEST_TIMEOUT_S)
    # uvicorn re-raises the captured SIGTERM once its graceful shutdown is done; ladc takes it as the normal stop
    assert server.process.wait(timeout=REQUEST_TIMEOUT_S) == 0, server.process.stderr.read()
    response = result["response"]
    assert response.status_code == 200
    for text, prediction in zip(TEXTS[:2], response.json()["predictions"], strict=True):
        _assert_same(prediction, expected[text])
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=2)


def test_pair_tasks_take_pairs():
    from ladc.commands.serve import RequestError, parse_texts

    assert parse_texts({"texts": [["q?", "s."]]}, ("question", "sentence"), 4) == [("q?", "s.")]
    with pytest.raises(RequestError, match=r"texts\[0\]: expected a pair of strings") as caught:
        parse_texts({"texts": ["q?"]}, ("question", "sentence"), 4)
    assert caught.value.status == 422


def test_cli_refuses_a_busy_port_and_bad_options_in_one_line(model_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(model_dir), "--port", str(port)])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    result = CliRunner().invoke(app, ["serve", str(model_dir), "--max-batch", "0"])
    assert result.exit_code == 2 and "--max-batch must be >= 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
