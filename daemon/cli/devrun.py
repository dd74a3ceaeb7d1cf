"""`./dev.sh run`: scriptd in the foreground with the example deployed.

Runs `python -m daemon.main` with the state dir `./state` (gitignored), the admin
socket `./state/admin.sock` and the gateway on 127.0.0.1:8080, no config file
needed. Once the socket answers, it creates the bundled sample
runtimes/samples/python as the script `example` and deploys it (only the first
time: an existing `example` is deployed again if it is not Deployed), creates a
fresh API key, calls `greet` once through the gateway to check it, and prints
the curl line that does the same. Ctrl-C (or SIGTERM) stops the daemon cleanly.

`./dev.sh run --kind step` does the same with the code step sample
(runtimes/samples/step-python as `example-step`, run once through
POST /v1/scripts/example-step/run). Other arguments go to the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.cli.client import AdminClient
from daemon.cli.errors import ApiError, CliError

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "state"
SOCKET = STATE / "admin.sock"
LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True)
class Example:
    """The sample deployed and called: a functions project or a code step."""

    name: str
    sample: Path
    path: str  # the gateway route called, below /v1/scripts/<name>/
    body: dict[str, Any]

    @property
    def url(self) -> str:
        return f"http://{LISTEN}/v1/scripts/{self.name}/{self.path}"


SAMPLES = REPO / "runtimes" / "samples"
EXAMPLES = {
    "functions": Example("example", SAMPLES / "python", "functions/greet", {"name": "Ada"}),
    "step": Example("example-step", SAMPLES / "step-python", "run",
                    {"inputs": {"name": {"s": "Ada"}}}),
}  # fmt: skip


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


def deploy_example(admin: AdminClient, ex: Example) -> dict[str, Any]:
    from daemon.archive.pack import pack_directory

    try:
        script: dict[str, Any] = admin.call("GET", f"/v1/scripts/{ex.name}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "example.zip"
            pack_directory(ex.sample, archive)
            upload = admin.upload(archive, "example.zip")["archive_id"]
        body = {"name": ex.name, "language": "python", "archive_id": upload, "deploy": True,
                "description": f"The bundled sample ({ex.sample.name})"}  # fmt: skip
        return admin.call("POST", "/v1/scripts", body)
    if script["status"] in ("Draft", "Ready to Deploy", "Deployment Failed"):
        return admin.call("POST", f"/v1/scripts/{ex.name}/deploy", {})
    return script


def wait_deployed(admin: AdminClient, ex: Example, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        script: dict[str, Any] = admin.call("GET", f"/v1/scripts/{ex.name}")
        if script["status"] != "Deploying" or time.monotonic() > deadline:
            return script
        time.sleep(0.2)


def new_key(admin: AdminClient, ex: Example) -> str:
    created: dict[str, Any] = admin.call("POST", f"/v1/scripts/{ex.name}/keys", {})
    return str(created["key"])


def call_example(key: str, ex: Example) -> tuple[int, str]:
    """One real call through the gateway: the status and the body."""
    req = urllib.request.Request(
        ex.url,
        data=json.dumps(ex.body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def explain(script: dict[str, Any], admin: AdminClient, ex: Example) -> None:
    dep = script.get("deployment") or {}
    print(f"\ndevrun: script '{ex.name}' is {script['status']}", flush=True)
    if dep.get("failure_reason"):
        print(f"devrun: failure: {dep['failure_reason']}")
    print(
        f"""devrun: look at it with
    .venv/bin/scriptctl --socket {SOCKET} show {ex.name}
    .venv/bin/scriptctl --socket {SOCKET} executions {ex.name}
  functions: {", ".join(script.get("functions", [])) or "(a code step)"}
  gateway:   curl -s http://{LISTEN}/healthz""",
        flush=True,
    )
    if script.get("status") == "Deployed":
        key = new_key(admin, ex)
        status, body = call_example(key, ex)
        print(f"devrun: a fresh API key; {ex.path} answered {status}: {body}")
        print(
            f"""devrun: call it:
    curl -s -X POST {ex.url} \\
         -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
         -d '{json.dumps(ex.body)}'""",
            flush=True,
        )
    print("devrun: Ctrl-C stops the daemon.", flush=True)


def split_kind(argv: list[str]) -> tuple[str, list[str]]:
    """(`--kind functions|step`, the daemon's arguments)."""
    parser = argparse.ArgumentParser(prog="./dev.sh run", add_help=False)
    parser.add_argument("--kind", choices=sorted(EXAMPLES), default="functions")
    known, rest = parser.parse_known_args(argv)
    return known.kind, rest


def main(argv: list[str] | None = None) -> int:
    kind, daemon_args = split_kind(list(argv if argv is not None else sys.argv[1:]))
    ex = EXAMPLES[kind]
    STATE.mkdir(exist_ok=True)
    proc = subprocess.Popen(daemon_argv(daemon_args), cwd=REPO)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    admin = AdminClient(str(SOCKET))
    try:
        if wait_for_socket(proc, admin):
            try:
                deployed = wait_deployed(admin, ex) if deploy_example(admin, ex) else {}
                explain(deployed, admin, ex)
            except CliError as exc:
                print(f"devrun: could not deploy the example: {exc}", file=sys.stderr)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
