"""The load and the churn of bench/soak.py: open-loop calls at a fixed rate, and
threads that redeploy, cycle a script through undeploy/deploy, create and delete keys
and call functions that time out or run out of memory. All through public interfaces.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable

import aiohttp

from tests.helpers import AdminClient, GatewayClient, create_key, make_zip

__all__ = ["CallLog", "Churn", "open_loop"]

READY_TO_DEPLOY = frozenset({"Ready to Deploy"})
# Calls of the open loop in flight at most (one connection each); a call due while
# that many wait is counted as not sent rather than queued in this process, whose
# queue would only turn into client timeouts.
MAX_IN_FLIGHT = 64


class CallLog:
    """Answers by kind of call and HTTP status (0: no answer, -1: not sent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[int]] = {}
        self.failures: Counter[str] = Counter()  # why connections failed (status 0)

    def add(self, kind: str, status: int) -> None:
        with self._lock:
            self._counts.setdefault(kind, Counter())[status] += 1

    def failure(self, why: str) -> None:
        with self._lock:
            self.failures[why] += 1

    def answered(self) -> int:
        with self._lock:
            return sum(n for c in self._counts.values() for s, n in c.items() if s > 0)

    def by_status(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {k: {str(s): n for s, n in c.items()} for k, c in self._counts.items()}


def open_loop(base_url: str, key: str, rate: float, seconds: float, log: CallLog) -> None:
    """One call every 1/rate s whatever the answers do; every tenth one raises."""
    if not base_url.startswith("http://127."):
        raise ValueError(f"refusing to load a non-loopback address: {base_url}")
    asyncio.run(_open_loop(base_url, key, rate, seconds, log))


async def _open_loop(base_url: str, key: str, rate: float, seconds: float, log: CallLog) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    pending: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(function: str) -> None:
            try:
                async with session.post(base_url + function, data=b"{}", headers=headers) as r:
                    await r.read()
                    log.add(f"soak.{function}", r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.add(f"soak.{function}", 0)
                log.failure(type(exc).__name__)

        end = time.monotonic() + seconds
        next_at = time.monotonic()
        for n in itertools.count():
            if time.monotonic() >= end:
                break
            function = "fail" if n % 10 == 9 else "ok"
            if len(pending) >= MAX_IN_FLIGHT:  # the daemon is behind: say so, do not queue here
                log.add(f"soak.{function} not sent (in flight: {MAX_IN_FLIGHT})", -1)
            else:
                task = asyncio.create_task(one(function))
                pending.add(task)
                task.add_done_callback(pending.discard)
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending, return_exceptions=True)


class Churn:
    """The threads that run beside the load until `stop` is set."""

    def __init__(
        self, admin: AdminClient, port: int, keys: dict[str, str], log: CallLog, main_src: str
    ) -> None:
        self.admin, self.port, self.keys, self.log = admin, port, keys, log
        self.main_src = main_src
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    def threads(self, stop: threading.Event) -> list[threading.Thread]:
        steps: list[tuple[Callable[[], None], float]] = [
            (self.hostile_calls, 0.5),
            (self.redeploy, 60.0),
            (self.cycle, 5.0),
            (self.key_churn, 2.0),
        ]
        return [
            threading.Thread(target=self._loop, args=(step, pause, stop), name=step.__name__)
            for step, pause in steps
        ]

    def _loop(self, step: Callable[[], None], pause: float, stop: threading.Event) -> None:
        # The redeploy waits its first minute; the others start at once.
        if pause >= 60 and stop.wait(pause):
            return
        while not stop.is_set():
            try:
                step()
            except Exception as exc:  # a failed step is a finding, not the end of the run
                self.errors.append(f"{step.__name__}: {type(exc).__name__}: {exc}"[:400])
            if stop.wait(pause):
                return

    def _call(self, kind: str, script: str, function: str, key: str | None = None) -> int:
        gateway = GatewayClient(self.port, key or self.keys[script], timeout=60)
        try:
            status = gateway.call(script, function, {}).status
        except OSError as exc:
            status = 0
            self.log.failure(type(exc).__name__)
        finally:
            gateway.close()
        self.log.add(kind, status)
        return status

    def hostile_calls(self) -> None:
        self._call("hostile.slow (timeout)", "hostile", "slow")
        self._call("hostile.hog (oom)", "hostile", "hog")

    def redeploy(self) -> None:
        self.counts["redeploys"] += 1
        source = self.main_src.format(version=self.counts["redeploys"])
        archive = self.admin.upload(make_zip({"main.py": source}))
        self.admin.action("soak", "redeploy", {"archive_id": archive})
        script = self.admin.wait_status("soak")
        failure = (script.get("deployment") or {}).get("failure_reason")
        if script["status"] != "Deployed" or failure:
            raise RuntimeError(f"redeploy ended as {json.dumps(script)[:300]}")

    def cycle(self) -> None:
        self.admin.action("cycler", "undeploy", expect=200)
        self.admin.wait_status("cycler", READY_TO_DEPLOY)
        self.admin.action("cycler", "deploy")
        script = self.admin.wait_status("cycler")
        if script["status"] != "Deployed":
            raise RuntimeError(f"cycler deployed as {script['status']}")
        self.counts["cycles"] += 1
        self._call("cycler.ok after deploy", "cycler", "ok")

    def key_churn(self) -> None:
        n = self.counts["keys created"] = self.counts["keys created"] + 1
        name = f"churn-{n}"
        key = create_key(self.admin, "soak", name)
        self._call("keys: new key", "soak", "ok", key)
        self.admin.call("DELETE", f"/v1/scripts/soak/keys/{name}", expect=200)
        self.counts["keys deleted"] += 1
        self._call("keys: deleted key", "soak", "ok", key)
