"""The autoscaler's decision, table by table, and its loop against fake counters."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.account.scaling_rules import (
    Autoscaler,
    Decision,
    Measurement,
    Policy,
    QueueSample,
    ReplicaSample,
    ScalerState,
    decide,
)

POLICY = Policy(min_replicas=1, max_replicas=5, target=0.75, stabilisation_s=300.0)


def run(policy: Policy, replicas: int, ticks: list[tuple[float, float]], tick_s: float = 2.0):
    """Feed (seconds, utilization of every ready replica) ticks; the count follows decisions."""
    state, out = ScalerState(), []
    for i, (at, util) in enumerate(ticks):
        m = Measurement(
            at=at if at >= 0 else i * tick_s, replicas=replicas, utilizations=(util,) * replicas
        )
        d, state = decide(m, state, policy)
        out.append((d.desired, d.reason))
        replicas = d.desired
    return out


@pytest.mark.parametrize(
    ("name", "replicas", "utils", "expected"),
    [
        ("steady at target", 2, [0.75] * 4, [(2, "hold")] * 4),
        ("inside tolerance up", 2, [0.82] * 3, [(2, "hold")] * 3),
        ("inside tolerance down", 2, [0.68] * 3, [(2, "hold")] * 3),
        (
            "spike scales up at once, tick after tick",
            1,
            [1.0, 1.0, 1.0, 1.0],
            [(2, "cpu"), (3, "cpu"), (4, "cpu"), (5, "cpu")],
        ),
        ("spike past max holds at max", 5, [1.0, 1.0], [(5, "at-max"), (5, "at-max")]),
        (
            "drop is held by the window",
            4,
            [0.75, 0.1, 0.1, 0.0],
            [(4, "hold")] + [(4, "stabilising")] * 3,
        ),
    ],
)
def test_tables(name, replicas, utils, expected) -> None:
    assert run(POLICY, replicas, [(-1, u) for u in utils]) == expected, name


def test_ceil_of_current_times_ratio() -> None:
    m = Measurement(at=0, replicas=3, utilizations=(0.9, 1.0, 1.1))
    d, _ = decide(m, ScalerState(), POLICY)
    assert (d.desired, d.reason, d.utilization) == (4, "cpu", pytest.approx(1.0))


def test_min_equals_max_never_scales() -> None:
    fixed = Policy(min_replicas=3, max_replicas=3, target=0.75)
    for util, wait in [(1.0, 0.0), (0.0, 0.0), (1.0, 60.0), (0.5, 0.0)]:
        m = Measurement(at=0, replicas=3, utilizations=(util,) * 3, queue_wait_s=wait, queued=50)
        d, _ = decide(m, ScalerState(), fixed)
        assert (d.desired, d.reason, d.scales) == (3, "fixed", False)


@pytest.mark.parametrize(("replicas", "desired"), [(0, 1), (7, 5)])
def test_out_of_bounds_is_clamped_first(replicas: int, desired: int) -> None:
    m = Measurement(at=0, replicas=replicas, utilizations=(0.75,) * replicas)
    d, _ = decide(m, ScalerState(), POLICY)
    assert (d.desired, d.reason) == (desired, "bounds")


def test_flapping_load_never_scales_down_inside_the_window() -> None:
    ticks = [(i * 2.0, 1.0 if i % 2 else 0.2) for i in range(150)]  # 300 s of on/off
    out = run(POLICY, 2, ticks)
    desired = [d for d, _ in out]
    assert all(b >= a for a, b in itertools.pairwise(desired)), "went down"
    assert {r for _, r in out} <= {"cpu", "stabilising", "hold", "at-max"}


def test_window_expiry_with_a_fake_clock() -> None:
    state = ScalerState()
    d, state = decide(Measurement(0.0, 4, (0.75,) * 4), state, POLICY)
    assert d.reason == "hold"  # recommends 4 at t=0
    for at in (2.0, 150.0, 299.9):
        d, state = decide(Measurement(at, 4, (0.1,) * 4), state, POLICY)
        assert (d.desired, d.reason, d.recommendation) == (4, "stabilising", 1)
    d, state = decide(Measurement(300.0, 4, (0.1,) * 4), state, POLICY)
    assert (d.desired, d.reason) == (1, "cpu")


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    state = ScalerState()
    _, state = decide(Measurement(0.0, 4, (0.75,) * 4), state, POLICY)  # rec 4
    _, state = decide(Measurement(100.0, 4, (0.4,) * 4), state, POLICY)  # rec 3
    d, state = decide(Measurement(301.0, 4, (0.1,) * 4), state, POLICY)  # rec 1, window max 3
    assert (d.desired, d.reason) == (3, "cpu")


@pytest.mark.parametrize(
    ("m", "desired", "reason"),
    [
        # CPU looks idle (an I/O-bound script), calls wait 3 s: as many replicas as calls.
        (Measurement(0, 1, (0.1,), queue_wait_s=3.0, queued=3, in_flight=1), 4, "queue"),
        # Demand past max: max.
        (Measurement(0, 2, (0.2, 0.2), queue_wait_s=3.0, queued=30, in_flight=2), 5, "queue"),
        # Two workers per replica halve what the queue asks for.
        (
            Measurement(
                0, 1, (0.3,), queue_wait_s=3.0, queued=4, in_flight=2, workers_per_replica=2
            ),
            3,
            "queue",
        ),
        # Waits but the demand fits: still at least one more.
        (Measurement(0, 2, (0.3, 0.3), queue_wait_s=3.0, queued=0, in_flight=1), 3, "queue"),
        # Waits under the threshold: the CPU signal alone decides.
        (Measurement(0, 1, (0.75,), queue_wait_s=0.5, queued=9, in_flight=1), 1, "hold"),
        # CPU asks for more than the queue: reason cpu.
        (Measurement(0, 1, (3.0,), queue_wait_s=3.0, queued=1, in_flight=1), 4, "cpu"),
        # Replicas still starting: the queue is not pushed one more per tick...
        (Measurement(0, 3, (1.0,), ready=1, queue_wait_s=3.0, queued=1, in_flight=1), 3, "warming"),
        # ...unless the demand is larger than what is coming.
        (Measurement(0, 3, (1.0,), ready=1, queue_wait_s=3.0, queued=4, in_flight=1), 5, "queue"),
        # Nothing ready yet: nothing to measure...
        (Measurement(0, 2, (), ready=0), 2, "warming"),
        # ...but calls piling up behind a cold start ask for what they need.
        (Measurement(0, 1, (), ready=0, queue_wait_s=3.0, queued=3), 3, "queue"),
    ],
)
def test_queue_signal(m: Measurement, desired: int, reason: str) -> None:
    d, _ = decide(m, ScalerState(), POLICY)
    assert (d.desired, d.reason) == (desired, reason)


def test_decision_event_carries_the_inputs() -> None:
    m = Measurement(at=0, replicas=1, utilizations=(0.9,), queue_wait_s=0.25, queued=2)
    d, _ = decide(m, ScalerState(), POLICY)
    assert d.to_event() == {
        "from": 1,
        "to": 2,
        "reason": "cpu",
        "utilization_pct": 90.0,
        "target_pct": 75.0,
        "queue_wait_s": 0.25,
        "queued": 2,
        "in_flight": 0,
        "recommendation": 2,
    }


class FakePool:
    """Replicas that each burn `burn` of their quota; set_replicas adds ready ones."""

    def __init__(self, n: int, vcpus: float, burn: float) -> None:
        self.vcpus, self.burn, self.now = vcpus, burn, 0.0
        self.cpu: dict[str, float] = {f"r{i}": 0.0 for i in range(n)}
        self.events: list[Decision] = []

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for rid in self.cpu:
            self.cpu[rid] += seconds * self.vcpus * self.burn

    async def usage(self) -> Mapping[str, ReplicaSample]:
        return {rid: ReplicaSample(cpu, ready=True) for rid, cpu in self.cpu.items()}

    async def queue(self) -> QueueSample:
        return QueueSample()

    async def set_replicas(self, n: int) -> None:
        while len(self.cpu) < n:
            self.cpu[f"r{len(self.cpu)}"] = 0.0
        while len(self.cpu) > n:
            self.cpu.popitem()

    async def record(self, d: Decision) -> None:
        self.events.append(d)


def scaler(pool: FakePool, policy: Policy = POLICY) -> Autoscaler:
    return Autoscaler(
        policy,
        pool.vcpus,
        1,
        pool.usage,
        pool.queue,
        pool.set_replicas,
        pool.record,
        tick_s=2.0,
        clock=lambda: pool.now,
    )


async def test_loop_turns_cgroup_counters_into_utilization() -> None:
    pool = FakePool(2, vcpus=0.7, burn=1.0)
    a = scaler(pool)
    assert await a.step() is None  # the baseline
    pool.advance(2.0)
    d = await a.step()
    assert d is not None and d.utilization == pytest.approx(1.0)
    assert (d.current, d.desired, d.reason) == (2, 3, "cpu")
    assert len(pool.cpu) == 3 and [e.desired for e in pool.events] == [3]
    pool.advance(2.0)  # the new replica has no baseline yet: averaged over the two others
    d = await a.step()
    assert d is not None and d.utilization == pytest.approx(1.0) and d.desired == 4


async def test_loop_scales_down_after_the_window_only() -> None:
    pool = FakePool(3, vcpus=1.5, burn=0.05)
    a = scaler(pool, Policy(1, 5, 0.75, stabilisation_s=10.0))
    await a.step()  # t=0: the window starts with the 3 replicas we have
    for _ in range(4):  # t=2..8
        pool.advance(2.0)
        d = await a.step()
        assert d is not None and d.reason == "stabilising" and len(pool.cpu) == 3
    pool.advance(2.0)  # t=10: the t=0 recommendation is out of the window
    d = await a.step()
    assert d is not None and (d.desired, d.reason) == (1, "cpu") and len(pool.cpu) == 1
    assert pool.events[-1].to_event()["from"] == 3


async def test_run_survives_a_failing_tick_and_stops_on_cancel() -> None:
    calls = 0

    async def usage() -> Mapping[str, ReplicaSample]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("cgroup gone")
        return {}

    pool = FakePool(0, 1.0, 0.0)
    a = Autoscaler(POLICY, 1.0, 1, usage, pool.queue, pool.set_replicas, pool.record, tick_s=0.01)
    task = asyncio.create_task(a.run())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls > 2


async def test_loop_passes_the_queue_signal() -> None:
    pool = FakePool(1, vcpus=0.7, burn=0.1)
    waits = [QueueSample(), QueueSample(max_wait_s=4.0, queued=5, in_flight=1)]

    async def queue() -> QueueSample:
        return waits.pop(0)

    a = Autoscaler(POLICY, 0.7, 1, pool.usage, queue, pool.set_replicas, pool.record,
                   clock=lambda: pool.now)  # fmt: skip
    await a.step()
    pool.advance(2.0)
    d = await a.step()
    assert d is not None and (d.desired, d.reason) == (5, "queue") and len(pool.cpu) == 5
    assert pool.events[0].to_event()["queue_wait_s"] == 4.0


@given(
    bounds=st.tuples(st.integers(1, 10), st.integers(1, 10)).map(sorted),
    target=st.integers(1, 100),
    ticks=st.lists(
        st.tuples(st.floats(0, 2), st.floats(0, 10), st.integers(0, 50)), min_size=1, max_size=30
    ),
)
def test_invariants(bounds: list[int], target: int, ticks: list[tuple[float, float, int]]) -> None:
    """Whatever comes in: stays in bounds, min = max never moves, down only on cpu."""
    policy = Policy.from_percent(bounds[0], bounds[1], target, stabilisation_s=10.0)
    replicas, state = bounds[0], ScalerState()
    for i, (util, wait, queued) in enumerate(ticks):
        m = Measurement(i * 2.0, replicas, (util,) * replicas, queue_wait_s=wait, queued=queued)
        d, state = decide(m, state, policy)
        assert policy.min_replicas <= d.desired <= policy.max_replicas
        assert not (policy.fixed and d.scales)
        assert d.desired >= replicas or d.reason == "cpu"
        replicas = d.desired
