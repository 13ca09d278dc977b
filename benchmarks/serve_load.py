"""`ladc serve` under load: requests/s and p50/p99 latency at concurrency 1, 8 and 32, for each server configuration
of the same artifact, counting every failed request:
- `default`: ladc serve's defaults (no wait; the batch limit measured at startup, reported in /metadata);
- `one-at-a-time`: `--max-batch 1 --max-wait-ms 0`, the baseline;
- `wait-5ms`: `--max-batch 32 --max-wait-ms 5`, the micro-batching ladc served by default before.

Each configuration starts its own server process on a free 127.0.0.1 port, warms it up, then sends `--requests`
single-sentence requests (real SST-2 dev sentences, cycled) from N client threads. Record the table in
benchmarks/RESULTS.md with command, machine and date, and each server's `batching` (what the default chose).

Usage (repo root; nothing else running):
    python benchmarks/serve_load.py runs/demo/onnx --sentences ladc/demo_data/SST-2/dev.tsv \
        --concurrency 1,8,32 --requests 400 --output benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

SERVERS = {
    "default": [],
    "one-at-a-time": ["--max-batch", "1", "--max-wait-ms", "0"],
    "wait-5ms": ["--max-batch", "32", "--max-wait-ms", "5"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="what `ladc serve` serves (an export dir: its chosen artifact)")
    parser.add_argument("--sentences", default="../shared/glue/SST-2/dev.tsv", help="TSV with a sentence column")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per configuration")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"which of {', '.join(SERVERS)}, in order")
    parser.add_argument("--server-args", default="", help="extra `ladc serve` flags for the default server")
    parser.add_argument("--output", default="benchmarks/results/serve_load.json")
    return parser.parse_args(argv)


def _sentences(path: str) -> list[str]:
    lines = Path(path).read_text().splitlines()
    column = lines[0].split("\t").index("sentence")
    return [line.split("\t")[column] for line in lines[1:] if line.strip()]


def _start(target: str, flags: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "ladc", "serve", target, "--port", str(port), *flags]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            if process.poll() is not None:
                raise SystemExit(f"server exited: {process.stderr.read()}") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start within 120 s")


def _load(url: str, sentences: list[str], clients: int, requests: int) -> dict:
    """`requests` POSTs from `clients` threads (each a keep-alive connection); latency per request in ms."""
    latencies, errors, lock = [], [0], threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            for i in counter:
                started = time.perf_counter()
                try:
                    ok = http.post(f"{url}/predict", json={"texts": [sentences[i % len(sentences)]]}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed_ms = (time.perf_counter() - started) * 1000
                with lock:
                    (latencies.append(elapsed_ms) if ok else errors.__setitem__(0, errors[0] + 1))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - started
    return {"concurrency": clients, "requests": requests, "errors": errors[0], "requests_per_s": round(len(latencies) /
            wall_s, 2), "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sentences = _sentences(args.sentences)
    names = args.servers.split(",")
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server {', '.join(unknown)}; expected some of {', '.join(SERVERS)}")
    rows, servers = [], {}
    for name in names:
        flags = [*SERVERS[name], *(args.server_args.split() if name == "default" else [])]
        process, url = _start(args.target, flags)
        try:
            metadata = httpx.get(f"{url}/metadata", timeout=10).json()
            servers[name] = {"flags": flags, "batching": metadata.get("batching")}
            print(json.dumps({"server": name, "batching": metadata.get("batching")}))
            _load(url, sentences, 1, args.warmup)
            for clients in (int(c) for c in args.concurrency.split(",")):
                row = {"server": name, **_load(url, sentences, clients, args.requests)}
                print(json.dumps(row))
                rows.append(row)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    result = {"command": " ".join(sys.argv), "target": args.target, "artifact": metadata.get("artifact"),
              "engine": metadata.get("engine"), "cpu": metadata.get("cpu"), "cpu_flags": metadata.get("cpu_flags"),
              "date": time.strftime("%Y-%m-%d"), "servers": servers, "rows": rows}  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
