"""What `ladc bench` and `ladc export --select fastest` share to measure (below both deploy and bench): synthetic
batches, and timing targets isolated (bench's default), interleaved, or in interleaved rounds (`time_rounds`, the
selection's), with an injectable clock so the scheduling is unit-tested without real time.

Why isolation is the default: onnxruntime's intra-op pool (and OpenMP/TBB pools) spin for a while after each run.
Interleaving several engines on 2 cores let one target's spinning pool steal cores from the next: the same INT8 model
measured 4.0 ms alone and 7.8 ms in a group of four. `time_isolated` times one target at a time, each after its own
warm-up and a pause that lets the previous target's pools go idle, so a target's figure in a group equals its figure
alone (benchmarks/RESULTS.md, "bench isolation").
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["ISOLATION_MODES", "synthetic_batch", "time_interleaved", "time_isolated", "time_rounds", "time_targets"]

ISOLATION_MODES = ("isolated", "interleaved")
MIN_RUNS = 3  # timed runs a target gets even past max_duration_s (a median needs a few)
MIN_ROUNDS = 3  # rounds a target gets in time_rounds even past max_duration_s (an interval needs a few)
PAUSE_S = 0.3  # between targets in isolated mode: onnxruntime and OpenMP pools stop spinning well within this


def synthetic_batch(tokenizer, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed-length inputs: [CLS] + ids drawn uniformly from the vocabulary (no special tokens) + [SEP], no padding.

    Returns:
        input_ids, attention_mask (all ones) and, if the tokenizer makes them, token_type_ids (zeros); each
        (batch_size, seq_len) int64.
    """
    special = set(tokenizer.all_special_ids)
    vocab = np.array([i for i in range(len(tokenizer)) if i not in special])
    ids = np.random.default_rng(seed).choice(vocab, size=(batch_size, seq_len)).astype(np.int64)
    if tokenizer.cls_token_id is not None:
        ids[:, 0] = tokenizer.cls_token_id
    if tokenizer.sep_token_id is not None:
        ids[:, -1] = tokenizer.sep_token_id
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in batch.items() if k == "input_ids" or k in tokenizer.model_input_names}


def _finished(count: int, spent_s: float, iterations: int | None, min_duration_s: float | None) -> bool:
    enough_runs = iterations is None or count >= iterations
    return enough_runs and (min_duration_s is None or spent_s >= min_duration_s)


def _check(iterations: int | None, min_duration_s: float | None) -> None:
    if iterations is None and min_duration_s is None:
        raise ValueError("timing needs iterations or min_duration_s")


def time_interleaved(
    calls: list[Callable[[int], object]],
    warmup: int,
    iterations: int | None,
    min_duration_s: float | None = None,
    block: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> list[list[float]]:
    """Time targets round-robin: each round runs `block` iterations of every unfinished target in turn.

    Only fair when no target leaves threads spinning after its call (ORT sessions opened with
    `allow_spinning=False`): otherwise prefer `time_isolated`.

    A target is finished once it has `iterations` timed runs and `min_duration_s` timed seconds (whichever are
    set); it then leaves the rotation, so a slow target is not run for as long as a fast one needs.

    Args:
        calls: per target, `call(k)` runs its k-th iteration to completion (device synchronised).
        warmup: untimed iterations per target, also round-robin.
        iterations: timed iterations per target (a minimum when min_duration_s is also given).
        min_duration_s: timed seconds per target (a minimum when iterations is also given).
        block: iterations per target per turn.
        clock: seconds, monotonic (tests pass a fake clock).

    Returns:
        latencies_ms[t][k] of iteration k of target t.
    """
    _check(iterations, min_duration_s)
    for k in range(warmup):
        for call in calls:
            call(k)
    latencies_ms: list[list[float]] = [[] for _ in calls]
    spent_s = [0.0] * len(calls)
    active = list(range(len(calls)))
    while active:
        for target in active:
            done = len(latencies_ms[target])
            count = block if min_duration_s is not None else min(block, iterations - done)
            for k in range(done, done + count):
                start = clock()
                calls[target](k)
                elapsed = clock() - start
                latencies_ms[target].append(elapsed * 1000.0)
                spent_s[target] += elapsed
        active = [t for t in active if not _finished(len(latencies_ms[t]), spent_s[t], iterations, min_duration_s)]
    return latencies_ms


def time_rounds(
    calls: list[Callable[[int], object]],
    warmup: int,
    rounds: int,
    block: int,
    turn_s: float | None = None,
    max_duration_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[list[list[float]]]:
    """Time targets in interleaved rounds: each round gives every target one turn of up to `block` back-to-back runs.

    The rounds are the unit of repetition: a target's turns in one round run seconds apart from the other targets',
    so drift between rounds (a 2-core VM's 20-50 %) moves every target alike, and per-round figures can be compared
    round by round. Only fair when no target leaves threads spinning after its call (ORT sessions opened with
    `allow_spinning=False`), as in `time_interleaved`.

    Args:
        calls: per target, `call(k)` runs its k-th iteration to completion (k counts on across rounds).
        warmup: untimed iterations per target, round-robin, before the first round.
        rounds: rounds to run.
        block: most runs per target per turn.
        turn_s: a turn also ends once it has taken this many timed seconds (after at least one run), so a slow
            shape gets one run per round instead of `block`.
        max_duration_s: a target leaves the rotation once it has MIN_ROUNDS rounds and this many timed seconds
            (an emulated-bf16 artifact must not hold a selection up for minutes).
        clock: seconds, monotonic (tests pass a fake clock).

    Returns:
        latencies_ms[t][r]: target t's latencies in round r (a target that left early has fewer rounds).
    """
    if rounds < 1 or block < 1:
        raise ValueError(f"time_rounds needs rounds >= 1 and block >= 1, got {rounds} and {block}")
    for k in range(warmup):
        for call in calls:
            call(k)
    latencies_ms: list[list[list[float]]] = [[] for _ in calls]
    spent_s, runs = [0.0] * len(calls), [0] * len(calls)
    for _ in range(rounds):
        for target, call in enumerate(calls):
            if (
                max_duration_s is not None
                and len(latencies_ms[target]) >= MIN_ROUNDS
                and spent_s[target] >= max_duration_s
            ):
                continue
            turn: list[float] = []
            turn_spent_s = 0.0
            while len(turn) < block and not (turn_s is not None and turn and turn_spent_s >= turn_s):
                start = clock()
                call(runs[target])
                elapsed = clock() - start
                turn.append(elapsed * 1000.0)
                turn_spent_s += elapsed
                runs[target] += 1
            spent_s[target] += turn_spent_s
            latencies_ms[target].append(turn)
    return latencies_ms


def time_isolated(
    calls: list[Callable[[int], object]],
    warmup: int,
    iterations: int | None,
    min_duration_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    pause: Callable[[float], None] = time.sleep,
    pause_s: float = PAUSE_S,
    max_duration_s: float | None = None,
) -> list[list[float]]:
    """Time targets one after another: target t runs its warm-up and all its timed iterations before t+1 starts.

    Args:
        calls, warmup, iterations, min_duration_s, clock: as in `time_interleaved`.
        pause: called with `pause_s` before each target's warm-up (lets the previous target's pools go idle).
        pause_s: seconds to pause.
        max_duration_s: stop a target early once it has MIN_RUNS timed runs and this many timed seconds (a slow
            target, e.g. bf16 emulated on a CPU without it, must not hold up a selection for minutes).

    Returns:
        latencies_ms[t][k] of iteration k of target t.
    """
    _check(iterations, min_duration_s)
    latencies_ms: list[list[float]] = []
    for call in calls:
        pause(pause_s)
        for k in range(warmup):
            call(k)
        timed: list[float] = []
        spent_s = 0.0
        while not _finished(len(timed), spent_s, iterations, min_duration_s) and not (
            max_duration_s is not None and spent_s >= max_duration_s and len(timed) >= MIN_RUNS
        ):
            start = clock()
            call(len(timed))
            elapsed = clock() - start
            timed.append(elapsed * 1000.0)
            spent_s += elapsed
        latencies_ms.append(timed)
    return latencies_ms


def time_targets(
    calls: list[Callable[[int], object]],
    isolation: str,
    warmup: int,
    iterations: int | None,
    min_duration_s: float | None = None,
    block: int = 5,
    clock: Callable[[], float] = time.perf_counter,
    pause: Callable[[float], None] = time.sleep,
) -> list[list[float]]:
    """Dispatch to `time_isolated` or `time_interleaved` by `isolation` (one of ISOLATION_MODES)."""
    if isolation == "interleaved":
        return time_interleaved(calls, warmup, iterations, min_duration_s, block, clock)
    if isolation == "isolated":
        return time_isolated(calls, warmup, iterations, min_duration_s, clock, pause)
    raise ValueError(f"isolation {isolation!r} is not one of {ISOLATION_MODES}")
