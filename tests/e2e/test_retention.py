"""Retention against the real daemon: with small limits in its config, the background
pass prunes execution records by count (real calls) and by age (records aged by
writing their time into the daemon's own store, not by waiting), and `scriptctl
account` shows the store's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow, iso_from_unix
from tests.helpers import (
    REPO,
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    create_key,
    make_zip,
    running_daemon,
)

DAY = 86_400.0
KEEP = 3


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    config = {
        **TINY_PROFILES,
        "executions": {"retention_days": 30, "max_per_script": KEEP, "prune_interval_s": 0.2},
    }
    with running_daemon(tmp_path_factory.mktemp("retention"), config, build_cache) as d:
        yield d


def executions(admin: AdminClient, name: str) -> list[str]:
    found = admin.get(f"/v1/scripts/{name}/executions?limit=500")["executions"]
    return [e["id"] for e in found]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def test_records_past_the_count_go_and_the_newest_stay(daemon: DaemonProcess) -> None:
    admin = daemon.client()
    main = "def ok(n):\n    return n\n"
    admin.create("kept", make_zip({"main.py": main}), deploy=True)
    assert admin.wait_status("kept")["status"] == "Deployed"
    gw = daemon.gateway(create_key(admin, "kept"))
    try:
        ids = [gw.call("kept", "ok", {"n": i}).headers["X-Scriptd-Execution-Id"]
               for i in range(2 * KEEP)]  # fmt: skip
    finally:
        gw.close()
    newest = set(ids[-KEEP:])
    wait_until(lambda: set(executions(admin, "kept")) == newest, f"only {newest} kept")


def test_records_older_than_the_retention_go(daemon: DaemonProcess) -> None:
    admin = daemon.client()
    admin.create("aged", make_zip({"main.py": "def f():\n    return 1\n"}))
    # Two records written straight into the daemon's store: one 40 days old, one a day.
    store = Store(daemon.state_dir / "scriptd.db")
    now = time.time()
    try:
        script = store.get_script("aged")
        assert script is not None
        store.insert_executions(
            ExecutionRow(f"aged-{age}", script.id, 1, "f", "k", "ok",
                         iso_from_unix(now - age * DAY))
            for age in (40, 1)
        )  # fmt: skip
    finally:
        store.close()
    wait_until(lambda: executions(admin, "aged") == ["aged-1"], "the 40-day-old record pruned")


def scriptctl(daemon: DaemonProcess, *args: str) -> str:
    env = {**os.environ, "SCRIPTD_SOCKET": str(daemon.socket)}
    out = subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_scriptctl_account_shows_the_store_size(daemon: DaemonProcess) -> None:
    doc: dict[str, Any] = json.loads(scriptctl(daemon, "--json", "account"))
    store = doc["store"]
    assert store["total_bytes"] >= store["database_bytes"] > 0
    assert store["retention_days"] == 30 and store["max_per_script"] == KEEP
    assert store["execution_records"] >= 0
    text = scriptctl(daemon, "account")
    assert "Store size:" in text and "Execution records:" in text
    assert f"30 days, the newest {KEEP} per script" in text
