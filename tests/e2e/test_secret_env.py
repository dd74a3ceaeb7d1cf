"""Secret environment variables end to end: sealed in the database (the raw files never
hold the value), opened only for the replica (the script sees it, across a redeploy
that keeps it), and never read back: not by show, history, list, executions, export,
the admin API's answers or the daemon's log."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from daemon.store.secret_box import CREDENTIAL_NAME, KEY_FILE, SecretBox
from tests.helpers import AdminClient, DaemonProcess, create_key, start_daemon

REPO = Path(__file__).resolve().parents[2]
KEY = "SERVICE_TOKEN"
VALUE = "se-91d2c4a7-a-secret-env-value"
MAIN = f"""\
import os


def check(expected):
    # a boolean, never the value
    return os.environ.get({KEY!r}) == expected


def leak():
    print("service token", os.environ.get({KEY!r}))
    return True
"""


def scriptctl(daemon: DaemonProcess, *argv: str) -> str:
    """scriptctl's output (it must succeed, and neither stream may hold the value)."""
    env = {k: v for k, v in os.environ.items() if k != "SCRIPTD_SOCKET"}
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--socket", str(daemon.admin_socket), *argv],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"scriptctl {' '.join(argv)}:\n{proc.stdout}{proc.stderr}"
    assert VALUE not in proc.stdout + proc.stderr, argv
    return proc.stdout


def execution_ids(admin: AdminClient, script: str, count: int) -> list[str]:
    """The ids of the script's execution records once `count` are written."""
    deadline = time.monotonic() + 30
    while True:
        records = admin.get(f"/v1/scripts/{script}/executions")["executions"]
        if len(records) >= count:
            return [r["id"] for r in records]
        assert time.monotonic() < deadline, f"only {len(records)} records after 30 s"
        time.sleep(0.1)


def database_bytes(daemon: DaemonProcess) -> bytes:
    """The database, its WAL and shm as they are on disk while the daemon runs."""
    return b"".join(p.read_bytes() for p in daemon.state_dir.iterdir() if p.is_file())


def test_a_secret_env_value_is_sealed_at_rest_and_never_read_back(
    daemon: DaemonProcess, admin: AdminClient, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(MAIN)
    scriptctl(daemon, "create", "sealed", "--language", "python", "--archive", str(project),
              "--secret-env", f"{KEY}={VALUE}", "--env", "MODE=plain-mode", "--deploy",
              "--wait")  # fmt: skip
    gateway = daemon.gateway(create_key(admin, "sealed"))
    try:
        assert gateway.call("sealed", "check", {"expected": VALUE}).json()["result"] is True
        assert gateway.call("sealed", "leak").json()["result"] is True
        # a redeploy that changes another variable keeps the secret (sent back masked)
        scriptctl(daemon, "redeploy", "sealed", "--env", "MODE=other-mode", "--wait")
        assert gateway.call("sealed", "check", {"expected": VALUE}).json()["result"] is True
    finally:
        gateway.close()
    assert [v["number"] for v in admin.history("sealed")["versions"]] == [2, 1]

    stored = database_bytes(daemon)
    assert VALUE.encode() not in stored and b"other-mode" in stored

    ids = execution_ids(admin, "sealed", 3)
    answers = [
        admin.request("GET", path).body
        for path in ("/v1/scripts", "/v1/scripts/sealed", "/v1/scripts/sealed/history",
                     "/v1/scripts/sealed/events", "/v1/scripts/sealed/executions",
                     "/v1/scripts/sealed/export", "/v1/scripts/sealed/logs",
                     *(f"/v1/executions/{i}" for i in ids))
    ]  # fmt: skip
    assert all(VALUE.encode() not in body for body in answers)
    assert b"plain-mode" not in answers[1] and b"other-mode" in answers[1]  # the live settings

    for json_flag in ((), ("--json",)):
        for command in (("show", "sealed"), ("history", "sealed"), ("list",),
                        ("executions", "sealed"), *(("execution", i) for i in ids)):  # fmt: skip
            scriptctl(daemon, *json_flag, *command)
    scriptctl(daemon, "export", "sealed", "-o", str(tmp_path / "export.zip"))
    assert VALUE.encode() not in (tmp_path / "export.zip").read_bytes()
    assert VALUE not in daemon.log()


def test_under_systemd_the_key_is_the_credential_and_none_is_made_in_the_state_dir(
    tmp_path: Path, build_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LoadCredential=scriptd-secrets-key:..., systemd hands the daemon the key in
    $CREDENTIALS_DIRECTORY: values are sealed with it, and no key file is written."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / CREDENTIAL_NAME).write_bytes(os.urandom(32))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    daemon = start_daemon(tmp_path / "scriptd", {}, build_cache)
    try:
        project = tmp_path / "project"
        project.mkdir()
        (project / "main.py").write_text(MAIN)
        scriptctl(daemon, "create", "sealed", "--language", "python", "--archive",
                  str(project), "--secret-env", f"{KEY}={VALUE}")  # fmt: skip
        assert VALUE.encode() not in database_bytes(daemon)
    finally:
        daemon.stop()
    assert not (daemon.state_dir / KEY_FILE).exists()
    database = apsw.Connection(str(daemon.state_dir / "scriptd.db"))
    (env_json,) = next(database.execute("SELECT env_json FROM scripts WHERE name='sealed'"))
    ((key, stored, secret),) = json.loads(env_json)
    sealed = base64.b64decode(stored["sealed"])
    assert (key, secret) == (KEY, True)
    assert SecretBox(credentials / CREDENTIAL_NAME).open(f"env:{KEY}", sealed) == VALUE
