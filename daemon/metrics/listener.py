"""The metrics listener: `GET /metrics` in Prometheus' text format, on an address of
its own (`metrics.listen`, 127.0.0.1:9464 by default), apart from the gateway, so
the callers of scripts never reach it and a scrape never queues behind calls.

A scrape reads the in-memory gauges on the event loop (they belong to it), then
reads the store and renders the text in a thread: the loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from daemon.metrics.calls import call_families
from daemon.metrics.instruments import REGISTRY
from daemon.metrics.readings import Families, Readings, Snapshot

log = logging.getLogger(__name__)

__all__ = ["MetricsListener", "render"]

READINGS: web.AppKey[Readings] = web.AppKey("readings", Readings)


def render(readings: Readings, loop_families: Families) -> bytes:
    """The scrape's text: the instruments, then the readings (blocking: the store)."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(Snapshot([*loop_families, *readings.store_families()]))
    return generate_latest(REGISTRY) + generate_latest(scrape)


async def metrics(request: web.Request) -> web.Response:
    readings = request.app[READINGS]
    on_loop = [*call_families(), *readings.loop_families()]  # state the loop writes
    body = await asyncio.to_thread(render, readings, on_loop)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    return web.Response(text="scriptd metrics: GET /metrics\n")


class MetricsListener:
    """`await start(host, port)`, `await close()`."""

    def __init__(self, readings: Readings) -> None:
        app = web.Application()
        app[READINGS] = readings
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/", index)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(
                f"metrics: cannot listen on {host}:{port} (metrics.listen): {exc.strerror or exc}"
            ) from exc
        log.info("metrics on http://%s:%d/metrics", host, port)

    async def close(self) -> None:
        await self._runner.cleanup()
