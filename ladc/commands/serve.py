"""`ladc serve`: a compressed classifier behind HTTP (Starlette + uvicorn), with concurrent requests micro-batched.

Endpoints: `POST /predict` ({"texts": [...]} -> labels and probabilities), `GET /health`, `GET /metadata` (task,
labels, artifact, engine, precision, CPU, batching limits, how the batch limit was chosen, and counters).

Batching: the requests that queued while the previous model call ran share the next call, of at most `max_batch` rows
(sorted by length and padded per batch, as in `ladc predict`). By default no request waits for others
(`max_wait_ms` 0): a lone request runs at once, and batches form only under load. Waiting pays only where a batch is
much cheaper per row than single rows: on a 2-core AVX2 VM a 5 ms wait served 1.04x one-at-a-time at concurrency 32 and
less at 1 and 8 (benchmarks/RESULTS.md), so it is opt-in. The batch limit is measured when the server starts: the
model runs the same rows in batches of 1, 4, 16 and 64, and the smallest batch within 10 % of the best rows/s is kept
(a larger one only adds latency); `--max-batch` overrides it.

Errors are one-line JSON (`{"error": "..."}`) with a 4xx status and no traceback; SIGTERM stops accepting, finishes
the requests in flight, then exits with status 0 (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace

from ladc.commands.predict import Predictor
from ladc.errors import LadcError

__all__ = ["ServeConfig", "MicroBatcher", "RequestError", "parse_texts", "measure_batches", "choose_max_batch",
           "build_app", "serve"]  # fmt: skip

log = logging.getLogger("ladc.commands.serve")

CALIBRATION_BATCHES = (1, 4, 16, 64)  # the max batches timed at startup
CALIBRATION_ROWS = 64  # rows each candidate runs, so every candidate does the same work
CALIBRATION_TEXT = "the film was a charming and very funny story about an old city and its people ."  # 16 words
NOISE = 0.10  # rows/s within 10 % of the best count as the best: timing noise on a shared 2-core VM is of that order


@dataclass(frozen=True)
class ServeConfig:
    target: str
    host: str = "127.0.0.1"  # loopback by default: exposing a model to a network is the user's explicit choice
    port: int = 8000
    artifact: str | None = None  # export dir: an artifact name; default the one export --select chose
    task: str | None = None
    max_seq_len: int | None = None
    threads: int | None = None
    max_batch: int | None = None  # rows per model call; None: measured at startup (measure_batches)
    max_wait_ms: float = 0.0  # how long a request waits for others to share its batch; 0: only what already queued
    max_request_rows: int = 256  # texts per request
    max_body_bytes: int = 1_000_000  # request body size
    graceful_shutdown_s: float = 30.0  # on SIGTERM: how long requests in flight get to finish


class RequestError(Exception):
    """A client error: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_texts(payload, fields: tuple[str, ...], max_rows: int) -> list[tuple[str, ...]]:
    """`{"texts": [...]}` -> one tuple of strings per row: strings for one-text tasks, [a, b] pairs for pair tasks.

    Raises:
        RequestError: 422 for a malformed payload, 413 for more than `max_rows` texts.
    """
    pair = len(fields) == 2
    shape = '{"texts": [["first", "second"], ...]}' if pair else '{"texts": ["a text", ...]}'
    if not isinstance(payload, dict) or not isinstance(payload.get("texts"), list):
        raise RequestError(422, f"expected a JSON object {shape}")
    texts = payload["texts"]
    if not texts:
        raise RequestError(422, "texts is empty; send at least one")
    if len(texts) > max_rows:
        raise RequestError(413, f"{len(texts)} texts in one request; this server takes at most {max_rows}")
    rows = []
    for i, item in enumerate(texts):
        row = tuple(item) if pair and isinstance(item, list) else (item,)
        if len(row) != len(fields) or not all(isinstance(text, str) for text in row):
            raise RequestError(422, f"texts[{i}]: expected {'a pair of strings' if pair else 'a string'} ({shape})")
        rows.append(row)
    return rows


class MicroBatcher:
    """Collects concurrent requests into model calls of at most `max_batch` rows, waiting at most `max_wait_ms`.

    The model runs in one worker thread, so the event loop keeps accepting requests while a batch computes.
    """

    def __init__(self, predictor: Predictor, max_batch: int, max_wait_ms: float):
        self.predictor, self.max_batch, self.max_wait_s = predictor, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ladc-model")
        self.stats = {"requests": 0, "rows": 0, "model_calls": 0}

    async def submit(self, rows: list[tuple[str, ...]]) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
        return await future

    async def _gather(self) -> list:
        """The next batch: the oldest request, and whatever arrives before the wait ends or the batch is full."""
        loop = asyncio.get_running_loop()
        pending = [await self.queue.get()]
        size, deadline = len(pending[0][0]), loop.time() + self.max_wait_s
        while size < self.max_batch:
            try:
                pending.append(self.queue.get_nowait())
                size += len(pending[-1][0])
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # polling, not wait_for(queue.get()): a cancelled get may lose an item on older Pythons
                await asyncio.sleep(min(remaining, 0.001))
        return pending

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._gather()
            rows = [row for request_rows, _ in pending for row in request_rows]
            try:
                logits = await loop.run_in_executor(self.executor, self.predictor.logits, rows, self.max_batch)
                outputs = self.predictor.outputs(logits)
            except Exception as exc:  # a model failure fails these requests (500), not the server
                log.exception("model call failed")
                for _, future in pending:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.stats["requests"] += len(pending)
            self.stats["rows"] += len(rows)
            self.stats["model_calls"] += -(-len(rows) // self.max_batch)
            offset = 0
            for request_rows, future in pending:
                if not future.done():  # the client may have gone away
                    future.set_result(outputs[offset : offset + len(request_rows)])
                offset += len(request_rows)


def measure_batches(predictor: Predictor, clock=time.perf_counter) -> dict[int, float]:
    """Rows/s of `predictor` on CALIBRATION_ROWS copies of a 16-word text, run in model calls of each
    CALIBRATION_BATCHES size (tokenizing per call, as the server does); best of two passes after a warm-up call."""
    rows = [(CALIBRATION_TEXT,) * len(predictor.info["text_fields"])] * CALIBRATION_ROWS
    predictor.logits(rows, max(CALIBRATION_BATCHES))  # warm-up: the largest shape (onnxruntime's arena grows once)
    measured = {}
    for batch in CALIBRATION_BATCHES:
        seconds = []
        for _ in range(2):
            started = clock()
            for start in range(0, CALIBRATION_ROWS, batch):
                predictor.logits(rows[start : start + batch], batch)
            seconds.append(clock() - started)
        measured[batch] = round(CALIBRATION_ROWS / max(min(seconds), 1e-9), 1)
    return measured


def choose_max_batch(rows_per_s: dict[int, float]) -> int:
    """The smallest batch whose rows/s is within NOISE of the best: a larger one makes every row of a batch wait for
    the whole batch without serving more rows."""
    best = max(rows_per_s.values())
    return min(batch for batch, rate in rows_per_s.items() if rate >= (1 - NOISE) * best)


def _batch_limit(cfg: ServeConfig, predictor: Predictor) -> tuple[int, dict]:
    """(max batch, what /metadata says about where it came from)."""
    if cfg.max_batch is not None:
        return cfg.max_batch, {"max_batch_from": "--max-batch"}
    measured = measure_batches(predictor)
    return choose_max_batch(measured), {
        "max_batch_from": f"measured at startup: the smallest batch within {NOISE:.0%} of the best rows/s",
        "measured_rows_per_s": {str(batch): rate for batch, rate in measured.items()},
    }


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {declared} bytes; this server takes at most {limit}")
    body = bytearray()
    async for chunk in request.stream():  # a body without content-length is counted as it arrives
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"request body over {limit} bytes; this server takes at most {limit}")
    return bytes(body)


def build_app(predictor: Predictor, cfg: ServeConfig, batch_source: dict | None = None):
    """The Starlette app: routes, one-line JSON errors, and the batcher started and stopped with the app.

    `cfg.max_batch` is set (serve resolves it first); `batch_source` says where it came from, for /metadata.
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ladc.runs.hardware import cpu_flags, cpu_model

    batcher_box: dict = {}
    fields = tuple(predictor.info["text_fields"])

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

    async def predict(request):
        try:
            body = await _read_body(request, cfg.max_body_bytes)
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(400, f"body is not valid JSON ({exc})") from None
            rows = parse_texts(payload, fields, cfg.max_request_rows)
        except RequestError as exc:
            return error(exc.status, str(exc))
        outputs = await batcher_box["batcher"].submit(rows)
        return JSONResponse({"predictions": outputs, "artifact": predictor.info["artifact"]})

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def metadata(request):
        info = {k: v for k, v in predictor.info.items() if k != "settings"}
        limits = {"max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms, "max_request_rows": cfg.max_request_rows,
                  "max_body_bytes": cfg.max_body_bytes, **(batch_source or {})}  # fmt: skip
        stats = dict(batcher_box["batcher"].stats)
        return JSONResponse({**info, "engine_settings": predictor.info.get("settings"), "batching": limits,
                             "stats": stats, "cpu": cpu_model(), "cpu_flags": cpu_flags()})  # fmt: skip

    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, exc.detail)

    async def server_error(request, exc: Exception):
        log.error("request failed: %s: %s", type(exc).__name__, exc)
        return error(500, f"internal error ({type(exc).__name__}); see the server log")

    @asynccontextmanager
    async def lifespan(app):
        batcher = batcher_box["batcher"] = MicroBatcher(predictor, cfg.max_batch, cfg.max_wait_ms)
        task = asyncio.create_task(batcher.run())
        try:
            yield
        finally:  # uvicorn runs this after the requests in flight have finished
            task.cancel()
            batcher.executor.shutdown(wait=True)

    routes = [Route("/predict", predict, methods=["POST"]), Route("/health", health, methods=["GET"]),
              Route("/metadata", metadata, methods=["GET"])]  # fmt: skip
    handlers = {HTTPException: http_error, Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def _check_config(cfg: ServeConfig) -> None:
    if not 0 < cfg.port < 65536:
        raise LadcError(f"--port {cfg.port}: expected 1..65535")
    for name in ("max_batch", "max_request_rows", "max_body_bytes"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise LadcError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.max_wait_ms < 0:
        raise LadcError(f"--max-wait-ms must be >= 0, got {cfg.max_wait_ms}")
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((cfg.host, cfg.port))
        except OSError as exc:
            raise LadcError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None


def serve(cfg: ServeConfig, echo=print) -> None:
    """Open the target, then serve it until SIGTERM or Ctrl-C.

    Raises:
        LadcError: bad options, a port that cannot be bound, a target that cannot be opened.
    """
    from ladc.commands.predict import open_predictor

    _check_config(cfg)
    try:
        import uvicorn
    except ImportError:
        raise LadcError("ladc serve needs starlette and uvicorn: pip install 'ladc[serve]'") from None
    predictor = open_predictor(cfg.target, cfg.artifact, cfg.task, cfg.max_seq_len, cfg.threads)
    max_batch, batch_source = _batch_limit(cfg, predictor)
    cfg = replace(cfg, max_batch=max_batch)
    app = build_app(predictor, cfg, batch_source)
    info = predictor.info
    how = batch_source["max_batch_from"].split(":")[0]  # --max-batch, or measured at startup
    echo(f"serving {cfg.target} ({info['artifact']}, {info['engine']}, {info['precision']}) on "
         f"http://{cfg.host}:{cfg.port} (POST /predict, GET /health, GET /metadata); max batch {max_batch} ({how}), "
         f"max wait {cfg.max_wait_ms:g} ms")  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                                           timeout_graceful_shutdown=cfg.graceful_shutdown_s))  # fmt: skip
    with _sigterm_stops(server):
        server.run()


@contextmanager
def _sigterm_stops(server):
    """SIGTERM is a normal stop: uvicorn shuts down gracefully, then raises the signal again once it has restored the
    handler it found (so a process killed by SIGTERM exits -15 by convention). The handler it finds is this one, which
    stops the server, so the process exits 0; a SIGTERM before uvicorn installs its own handler stops it as well."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def stop(signum, frame) -> None:
        server.should_exit = True

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
