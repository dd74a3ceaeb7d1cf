"""`./dev.sh run`: scriptd in the foreground with the example deployed.

Runs `python -m daemon.main` with the state dir `./state` (gitignored), the admin
socket `./state/admin.sock` and the gateway on 127.0.0.1:8080, no config file
needed. Once the socket answers, it creates the bundled sample
runtimes/samples/python as the script `example` and deploys it (only the first
time: an existing `example` is deployed again if it is not Deployed), creates a
fresh API key, calls `greet` once through the gateway to check it, and prints
the curl line that does the same. Ctrl-C (or SIGTERM) stops the daemon cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from daemon.cli.client import AdminClient
from daemon.cli.errors import ApiError, CliError

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "state"
SOCKET = STATE / "admin.sock"
LISTEN = "127.0.0.1:8080"
SAMPLE = REPO / "runtimes" / "samples" / "python"
NAME = "example"


def daemon_argv(extra: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "daemon.main", "--state-dir", str(STATE),
            "--admin-socket", str(SOCKET), "--listen", LISTEN, *extra]  # fmt: skip
    if os.geteuid() != 0 and "--dev-no-sandbox" not in extra:
        print("devrun: not root: starting with --dev-no-sandbox (no isolation)", flush=True)
        argv.append("--dev-no-sandbox")
    return argv


def wait_for_socket(proc: subprocess.Popen[bytes], admin: AdminClient, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            admin.call("GET", "/v1/profiles")
            return True
        except CliError:
            time.sleep(0.1)
    return False


def deploy_example(admin: AdminClient) -> dict[str, Any]:
    from daemon.archive.pack import pack_directory

    try:
        script: dict[str, Any] = admin.call("GET", f"/v1/scripts/{NAME}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "example.zip"
            pack_directory(SAMPLE, archive)
            upload = admin.upload(archive, "example.zip")["archive_id"]
        body = {"name": NAME, "language": "python", "archive_id": upload, "deploy": True,
                "description": "The bundled Python sample project"}  # fmt: skip
        return admin.call("POST", "/v1/scripts", body)
    if script["status"] in ("Draft", "Ready to Deploy", "Deployment Failed"):
        return admin.call("POST", f"/v1/scripts/{NAME}/deploy", {})
    return script


def wait_deployed(admin: AdminClient, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        script: dict[str, Any] = admin.call("GET", f"/v1/scripts/{NAME}")
        if script["status"] != "Deploying" or time.monotonic() > deadline:
            return script
        time.sleep(0.2)


def new_key(admin: AdminClient) -> str:
    created: dict[str, Any] = admin.call("POST", f"/v1/scripts/{NAME}/keys", {})
    return str(created["key"])


def call_greet(key: str) -> tuple[int, str]:
    """One real call through the gateway: the status and the body."""
    req = urllib.request.Request(
        f"http://{LISTEN}/v1/scripts/{NAME}/functions/greet",
        data=json.dumps({"name": "Ada"}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def explain(script: dict[str, Any], admin: AdminClient) -> None:
    dep = script.get("deployment") or {}
    print(f"\ndevrun: script '{NAME}' is {script['status']}", flush=True)
    if dep.get("failure_reason"):
        print(f"devrun: failure: {dep['failure_reason']}")
    print(
        f"""devrun: look at it with
    .venv/bin/scriptctl --socket {SOCKET} show {NAME}
    .venv/bin/scriptctl --socket {SOCKET} executions {NAME}
  functions: {", ".join(script.get("functions", []))}
  gateway:   curl -s http://{LISTEN}/healthz""",
        flush=True,
    )
    if script.get("status") == "Deployed":
        key = new_key(admin)
        status, body = call_greet(key)
        print(f"devrun: a fresh API key; greet answered {status}: {body}")
        print(
            f"""devrun: call it:
    curl -s -X POST http://{LISTEN}/v1/scripts/{NAME}/functions/greet \\
         -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
         -d '{{"name": "Ada"}}'""",
            flush=True,
        )
    print("devrun: Ctrl-C stops the daemon.", flush=True)


def main(argv: list[str] | None = None) -> int:
    STATE.mkdir(exist_ok=True)
    proc = subprocess.Popen(daemon_argv(list(argv if argv is not None else sys.argv[1:])), cwd=REPO)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    admin = AdminClient(str(SOCKET))
    try:
        if wait_for_socket(proc, admin):
            try:
                explain(wait_deployed(admin) if deploy_example(admin) else {}, admin)
            except CliError as exc:
                print(f"devrun: could not deploy the example: {exc}", file=sys.stderr)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
