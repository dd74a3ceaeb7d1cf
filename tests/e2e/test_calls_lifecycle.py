"""Calls across the lifecycle, on the real daemon with real sandboxed replicas: keys
refused at once after deletion, deploys that fail at import, a redeploy under steady
load without a failed call, undeploy -> 503, replicas started again after a daemon
restart, and a script whose replicas keep dying marked failing with the reason."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.helpers import (
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    create_key,
    make_zip,
    running_daemon,
)

V1 = """\
import time


def version():
    return 1


def hello(name="world"):
    return "hello " + name


def nap(s=1.0):
    time.sleep(s)
    return s
"""
V2 = V1.replace("return 1", "return 2")
FRAGILE = """\
import os

if os.path.exists(os.path.join(os.environ["UPLOADS_DIR"], "break-me")):
    raise RuntimeError("the upload break-me is there")


def ping():
    return "pong"
"""
CONFIG: dict[str, Any] = {**TINY_PROFILES, "replicas": {"max_start_failures": 2}}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    with running_daemon(tmp_path_factory.mktemp("calls"), CONFIG, build_cache) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> AdminClient:
    return daemon.client()


def deploy(admin: AdminClient, name: str, main: str, **fields: Any) -> dict[str, Any]:
    admin.create(name, make_zip({"main.py": main}), deploy=True, **fields)
    script: dict[str, Any] = admin.wait_status(name)
    return script


def test_a_deleted_key_is_refused_at_once(daemon: DaemonProcess, admin: AdminClient) -> None:
    assert deploy(admin, "keyed", V1)["status"] == "Deployed"
    key = create_key(admin, "keyed", "temporary")
    gw = daemon.gateway(key)
    assert gw.call("keyed", "hello").status == 200  # now cached
    assert gw.call("keyed", "hello").status == 200
    quoted = urllib.parse.quote("temporary")
    admin.call("DELETE", f"/v1/scripts/keyed/keys/{quoted}")
    r = gw.call("keyed", "hello")
    assert r.status == 401, r.body
    gw.close()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"main.py": "import no_such_module_here\n\ndef f():\n    return 1\n"}, "no_such_module"),
        ({"main.py": "raise RuntimeError('refusing to load')\n\ndef f():\n    pass\n"}, "refusing"),
        (
            {"main.py": "from .helper import g\n\ndef f():\n    return g()\n",
             "helper.py": "g = 1 / 0\n"},
            "ZeroDivisionError",
        ),
    ],
    ids=["missing-package", "raises-at-import", "helper-raises"],
)  # fmt: skip
def test_a_main_file_that_fails_to_import_fails_the_deploy(
    admin: AdminClient, files: dict[str, str], expected: str
) -> None:
    name = f"broken-{len(files)}-{abs(hash(expected)) % 10_000}"
    admin.create(name, make_zip(files), deploy=True)
    script = admin.wait_status(name)
    assert script["status"] == "Deployment Failed"
    reason = script["deployment"]["failure_reason"]
    assert expected in reason and "Traceback" in reason, reason


def test_redeploy_under_steady_load_fails_no_call(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    assert deploy(admin, "steady", V1)["status"] == "Deployed"
    key = create_key(admin, "steady")
    stop = threading.Event()
    seen: list[tuple[int, Any]] = []
    by_thread: list[list[Any]] = [[], [], []]

    def load(mine: list[Any]) -> None:
        gw = daemon.gateway(key)
        while not stop.is_set():
            r = gw.call("steady", "version")
            seen.append((r.status, r.json().get("result") if r.status == 200 else r.body))
            mine.append(seen[-1][1])
        gw.close()

    threads = [threading.Thread(target=load, args=(mine,)) for mine in by_thread]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        admin.action("steady", "redeploy", {"archive_id": admin.upload(make_zip({"main.py": V2}))})
        script = admin.wait_status("steady")
        assert script["status"] == "Deployed" and script["current_version"] == 2
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [s for s in seen if s[0] != 200]
    assert not failed, failed[:5]
    results = [v for _, v in seen]
    assert results[0] == 1 and results[-1] == 2 and len(results) > 20
    # A call sent once the new version answered another one never reaches the old one.
    # (Per client: calls of different clients overlap, so one sent to the old version
    # just before the switch may finish just after a first call to the new one.)
    for mine in by_thread:
        first_two = mine.index(2)
        assert set(mine[first_two:]) == {2}, mine


def test_undeploy_answers_503_and_deploy_restores(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    assert deploy(admin, "toggled", V1)["status"] == "Deployed"
    key = create_key(admin, "toggled")
    gw = daemon.gateway(key)
    assert gw.call("toggled", "hello").status == 200
    admin.action("toggled", "undeploy", expect=200)
    r = gw.call("toggled", "hello")
    assert r.status == 503 and r.json()["error"]["type"] == "not_deployed", r.body
    # not deployed is told before the key is checked, and an unknown script before that
    assert gw.call("toggled", "hello", key="sk_bad").status == 503
    assert gw.call("never-was", "hello", key="sk_bad").status == 404
    admin.action("toggled", "deploy")
    assert admin.wait_status("toggled")["status"] == "Deployed"
    assert gw.call("toggled", "hello").status == 200  # keys survive an undeploy
    gw.close()


def _replica_pids(daemon: DaemonProcess, script: str) -> set[int]:
    """Processes in our test daemon's cgroups of `script`'s replicas."""
    pids: set[int] = set()
    for procs in glob.glob(f"/sys/fs/cgroup/**/scriptd-test-{daemon.port}/{script}-v*/cgroup.procs",
                           recursive=True):  # fmt: skip
        with open(procs) as f:
            pids |= {int(line) for line in f if line.strip()}
    return pids


def test_replicas_that_keep_dying_mark_the_script_failing(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    assert deploy(admin, "fragile", FRAGILE)["status"] == "Deployed"
    key = create_key(admin, "fragile")
    gw = daemon.gateway(key)
    assert gw.call("fragile", "ping").json() == {"result": "pong"}
    assert gw.request("PUT", "/v1/uploads/break-me", b"1").status == 201
    pids = _replica_pids(daemon, "fragile")
    assert pids
    for pid in pids:
        # A worker may exit between reading cgroup.procs and the kill: never assume it is
        # still there (the supervisor's SIGKILL then takes the rest of the tree anyway).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        script = admin.script("fragile")
        reason = (script["deployment"] or {}).get("failure_reason") or ""
        if reason or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert script["status"] == "Deployed"
    assert reason.startswith("replicas failing:") and "break-me" in reason, reason
    kinds = [e["kind"] for e in admin.history("fragile")["events"]]
    assert "replicas_failing" in kinds
    r = gw.call("fragile", "ping")
    assert r.status == 503 and "failing" in r.json()["error"]["message"], r.body
    gw.close()

    # A restart cannot start it either: still failing, with the import's reason.
    daemon.stop()
    daemon.start()
    script = admin.script("fragile")
    assert script["status"] == "Deployed"
    assert "break-me" in script["deployment"]["failure_reason"]
    assert "restart_failed" in [e["kind"] for e in admin.history("fragile")["events"]]
    assert gw.call("fragile", "ping").status == 503
    # The cause gone, the next restart serves again and clears the reason.
    admin.call("DELETE", "/v1/uploads/break-me")
    daemon.stop()
    daemon.start()
    assert admin.script("fragile")["deployment"]["failure_reason"] is None
    assert gw.call("fragile", "ping").json() == {"result": "pong"}
    gw.close()


def test_sigterm_lets_a_running_call_finish_and_records_it(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    assert deploy(admin, "drained", V1)["status"] == "Deployed"
    key = create_key(admin, "drained")
    answers: list[Any] = []
    caller = threading.Thread(
        target=lambda: answers.append(daemon.gateway(key).call("drained", "nap", {"s": 1.5}))
    )
    caller.start()
    time.sleep(0.5)
    assert daemon.stop() == 0
    caller.join()
    (r,) = answers
    assert (r.status, r.json()) == (200, {"result": 1.5})
    daemon.start()
    record = daemon.client().get(f"/v1/executions/{r.headers['X-Scriptd-Execution-Id']}")
    assert record["status"] == "ok" and record["function"] == "nap"


def test_a_restarted_daemon_starts_the_replicas_again(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    assert deploy(admin, "durable", V1)["status"] == "Deployed"
    key = create_key(admin, "durable")
    daemon.kill()  # SIGKILL: no clean shutdown
    daemon.start()
    gw = daemon.gateway(key)
    r = gw.call("durable", "hello", {"name": "again"})
    assert (r.status, r.json()) == (200, {"result": "hello again"})
    assert daemon.stop() == 0  # SIGTERM: replicas drained, cgroups removed
    assert not glob.glob(f"/sys/fs/cgroup/**/scriptd-test-{daemon.port}", recursive=True)
    daemon.start()
    assert gw.call("durable", "hello").status == 200
    gw.close()
