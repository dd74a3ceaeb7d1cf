"""A script's `concurrency` end to end: set with scriptctl, shown by show and history,
and honoured by a real sandboxed replica over real HTTP; the daemon's
`dispatch.cancel_grace_s` honoured when a call ignores its cancel. One daemon for
the module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.e2e.test_cli_lifecycle import Ctl
from tests.helpers import TINY_PROFILES, DaemonProcess, create_key, running_daemon

MAIN_PY = """\
import asyncio
import os
import time


async def nap(ms):
    await asyncio.sleep(ms / 1000)
    return os.getpid()


def block(s):
    time.sleep(s)  # a thread: its cancel is ignored, the worker is killed after the grace
    return os.getpid()
"""
CALLS, NAP_S = 20, 0.3
GRACE_S = 0.3  # dispatch.cancel_grace_s (the default is 2 s)
CONFIG = {**TINY_PROFILES, "dispatch": {"cancel_grace_s": GRACE_S},
          "settings": {"timeout_min_s": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    root = tmp_path_factory.mktemp("conc")
    with running_daemon(root, CONFIG, build_cache) as d:
        yield d


def test_concurrency_is_set_shown_and_honoured(daemon: DaemonProcess, tmp_path: Path) -> None:
    ctl = Ctl(str(daemon.admin_socket))
    project = tmp_path / "naps"
    project.mkdir()
    (project / "main.py").write_text(MAIN_PY)
    refused = ctl.refused("create", "bad", "--language", "python", "--archive", str(project),
                          "--concurrency", "65")  # fmt: skip
    assert "concurrency" in refused.err and "from 1 to 64" in refused.err
    refused = ctl.refused("create", "bad", "--language", "python", "--archive", str(project),
                          "--workers-per-replica", "0")  # fmt: skip
    assert "workers_per_replica" in refused.err
    ctl.ok("up", str(project), "--name", "naps", "--concurrency", str(CALLS),
           "--workers-per-replica", "1")  # fmt: skip
    settings = ctl.ok("show", "naps")["settings"]
    assert (settings["concurrency"], settings["workers_per_replica"]) == (CALLS, 1)
    version = ctl.ok("history", "naps")["versions"][0]
    assert version["config"]["settings"]["concurrency"] == CALLS
    shown = ctl.run("show", "naps", json_output=False).out
    assert f"{CALLS} calls per worker, 1 worker per replica" in shown

    # the tiny profile's one replica has one worker: all calls run on it side by side
    key = create_key(daemon.client(), "naps")

    def call(_: int) -> tuple[int, int]:
        gw = daemon.gateway(key)
        try:
            r = gw.call("naps", "nap", {"ms": int(NAP_S * 1000)})
            return r.status, r.json()["result"] if r.status == 200 else r.body
        finally:
            gw.close()

    call(0)  # warm
    with ThreadPoolExecutor(CALLS) as pool:
        t0 = time.monotonic()
        answers = list(pool.map(call, range(CALLS)))
        took = time.monotonic() - t0
    assert {status for status, _ in answers} == {200}, answers
    assert len({pid for _, pid in answers}) == 1
    serial = CALLS * NAP_S
    assert took < serial / 2, f"{CALLS} calls of {NAP_S} s took {took:.2f} s (serial: {serial} s)"


def test_a_worker_is_killed_after_the_configured_cancel_grace(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    ctl = Ctl(str(daemon.admin_socket))
    project = tmp_path / "blocks"
    project.mkdir()
    (project / "main.py").write_text(MAIN_PY)
    ctl.ok("up", str(project), "--name", "blocks", "--concurrency", "4",
           "--workers-per-replica", "1", "--timeout", "2")  # fmt: skip
    key = create_key(daemon.client(), "blocks")
    gw, beside_gw = daemon.gateway(key), daemon.gateway(key)
    try:
        pid = gw.call("blocks", "nap", {"ms": 1}).json()["result"]
        with ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(gw.call, "blocks", "block", {"s": 30})
            # 1.5 s later: its deadline (2 s after it arrives) comes after the stuck call's
            # deadline plus the configured grace (0.3 s), but before the default grace
            # (2 s) would have passed: with that, it would be cancelled and time out.
            time.sleep(1.5)
            beside = pool.submit(beside_gw.call, "blocks", "nap", {"ms": 20_000})
            assert stuck.result(30).status == 504
            lost = beside.result(30)
        assert lost.status == 502, lost.body
        error = lost.json()["error"]
        assert error["type"] == "worker_crashed" and error["stopped_for"]
        assert f"did not end within {GRACE_S:g} s of being cancelled" in error["message"]
        fresh = gw.call("blocks", "nap", {"ms": 1})
        assert fresh.status == 200 and fresh.json()["result"] != pid  # a new worker
    finally:
        gw.close()
        beside_gw.close()
