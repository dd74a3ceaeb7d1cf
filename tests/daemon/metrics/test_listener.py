"""The metrics listener on a free loopback port: the instruments and the registered
readings in one scrape, parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.metrics.calls import call_families, observe_call, set_counting
from daemon.metrics.listener import MetricsListener
from daemon.metrics.readings import AsyncQueueReading, Readings, StoreReading
from tests.helpers import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as reply,
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        return await reply.text()


async def test_a_scrape_has_the_counts_and_the_readings() -> None:
    readings = Readings()
    readings.replicas = lambda: {("lst", "ready"): 2, ("lst", "starting"): 1}
    readings.queued_calls = lambda: {"lst": 4}
    readings.store = lambda: StoreReading(12.5, 100.0, 3, 4096)
    listener = MetricsListener(readings)
    port = free_port()
    await listener.start("127.0.0.1", port)
    try:
        observe_call("lst", "f", "ok", 2.0, 30.0)
        observe_call("lst", "f", "ok", 1.0, 10.0)
        observe_call("lst", "(unknown)", "rejected", None, None)
        got = samples(await scrape(port))
        assert got[("scriptd_calls_total", (("function", "f"), ("script", "lst"),
                                            ("status", "ok")))] == 2  # fmt: skip
        assert got[("scriptd_call_duration_seconds_count", (("script", "lst"),))] == 2
        assert got[("scriptd_call_duration_seconds_sum", (("script", "lst"),))] == 0.04
        assert got[("scriptd_call_queue_wait_seconds_count", (("script", "lst"),))] == 2
        assert got[("scriptd_replicas", (("script", "lst"), ("state", "ready")))] == 2
        assert got[("scriptd_queued_calls", (("script", "lst"),))] == 4
        assert got[("scriptd_credits_balance", ())] == 12.5
        assert got[("scriptd_outbox_backlog", ())] == 3
        assert got[("scriptd_async_queue_depth", ())] == 0  # nobody registered a queue

        readings.async_queue = lambda: AsyncQueueReading(7, 12.5)
        got = samples(await scrape(port))
        assert got[("scriptd_async_queue_depth", ())] == 7
        assert got[("scriptd_async_queue_oldest_age_seconds", ())] == 12.5
    finally:
        await listener.close()


async def test_a_reading_that_fails_leaves_the_others() -> None:
    readings = Readings()

    def broken() -> dict[tuple[str, str], int]:
        raise RuntimeError("gone")

    readings.replicas = broken
    readings.queued_calls = lambda: {"brk": 1}
    listener = MetricsListener(readings)
    port = free_port()
    await listener.start("127.0.0.1", port)
    try:
        got = samples(await scrape(port))
        assert got[("scriptd_queued_calls", (("script", "brk"),))] == 1
        assert not any(name == "scriptd_replicas" for name, _ in got)
    finally:
        await listener.close()


async def test_a_taken_port_is_a_clear_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OSError, match=r"metrics\.listen"):
            await MetricsListener(Readings()).start("127.0.0.1", port)
    finally:
        server.close()
        await server.wait_closed()


def count(script: str, function: str, status: str) -> float:
    calls = call_families()[0]
    wanted = {"script": script, "function": function, "status": status}
    return next((s.value for s in calls.samples if s.labels == wanted), 0.0)


def test_counting_off_counts_nothing() -> None:
    before = count("off", "f", "ok")
    set_counting(False)
    try:
        observe_call("off", "f", "ok", 1.0, 1.0)
    finally:
        set_counting(True)
    assert count("off", "f", "ok") == before
    observe_call("off", "f", "ok", 1.0, 1.0)
    assert count("off", "f", "ok") == before + 1


def test_histograms_are_cumulative_with_le_as_an_upper_bound() -> None:
    observe_call("hst", "f", "ok", 0.1, 1.0)  # 1 ms: in le="0.001", not below
    observe_call("hst", "f", "ok", 0.1, 700_000.0)  # past the last bound: +Inf only
    observe_call("hst", "f", "rejected", None, None)  # refused: counted, no times
    duration = call_families()[1]
    got = {s.name + s.labels.get("le", ""): s.value for s in duration.samples
           if s.labels.get("script") == "hst"}  # fmt: skip
    assert got["scriptd_call_duration_seconds_bucket0.0025"] == 1
    assert got["scriptd_call_duration_seconds_bucket0.001"] == 1
    assert got["scriptd_call_duration_seconds_bucket600.0"] == 1
    assert got["scriptd_call_duration_seconds_bucket+Inf"] == 2
    assert got["scriptd_call_duration_seconds_count"] == 2
    assert got["scriptd_call_duration_seconds_sum"] == 700.001
    assert count("hst", "f", "rejected") == 1
