"""Backup under load and restore on a fresh state dir, against the real daemon.

Calls run while `scriptctl backup --workspaces --include-key` streams; the backup is
restored with `scriptd --restore` into another state dir with an empty build cache
(a fresh host: the environment is built again), a daemon starts there and serves the
same script, version, API key, secret and workspace file, with the execution records
taken before the backup and a store that passes integrity_check."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import apsw

from tests.conftest import require_root
from tests.helpers import REPO, AdminClient, DaemonProcess, create_key

MAIN = """\
import os


def add(a, b):
    return a + b


def save(text):
    with open(os.path.join(os.environ["WORKSPACE_DIR"], "note.txt"), "w") as f:
        f.write(text)
    return True


def note():
    with open(os.path.join(os.environ["WORKSPACE_DIR"], "note.txt")) as f:
        return f.read()


def has_token(expected):
    return os.environ.get("PARTNER_TOKEN") == expected
"""
TOKEN = "pt-0b6a-restored-with-its-key"


def run(argv: list[str], expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCRIPTD_SOCKET"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == expect, f"{argv}:\n{proc.stdout}{proc.stderr}"
    return proc


def scriptctl(
    daemon: DaemonProcess, *argv: str, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    cli = [sys.executable, "-m", "daemon.cli", "--socket", str(daemon.admin_socket)]
    return run([*cli, *argv], expect)


def restore(
    target: DaemonProcess, backup: Path, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "daemon.main", "--config", str(target.config_path),
            "--state-dir", str(target.state_dir), "--restore", str(backup)]  # fmt: skip
    return run(argv, expect)


def records(admin: AdminClient, count: int) -> list[dict[str, Any]]:
    """The script's execution records once at least `count` are written."""
    deadline = time.monotonic() + 30
    while True:
        found = admin.get("/v1/scripts/kept/executions?limit=1000")["executions"]
        if len(found) >= count:
            return list(found)
        assert time.monotonic() < deadline, f"only {len(found)} records after 30 s"
        time.sleep(0.1)


class Load:
    """Calls `add` in a loop on its own connection until stopped; counts the answers."""

    def __init__(self, daemon: DaemonProcess, key: str) -> None:
        self.gateway = daemon.gateway(key)
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.statuses.append(self.gateway.call("kept", "add", {"a": 1, "b": 2}).status)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)
        self.gateway.close()


def test_a_backup_under_load_restores_on_a_fresh_state_dir(
    daemon: DaemonProcess, admin: AdminClient, tmp_path: Path
) -> None:
    require_root()  # workspace images, freezing, and owners kept in the tar
    admin.call("PUT", "/v1/secrets/PARTNER_TOKEN", {"value": TOKEN})
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(MAIN)
    scriptctl(daemon, "create", "kept", "--language", "python", "--archive", str(project),
              "--secret", "PARTNER_TOKEN", "--deploy", "--wait")  # fmt: skip
    key = create_key(admin, "kept", "ops")
    gateway = daemon.gateway(key)
    assert gateway.call("kept", "save", {"text": "written before the backup"}).status == 200
    for i in range(5):
        assert gateway.call("kept", "add", {"a": i, "b": 1}).json() == {"result": i + 1}
    before = records(admin, 6)
    backup = tmp_path / "out" / "scriptd.tar.gz"
    backup.parent.mkdir()

    # a bad target is refused with the path in the message, before any work
    bad = scriptctl(daemon, "backup", "-o", str(tmp_path / "no-such-dir" / "b.tar.gz"), expect=1)
    assert "cannot write to" in bad.stderr and "no-such-dir" in bad.stderr

    with Load(daemon, key) as load:
        while len(load.statuses) < 20:  # calls run when the backup starts
            time.sleep(0.05)
        done = scriptctl(daemon, "backup", "-o", str(backup), "--workspaces", "--include-key")
        served_during = len(load.statuses)
    assert "holds the secrets key" in done.stderr
    assert set(load.statuses) == {200}, sorted(set(load.statuses))
    assert served_during >= 20
    assert backup.stat().st_mode & 0o777 == 0o600

    original = {
        "script": admin.script("kept"),
        "history": admin.history("kept"),
        "keys": admin.get("/v1/scripts/kept/keys"),
    }
    # a daemon running on a state dir refuses a restore into it
    running = restore(daemon, backup, expect=1)
    assert "another scriptd (pid" in running.stderr and "stop it first" in running.stderr
    daemon.stop()  # the fresh one runs alone: a busy host builds faster

    (tmp_path / "fresh").mkdir()
    fresh = DaemonProcess(tmp_path / "fresh", {}, cache_dir=tmp_path / "empty-cache")
    told = restore(fresh, backup)
    assert "restored" in told.stdout and "WARNING" not in told.stderr, told.stderr
    again = restore(fresh, backup, expect=1)
    assert "holds a daemon's data" in again.stderr and "--force" in again.stderr
    fresh.start(timeout=300)  # the environment is built again before READY
    try:
        assert "source or environment missing, preparing it again" in fresh.log()
        check_restored(fresh, key, original, before)
    finally:
        fresh.stop()


def key_names(listing: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k["id"], k["name"]) for k in listing["keys"]]


def check_restored(
    fresh: DaemonProcess, key: str, original: dict[str, Any], before: list[dict[str, Any]]
) -> None:
    admin = fresh.client()
    script = admin.script("kept")
    assert script["status"] == "Deployed"
    assert script["current_version"] == original["script"]["current_version"]
    assert [v["number"] for v in admin.history("kept")["versions"]] == [
        v["number"] for v in original["history"]["versions"]
    ]
    assert key_names(admin.get("/v1/scripts/kept/keys")) == key_names(original["keys"])
    gateway = fresh.gateway(key)  # the same API key authenticates
    assert gateway.call("kept", "add", {"a": 2, "b": 3}).json() == {"result": 5}
    assert gateway.call("kept", "note").json() == {"result": "written before the backup"}
    assert gateway.call("kept", "has_token", {"expected": TOKEN}).json() == {"result": True}
    restored_ids = {r["id"] for r in records(admin, len(before))}
    assert {r["id"] for r in before} <= restored_ids
    db = apsw.Connection(str(fresh.state_dir / "scriptd.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
