"""Integration secrets end to end: `scriptctl secrets` against the real daemon, a
script granted one sees it as an environment variable, and delete waits for undeploy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import AdminClient, DaemonProcess, create_key

REPO = Path(__file__).resolve().parents[2]
NAME = "PARTNER_API_TOKEN"
VALUE = "pt-7c1e5b0a-the-value-itself"
MAIN = f"""\
import os


def check(expected):
    # a boolean, never the value: the test compares without the script echoing it
    return os.environ.get({NAME!r}) == expected


def leak():
    # a careless log line: the execution record must mask it
    print("token is", os.environ.get({NAME!r}))
    return True
"""


def scriptctl(
    daemon: DaemonProcess, *argv: str, stdin: str = "", expect: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCRIPTD_SOCKET"}
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--socket", str(daemon.admin_socket), "--json",
         *argv],
        cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == expect, f"scriptctl {' '.join(argv)}:\n{proc.stdout}{proc.stderr}"
    assert VALUE not in proc.stdout + proc.stderr
    return proc


def ctl_json(daemon: DaemonProcess, *argv: str, stdin: str = "") -> Any:
    return json.loads(scriptctl(daemon, *argv, stdin=stdin).stdout)


def recorded_calls(daemon: DaemonProcess, script: str, count: int) -> list[Any]:
    """The script's execution records once `count` are written (the recorder batches)."""
    deadline = time.monotonic() + 30
    while True:
        records = ctl_json(daemon, "executions", script)["executions"]
        if len(records) >= count:
            return list(records)
        assert time.monotonic() < deadline, f"only {len(records)} records after 30 s"
        time.sleep(0.1)


def test_a_granted_secret_is_the_scripts_env_and_delete_waits_for_undeploy(
    daemon: DaemonProcess, admin: AdminClient, tmp_path: Path
) -> None:
    ctl_json(daemon, "secrets", "set", NAME, stdin=VALUE + "\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(MAIN)

    refused = scriptctl(daemon, "create", "partner", "--language", "python", "--archive",
                        str(project), "--secret", "NOT_SET", expect=1)  # fmt: skip
    assert "unknown secret 'NOT_SET'" in refused.stderr
    ctl_json(daemon, "create", "partner", "--language", "python", "--archive", str(project),
             "--secret", NAME, "--deploy", "--wait")  # fmt: skip
    shown = ctl_json(daemon, "show", "partner")
    assert shown["status"] == "Deployed" and shown["settings"]["secrets"] == [NAME]
    history = ctl_json(daemon, "history", "partner")
    assert history["versions"][0]["config"]["settings"]["secrets"] == [NAME]

    gateway = daemon.gateway(create_key(admin, "partner"))
    try:
        assert gateway.call("partner", "check", {"expected": VALUE}).json()["result"] is True
        assert gateway.call("partner", "check", {"expected": "other"}).json()["result"] is False
        assert gateway.call("partner", "leak").json()["result"] is True
    finally:
        gateway.close()
    # the value printed by leak() is masked in its execution record (scriptctl()
    # checks that no output of it holds the value)
    logs = [
        ctl_json(daemon, "execution", record["id"])["logs"] or ""
        for record in recorded_calls(daemon, "partner", 3)
    ]
    assert "token is ********" in "".join(logs), logs

    listed = ctl_json(daemon, "secrets", "list")["secrets"]
    assert [(s["name"], s["used_by"]) for s in listed] == [(NAME, ["partner"])]
    refused = scriptctl(daemon, "secrets", "delete", NAME, expect=1)
    assert "used by deployed scripts: partner" in refused.stderr

    assert ctl_json(daemon, "undeploy", "partner")["status"] == "Ready to Deploy"
    assert ctl_json(daemon, "secrets", "delete", NAME) == {"deleted": NAME}
    assert ctl_json(daemon, "secrets", "list") == {"secrets": []}
    database = b"".join(p.read_bytes() for p in daemon.state_dir.iterdir() if p.is_file())
    assert VALUE.encode() not in database
