"""What bench/crash.py checks after each restart, through public interfaces only: the
store file read with apsw (read-only), the admin API, the gateway, /proc and cgroups."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import apsw

from tests.helpers import AdminClient, GatewayClient

__all__ = ["STATUSES", "CallRecorder", "answer_times", "integrity", "lost_executions"]

# The status table (DESIGN.md, from the seed).
STATUSES = frozenset({"Draft", "Deploying", "Ready to Deploy", "Deployed", "Deployment Failed"})
FLUSH_S = 0.5  # one flush of the execution recorder


def integrity(db: Path) -> str:
    """`PRAGMA integrity_check` of the store, opened read-only ("ok" when sound)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    return "; ".join(rows)[:300]


@dataclass
class CallRecorder:
    """Closed-loop calls from a few threads; keeps (execution id, answer time) of 200s."""

    port: int
    key: str
    script: str
    threads: int = 2
    answered: list[tuple[str, float]] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._stop.clear()
        self._workers = [threading.Thread(target=self._loop) for _ in range(self.threads)]
        for t in self._workers:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join()

    def _loop(self) -> None:
        gateway = GatewayClient(self.port, self.key, timeout=10)
        while not self._stop.is_set():
            try:
                r = gateway.call(self.script, "ok", {})
            except OSError:
                self._stop.wait(0.05)  # the daemon is gone: try again until told to stop
                continue
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            execution = r.headers.get("X-Scriptd-Execution-Id")
            if r.status == 200 and execution:
                self.answered.append((execution, time.monotonic()))
        gateway.close()


def lost_executions(
    admin: AdminClient, answered: list[tuple[str, float]], killed_at: float
) -> tuple[int, list[str], int, int]:
    """(checked, lost, recent checked, recent lost): answers older than one flush before
    the kill must all be found; the recent ones are only counted."""
    checked, lost, recent, recent_lost = 0, [], 0, 0
    for execution, at in answered:
        found = admin.request("GET", f"/v1/executions/{execution}").status == 200
        if at <= killed_at - FLUSH_S:
            checked += 1
            if not found:
                lost.append(execution)
        else:
            recent += 1
            recent_lost += not found
    return checked, lost, recent, recent_lost


def answer_times(
    admin: AdminClient, port: int, keys: dict[str, str], since: float
) -> dict[str, float | None]:
    """Seconds from `since` to the first 200 of each Deployed script (None: not in 10 s)."""
    out: dict[str, float | None] = {}
    deployed = [s["name"] for s in admin.get("/v1/scripts")["scripts"] if s["status"] == "Deployed"]
    for name in deployed:
        gateway = GatewayClient(port, keys[name], timeout=5)
        out[name] = None
        while time.monotonic() < since + 10:
            try:
                if gateway.call(name, "ok", {}).status == 200:
                    out[name] = round(time.monotonic() - since, 2)
                    break
            except OSError:
                pass
            time.sleep(0.05)
        gateway.close()
    return out
