"""Autoscaling against the real daemon, real sandboxed replicas and real HTTP: a
CPU-burning script under load scales up, and after the load stops, back down once
the (short) stabilisation window has passed; a script with min = max never scales.
Every change is a "scaled" event with its inputs, shown by `scriptctl events` and
`scriptctl show`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.core.models import parse_iso
from tests.conftest import require_root
from tests.helpers import (
    REPO,
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    create_key,
    make_zip,
    running_daemon,
)

MAIN = """\
import time


def burn(ms=100):
    end = time.process_time() + ms / 1000
    n = 0
    while time.process_time() < end:
        n += 1
    return n
"""
CONFIG: dict[str, Any] = {
    **TINY_PROFILES,  # 0.5 vCPU, one worker per replica
    "autoscale": {"tick_s": 0.5, "stabilisation_s": 3, "queue_wait_s": 0.5},
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    with running_daemon(tmp_path_factory.mktemp("scale"), CONFIG, build_cache) as d:
        yield d


class Load:
    """Threads calling a function in a loop until stopped."""

    def __init__(self, daemon: DaemonProcess, key: str, script: str, threads: int) -> None:
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.last_answer = 0.0  # monotonic time of the last answer, of any thread
        self._threads = [
            threading.Thread(target=self._run, args=(daemon, key, script), daemon=True)
            for _ in range(threads)
        ]
        for t in self._threads:
            t.start()

    def _run(self, daemon: DaemonProcess, key: str, script: str) -> None:
        gw = daemon.gateway(key, timeout=30)
        try:
            while not self.stop.is_set():
                self.statuses.append(gw.call(script, "burn", {"ms": 100}).status)
                self.last_answer = time.monotonic()
        finally:
            gw.close()

    def end(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)


def replicas(admin: AdminClient, name: str) -> int:
    return int(admin.get(f"/v1/scripts/{name}/events?kind=scaled")["autoscaling"]["replicas"])


def wait_replicas(admin: AdminClient, name: str, want: int, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if replicas(admin, name) == want:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(
        f"{name} never had {want} replicas: {admin.get(f'/v1/scripts/{name}/events')}"
    )


def scriptctl(daemon: DaemonProcess, *args: str) -> str:
    env = {**os.environ, "SCRIPTD_SOCKET": str(daemon.socket)}
    out = subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_scales_up_under_load_and_down_after_it(daemon: DaemonProcess) -> None:
    admin = daemon.client()
    project = make_zip({"main.py": MAIN})
    admin.create("burner", project, deploy=True, min_replicas=1, max_replicas=3, cpu_target=50)
    admin.create("fixed", project, deploy=True, min_replicas=1, max_replicas=1)
    for name in ("burner", "fixed"):
        assert admin.wait_status(name)["status"] == "Deployed"
    assert replicas(admin, "burner") == 1
    burner = Load(daemon, create_key(admin, "burner"), "burner", 4)
    fixed = Load(daemon, create_key(admin, "fixed"), "fixed", 2)
    try:
        wait_replicas(admin, "burner", 3, timeout=20)
        time.sleep(1.0)  # the fixed one is as loaded as the other was
    finally:
        burner.end()
        fixed.end()
    assert set(burner.statuses) == {200} and set(fixed.statuses) == {200}
    ups = admin.get("/v1/scripts/burner/events?kind=scaled")["events"]
    first = ups[0]["detail"]
    assert ups[0]["actor"] == "autoscaler" and first["from"] == 1 and first["to"] > 1
    assert first["reason"] in ("cpu", "queue")
    assert {"utilization_pct", "target_pct", "queue_wait_s", "queued", "in_flight"} <= set(first)
    # Down only once the window (3 s) has passed since the last recommendation of more
    # replicas, which the last scale-up was. (Not counted from the load's end: on a
    # saturated machine the replicas get less CPU than their share and the utilisation
    # can fall below the target while the load still runs.)
    wait_replicas(admin, "burner", 1, timeout=20)
    scaled = admin.get("/v1/scripts/burner/events?kind=scaled")["events"]
    down, last_up = scaled[-1], [e for e in scaled if e["detail"]["to"] > e["detail"]["from"]][-1]
    held = (parse_iso(down["at"]) - parse_iso(last_up["at"])).total_seconds()
    assert held >= 3 - 0.01, scaled  # the times are kept to the millisecond
    detail = down["detail"]
    assert detail["to"] == 1 and detail["from"] > 1 and detail["reason"] == "cpu"
    # min = max: never scaled, still one replica.
    assert admin.get("/v1/scripts/fixed/events?kind=scaled")["events"] == []
    assert replicas(admin, "fixed") == 1
    events = scriptctl(daemon, "events", "burner", "--kind", "scaled")
    assert "scaled" in events and "autoscaler" in events and "-> 1 (cpu)" in events
    shown = scriptctl(daemon, "show", "burner")
    assert "Autoscaling" in shown and "1 to 3 replicas at 50 % CPU" in shown
    assert "Recent scaling" in shown
    assert "off (min = max replicas)" in scriptctl(daemon, "show", "fixed")
