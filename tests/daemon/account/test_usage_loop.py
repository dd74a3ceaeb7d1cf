"""The samples behind the console's replicas and CPU chart: one row per serving script
per pass, CPU from the replicas' counters between two passes, nothing after stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.account.usage_loop import KEEP_S, UsageSampling
from daemon.config.loader import config_from_mapping
from daemon.serving.replica import STARTING
from daemon.store.database import Store
from tests.daemon.account.test_services import FakeReplica, FakeRunner, target


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


async def test_samples_count_replicas_and_average_cpu_of_the_ready_ones(store: Store) -> None:
    config = config_from_mapping({})
    runner = FakeRunner()
    t = target(store, "busy", 1, 3, config)
    vcpus = t.profile.vcpus
    busy, quiet = FakeReplica("r1"), FakeReplica("r2")
    runner.pools["busy"] = [busy, quiet, FakeReplica("r3", state=STARTING)]  # r3: not measured
    clock = iter([1000.0, 1001.0, 1002.0])
    ticks = iter([50.0, 52.0, 53.0])  # two seconds between the first passes
    sampling = UsageSampling(
        runner, store, 1.0, clock=lambda: next(clock), monotonic=lambda: next(ticks)
    )
    sampling.started(t)
    first = await sampling.sample()
    assert [(s.replicas, s.ready, s.cpu_pct) for s in first] == [(3, 2, None)]  # no baseline
    busy.cpu, quiet.cpu = 2 * 0.5 * vcpus, 2 * 0.25 * vcpus  # half and a quarter of the quota
    second = await sampling.sample()
    assert second[0].cpu_pct == pytest.approx(37.5)
    assert [s.at_ms for s in store.usage_samples(t.script_id, 0)] == [1_000_000, 1_001_000]
    sampling.stopped("busy")
    assert await sampling.sample() == []


async def test_old_samples_are_dropped_as_new_ones_come(store: Store) -> None:
    config = config_from_mapping({})
    runner = FakeRunner()
    t = target(store, "idle", 1, 1, config)
    runner.pools["idle"] = [FakeReplica("r1")]
    clock = iter([0.0, KEEP_S + 1])
    sampling = UsageSampling(runner, store, 1.0, clock=lambda: next(clock))
    sampling.started(t)
    await sampling.sample()
    await sampling.sample()
    assert [s.at_ms for s in store.usage_samples(t.script_id, 0)] == [int((KEEP_S + 1) * 1000)]
