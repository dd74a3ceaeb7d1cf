"""The wiring of autoscaling, credits and notifications, with fake replicas and the
real store: config sections, the queue watch, Scaling's autoscaler lifetime and
events, Metering's replica tracking, admission and zero balance, `since` parsing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from daemon.account.autoscaler_loop import QueueWatch, Scaling
from daemon.account.mailer_loop import Notifications
from daemon.account.metering_loop import Metering, now_ms
from daemon.admin.account_routes import parse_since
from daemon.config.account import AccountConfig
from daemon.config.daemon_config import Config
from daemon.config.loader import config_from_mapping
from daemon.core.credits import to_micro
from daemon.core.errors import BadRequest, ConfigError, Conflict
from daemon.core.models import DEPLOYED, Resources, now_iso
from daemon.lifecycle.hooks import CREDITS_ACTOR
from daemon.serving.replica import READY, STARTING
from daemon.serving.target import RunTarget
from daemon.store.database import Store
from tests.daemon.store.test_database import a_script


def test_sections_have_defaults_and_refuse_bad_keys() -> None:
    assert Config().account == AccountConfig()
    c = config_from_mapping({"autoscale": {"tick_s": 0.5}, "credits": {"low_balance": "2.5"}})
    assert c.account.autoscale.tick_s == 0.5 and c.account.credits.low_balance == "2.5"
    assert str(c.account.credits.initial_allocation) == "100"
    with pytest.raises(ConfigError, match=r"notify\.to"):
        config_from_mapping({"notify": {"smtp": {"host": "127.0.0.1"}}})
    with pytest.raises(ConfigError, match=r"autoscale\.tick"):
        config_from_mapping({"autoscale": {"tick": 1}})
    with pytest.raises(ConfigError, match=r"notify\.smtp\.security"):
        config_from_mapping({"notify": {"smtp": {"security": "ssl"}}})


def test_queue_watch_reports_the_longest_unbroken_wait() -> None:
    now, queued = [0.0], [0]
    w = QueueWatch(lambda: queued[0], clock=lambda: now[0])
    w.sample()
    queued[0] = 3
    for _ in range(12):
        now[0] += 0.1
        w.sample()
    assert w.take() == pytest.approx(1.1)
    queued[0] = 0
    now[0] += 0.1
    assert w.take() == 0.0


def test_parse_since() -> None:
    assert parse_since("24h", 100_000.0) == 100_000.0 - 86400
    assert parse_since("30m", 4000.0) == 2200.0
    assert parse_since("2026-11-01T00:00:00Z", 0) == parse_since("2026-11-01", 0)
    with pytest.raises(BadRequest, match="ISO-8601"):
        parse_since("yesterday", 0)


@dataclass
class FakeUsage:
    cpu_seconds: float


@dataclass
class FakeReplica:
    name: str
    state: str = READY
    cpu: float = 0.0
    busy: int = 0
    started_at: float = 0.0
    gone: bool = False
    burn: float = 0.0  # CPU seconds per second, counted from burn_from (monotonic)
    burn_from: float = 0.0
    _gone: asyncio.Event = field(default_factory=asyncio.Event)

    def usage(self) -> FakeUsage:
        # Read at the moment the autoscaler asks, so a late event loop changes nothing.
        burnt = self.burn * (time.monotonic() - self.burn_from) if self.burn else 0.0
        return FakeUsage(self.cpu + burnt)

    async def wait_gone(self) -> None:
        await self._gone.wait()

    def exit(self) -> None:
        self.gone = True
        self._gone.set()


class FakeRunner:
    def __init__(self) -> None:
        self.pools: dict[str, list[FakeReplica]] = {}
        self.scaled: list[tuple[str, int]] = []

    def replicas(self, script: str) -> list[Any]:
        return list(self.pools.get(script, []))

    def scale(self, script: str, n: int) -> None:
        self.scaled.append((script, n))

    def dispatcher(self, script: str) -> None:
        return None


def target(store: Store, name: str, lo: int, hi: int, config: Config) -> RunTarget:
    script = store.get_script(name) or store.insert_script(a_script(name))
    return RunTarget(
        script.id, name, 1, "python", "3.11", "/usr/bin/python3", Path("/s"), Path("/e"),
        Path("/w"), {}, 30, ("f",), lo, hi, 50, config.default_profile,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


async def test_scaling_runs_only_when_min_differs_from_max_and_records_events(
    store: Store,
) -> None:
    config = config_from_mapping({"autoscale": {"tick_s": 0.05}})
    runner = FakeRunner()
    # 75 % of its quota against a 50 % target: 1.5 replicas' worth, so 2. Far enough
    # from 100 % (-> 3) that a tick measured a few ms late or early still says 2.
    busy = FakeReplica(
        "busy-v1-r1", burn=0.75 * config.default_profile.vcpus, burn_from=time.monotonic()
    )
    runner.pools = {"busy": [busy], "flat": [FakeReplica("flat-v1-r1")]}
    scaling = Scaling(runner, store, config.account.autoscale)
    scaling.started(target(store, "busy", 1, 3, config))
    scaling.started(target(store, "flat", 2, 2, config))
    assert scaling.status("flat")["enabled"] is False
    deadline = time.monotonic() + 10
    while not runner.scaled and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a few more ticks: the flat script must still not scale
    await scaling.close()
    assert runner.scaled and runner.scaled[0] == ("busy", 2)
    assert all(s == "busy" for s, _ in runner.scaled)
    [event, *_] = store.recent_events(store.get_script("busy").id, "scaled")  # type: ignore[union-attr]
    assert event.actor == "autoscaler" and event.detail["from"] == 1
    assert event.detail["reason"] == "cpu" and event.detail["utilization_pct"] > 50


class Recorder(Notifications):
    def __init__(self, config: Config, store: Store) -> None:
        super().__init__(config, store)
        self.sent: list[tuple[str, Any]] = []

    async def low_credits(self, scripts: Any, account: Any) -> None:
        self.sent.append(("low_credits", scripts))

    async def credits_exhausted(self, scripts: Any, account: Any) -> None:
        self.sent.append(("credits_exhausted", scripts))


async def test_metering_charges_replicas_until_they_are_gone(store: Store) -> None:
    config = config_from_mapping({"credits": {"meter_interval_s": 0.05}})
    runner = FakeRunner()
    # The wall clock around the launches: r1 was launched 2 s ago, r2 just now.
    launched_lo, mono, launched_hi = now_ms(), time.monotonic(), now_ms()
    r1 = FakeReplica("m-v1-r1", started_at=mono - 2.0)
    r2 = FakeReplica("m-v1-r2", state=STARTING, started_at=mono)
    runner.pools["m"] = [r1, r2]
    m = Metering(config, store, runner, Recorder(config, store))
    settled: list[str] = []
    settle = m.meter.settle

    async def counted(replica: Any, ended_ms: int) -> Any:
        try:
            return await settle(replica, ended_ms)
        finally:
            settled.append(replica.replica_id)

    m.meter.settle = counted  # type: ignore[method-assign]
    await m.open()
    m.started(target(store, "m", 1, 2, config))
    task = asyncio.create_task(m.run())
    await asyncio.sleep(0.2)  # both run a while; the meter charges them meanwhile
    r1_gone = now_ms()
    r1.exit()
    runner.pools["m"] = [r2]
    await asyncio.sleep(0.1)
    m.stopped("m")
    r2_gone = now_ms()
    r2.exit()
    # Wait for both settles with the meter still running: a tick cancelled while its
    # charge is in flight could race the last settle (close() does not wait for one
    # already under way either).
    deadline = time.monotonic() + 10
    while len(settled) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert len(settled) == 2, settled
    end = now_ms()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await m.close()
    # Charged from the launch to the moment each was seen gone: at least until exit(),
    # at most until now (a few ms of slack for the monotonic -> wall-clock conversion).
    least = (r1_gone - (launched_hi - 2000)) + (r2_gone - launched_hi) - 10
    most = (end - (launched_lo - 2000)) + (end - launched_lo) + 10
    [usage] = store.usage_by_script()
    assert usage.replicas == 2 and least <= usage.replica_ms <= most
    spent = to_micro(100) - store.get_account().balance
    assert spent == usage.amount > 0


async def test_admission_and_zero_balance(store: Store) -> None:
    config = config_from_mapping({"credits": {"initial_allocation": 0}})
    notes = Recorder(config, store)
    m = Metering(config, store, FakeRunner(), notes)
    await m.open()
    with pytest.raises(Conflict, match="not enough credits: 2 replicas of 1vcpu-2gb"):
        await m.admit(Resources(2, 2, 75, "1vcpu-2gb"))
    store.set_allocation(to_micro(1), True, now_iso())
    await m.admit(Resources(2, 2, 75, "1vcpu-2gb"))
    for name in ("a", "b"):
        s = store.insert_script(a_script(name))
        store.save_script(replace(s, status=DEPLOYED, current_version=1))
    undeployed: list[str] = []

    async def undeploy(name: str) -> None:
        undeployed.append(name)

    m.undeploy = undeploy
    await m._undeploy_all(store.get_account())
    assert undeployed == ["a", "b"]
    assert [k for k, _ in notes.sent] == ["credits_exhausted"]
    assert [r.name for r in notes.sent[0][1]] == ["a", "b"]
    assert CREDITS_ACTOR.startswith("scriptd")
