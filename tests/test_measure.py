"""Tests for ladc/measure.py with a fake clock: scheduling, stopping rules and pauses, without any real time."""

from __future__ import annotations

import pytest

from ladc.measure import MIN_ROUNDS, time_interleaved, time_isolated, time_rounds, time_targets


class FakeClock:
    """A clock that only moves when a timed call runs: target t's call advances it by `costs_s[t]`."""

    def __init__(self, costs_s: list[float]):
        self.now_s = 0.0
        self.costs_s = costs_s
        self.log: list[tuple[int, int]] = []  # (target, k) in call order

    def __call__(self) -> float:
        return self.now_s

    def calls(self) -> list:
        def make(target: int):
            def call(k: int) -> None:
                self.log.append((target, k))
                self.now_s += self.costs_s[target]

            return call

        return [make(t) for t in range(len(self.costs_s))]


def test_interleaved_min_duration_gives_each_target_its_own_duration():
    clock = FakeClock([0.004, 0.001])
    latencies = time_interleaved(clock.calls(), warmup=0, iterations=2, min_duration_s=0.02, block=2, clock=clock)
    # 4 ms target: 20 ms after 5 runs, rounded up to whole blocks of 2 -> 6; the 1 ms target needs exactly 20
    assert latencies[0] == pytest.approx([4.0] * 6)
    assert latencies[1] == pytest.approx([1.0] * 20)
    # round-robin in blocks of 2 until the slow target leaves the rotation after its third block
    assert clock.log[:8] == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert [t for t, _ in clock.log[12:]] == [1] * 14


def test_interleaved_iterations_are_a_minimum_when_a_duration_is_also_set():
    clock = FakeClock([0.010, 0.010])
    latencies = time_interleaved(clock.calls(), warmup=1, iterations=6, min_duration_s=0.001, block=4, clock=clock)
    assert [len(lat) for lat in latencies] == [8, 8]  # 6 runs asked, whole blocks of 4 -> 8
    assert clock.log[:2] == [(0, 0), (1, 0)]  # warm-up, round-robin and untimed
    assert latencies[0] == pytest.approx([10.0] * 8)


def test_interleaved_iterations_only_stop_exactly():
    clock = FakeClock([0.002, 0.003, 0.005])
    latencies = time_interleaved(clock.calls(), warmup=2, iterations=7, block=3, clock=clock)
    assert [lat for lat in latencies] == [pytest.approx([2.0] * 7), pytest.approx([3.0] * 7), pytest.approx([5.0] * 7)]
    timed = clock.log[6:]
    assert timed[:9] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert timed[-3:] == [(0, 6), (1, 6), (2, 6)]  # the last turn runs only the one missing iteration


def test_isolated_runs_one_target_at_a_time_after_a_pause():
    clock = FakeClock([0.004, 0.001])
    pauses: list[tuple[float, int]] = []
    latencies = time_isolated(
        clock.calls(), warmup=1, iterations=3, min_duration_s=0.01, clock=clock,
        pause=lambda s: pauses.append((s, len(clock.log))), pause_s=0.25,
    )  # fmt: skip
    assert latencies[0] == pytest.approx([4.0] * 3)  # 3 runs = 12 ms: both minima met
    assert latencies[1] == pytest.approx([1.0] * 10)  # 3 runs are not 10 ms: runs until 10 ms
    assert clock.log == [(0, 0), (0, 0), (0, 1), (0, 2), (1, 0), *[(1, k) for k in range(10)]]
    assert pauses == [(0.25, 0), (0.25, 4)]  # before each target's warm-up, not between its iterations


def test_isolated_latencies_come_from_the_clock_around_each_call():
    costs = iter([0.001, 0.002, 0.003])
    now = [0.0]

    def call(k: int) -> None:
        now[0] += next(costs)

    latencies = time_isolated([call], warmup=0, iterations=3, clock=lambda: now[0], pause=lambda s: None)
    assert latencies == [pytest.approx([1.0, 2.0, 3.0])]


def test_time_targets_dispatches_by_isolation_mode():
    interleaved = FakeClock([0.001, 0.001])
    time_targets(interleaved.calls(), "interleaved", warmup=0, iterations=2, block=1, clock=interleaved)
    assert interleaved.log == [(0, 0), (1, 0), (0, 1), (1, 1)]
    isolated = FakeClock([0.0, 0.0])
    time_targets(isolated.calls(), "isolated", warmup=0, iterations=2, clock=isolated)
    assert isolated.log == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with pytest.raises(ValueError, match="isolation 'parallel'"):
        time_targets(isolated.calls(), "parallel", warmup=0, iterations=1)


@pytest.mark.parametrize("timer", [time_interleaved, time_isolated])
def test_timing_needs_iterations_or_a_duration(timer):
    with pytest.raises(ValueError, match="iterations or min_duration_s"):
        timer([lambda k: None], warmup=0, iterations=None)


def test_rounds_give_every_target_one_turn_per_round_and_k_counts_on():
    clock = FakeClock([0.002, 0.003])
    latencies = time_rounds(clock.calls(), warmup=1, rounds=3, block=2, clock=clock)
    assert clock.log[:2] == [(0, 0), (1, 0)]  # warm-up, round-robin and untimed
    timed = clock.log[2:]
    assert timed[:4] == [(0, 0), (0, 1), (1, 0), (1, 1)]  # round 1: a block of 2 per target
    assert timed[4:8] == [(0, 2), (0, 3), (1, 2), (1, 3)]  # round 2: k counts on, so cycled feeds keep cycling
    assert latencies == [[pytest.approx([2.0, 2.0])] * 3, [pytest.approx([3.0, 3.0])] * 3]


def test_a_turn_ends_after_turn_s_and_a_slow_target_leaves_after_its_minimum_rounds():
    clock = FakeClock([0.001, 0.2, 0.5])
    latencies = time_rounds(clock.calls(), warmup=0, rounds=6, block=3, turn_s=0.25, max_duration_s=1.0, clock=clock)
    assert [len(turn) for turn in latencies[0]] == [3] * 6  # fast: full blocks, every round
    assert [len(turn) for turn in latencies[1]] == [2] * 3  # 0.4 s per turn: 1.2 s after 3 rounds, then it leaves
    # 0.5 s: one run per turn; 1.0 s after 2 rounds, but an interval needs MIN_ROUNDS rounds
    assert [len(turn) for turn in latencies[2]] == [1] * MIN_ROUNDS
    assert [t for t, _ in clock.log[-9:]] == [0] * 9  # rounds 4-6: the fast target alone
    with pytest.raises(ValueError, match="rounds >= 1 and block >= 1"):
        time_rounds(clock.calls(), warmup=0, rounds=0, block=1)
