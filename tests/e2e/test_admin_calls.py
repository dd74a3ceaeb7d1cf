"""API keys, endpoint snippets, execution records and account uploads through
`scriptctl --json` (a subprocess) against the real daemon, with real calls on
the gateway. One daemon for the module; tests use distinct script names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.helpers import (
    REPO,
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    make_zip,
    running_daemon,
)

MAIN = """\
def hello(name="world"):
    return "hello " + name


def boom():
    print("about to fail")
    raise ValueError("nope")
"""
CONFIG: dict[str, Any] = {**TINY_PROFILES, "uploads": {"max_file_bytes": 100_000}}
KEY_RE = re.compile(r"sk_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Ctl:
    """`python -m daemon.cli --socket SOCK [--json] ...` as a subprocess."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = str(socket_path)

    def run(self, *argv: str, json_output: bool = True) -> Result:
        env = {k: v for k, v in os.environ.items() if k != "SCRIPTD_SOCKET"}
        mode = ["--json"] if json_output else []
        proc = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "--socket", self.socket_path, *mode, *argv],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *argv: str) -> Any:
        result = self.run(*argv)
        assert result.code == 0, f"scriptctl {' '.join(argv)} failed:\n{result.err}"
        return result.json()

    def refused(self, *argv: str) -> str:
        """The one error line of a command that must fail."""
        result = self.run(*argv)
        assert result.code != 0, f"scriptctl {' '.join(argv)} should have failed:\n{result.out}"
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("scriptctl: error: "), result.err
        return lines[0]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("calls"), CONFIG, build_cache) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> AdminClient:
    return daemon.client()


@pytest.fixture(scope="module")
def ctl(daemon: DaemonProcess) -> Ctl:
    return Ctl(daemon.admin_socket)


@pytest.fixture(scope="module")
def deployed(admin: AdminClient) -> str:
    """A Deployed Python script named "live"."""
    require_root()
    admin.create("live", make_zip({"main.py": MAIN}), deploy=True)
    script = admin.wait_status("live")
    assert script["status"] == "Deployed", script
    return "live"


def wait_for(check: Any, timeout: float = 10) -> Any:
    """Poll `check()` until it returns something true (records are written in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_keys_create_list_search_delete(
    ctl: Ctl, admin: AdminClient, daemon: DaemonProcess
) -> None:
    admin.create("keyed")
    first = ctl.ok("keys", "create", "keyed")
    assert KEY_RE.fullmatch(first["key"]) and first["name"] == "Secret Key"
    assert first["created_by"] and first["last_used_at"] is None
    assert first["key"].startswith(f"sk_{first['id']}_")
    second = ctl.ok("keys", "create", "keyed")
    assert second["name"] == "Secret Key 2" and second["key"] != first["key"]
    ctl.ok("keys", "create", "keyed", "--key-name", "  CI bot  ")

    listed = ctl.ok("keys", "list", "keyed")
    assert [k["name"] for k in listed["keys"]] == ["Secret Key", "Secret Key 2", "CI bot"]
    assert all(set(k) == {"id", "name", "created_by", "created_at", "last_used_at"}
               for k in listed["keys"])  # fmt: skip
    found = ctl.ok("keys", "list", "keyed", "--search", "ci")["keys"]
    assert [k["name"] for k in found] == ["CI bot"]

    deleted = ctl.ok("keys", "delete", "keyed", "Secret Key 2")
    assert deleted == {"deleted": "Secret Key 2", "id": second["id"], "script": "keyed"}
    assert "no API key named 'Secret Key 2'" in ctl.refused(
        "keys", "delete", "keyed", "Secret Key 2"
    )
    names = [k["name"] for k in ctl.ok("keys", "list", "keyed")["keys"]]
    assert names == ["Secret Key", "CI bot"]
    kinds = [e["kind"] for e in admin.history("keyed")["events"]]
    assert kinds.count("key_created") == 3 and kinds.count("key_deleted") == 1


def test_key_names_are_checked_and_unique(ctl: Ctl, admin: AdminClient) -> None:
    admin.create("names")
    ctl.ok("keys", "create", "names", "--key-name", "prod")
    assert "already has a key named 'prod'" in ctl.refused(
        "keys", "create", "names", "--key-name", "prod"
    )
    assert "empty" in ctl.refused("keys", "create", "names", "--key-name", "   ")
    assert "limit is 64" in ctl.refused("keys", "create", "names", "--key-name", "k" * 65)
    assert "non-printable" in ctl.refused("keys", "create", "names", "--key-name", "a\tb")
    assert "no script named 'ghost'" in ctl.refused("keys", "create", "ghost")
    assert [k["name"] for k in ctl.ok("keys", "list", "names")["keys"]] == ["prod"]


def test_the_key_is_printed_once_and_never_again(
    ctl: Ctl, admin: AdminClient, daemon: DaemonProcess
) -> None:
    admin.create("once")
    created = ctl.run("keys", "create", "once", json_output=False)
    assert created.code == 0, created.err
    keys = KEY_RE.findall(created.out)
    assert len(keys) == 1 and "will not be shown again" in created.out
    secret = keys[0].split("_", 2)[2]
    shown_later = [
        ctl.run("keys", "list", "once", json_output=False).out,
        ctl.run("keys", "list", "once").out,
        ctl.run("show", "once").out,
        ctl.run("history", "once").out,
        json.dumps(admin.get("/openapi.json")),
    ]
    assert not any(secret in text for text in shown_later)
    # Only an argon2id hash reaches the disk.
    for path in daemon.state_dir.glob("scriptd.db*"):
        assert secret.encode() not in path.read_bytes(), path
    assert any(b"$argon2id$" in p.read_bytes() for p in daemon.state_dir.glob("scriptd.db*"))


def test_endpoint_is_refused_until_deployed(ctl: Ctl, admin: AdminClient) -> None:
    admin.create("drafty")
    line = ctl.refused("endpoint", "drafty")
    assert "is Draft" in line and "only while Deployed" in line
    assert "format" in ctl.run("endpoint", "drafty", "--format", "ruby").err


def test_endpoint_of_a_deployed_script(ctl: Ctl, daemon: DaemonProcess, deployed: str) -> None:
    doc = ctl.ok("endpoint", deployed)
    base = f"http://127.0.0.1:{daemon.port}"
    assert doc["base_url"] == base and doc["formats"] == ["curl", "javascript", "python"]
    assert [f["function"] for f in doc["functions"]] == ["hello", "boom"]  # as defined
    hello = doc["functions"][0]
    assert hello["url"] == f"{base}/v1/scripts/live/functions/hello"
    assert "YOUR_API_KEY" in hello["curl"] and "fetch(" in hello["javascript"]
    only = ctl.ok("endpoint", deployed, "--format", "python")
    assert set(only["functions"][0]) == {"function", "url", "python", "parameters"}
    assert only["functions"][0]["parameters"]["properties"] == {"name": {"default": "world"}}
    text = ctl.run("endpoint", deployed, "--format", "curl", json_output=False)
    head = '# parameters:\n#   live.hello(name: any = "world")\n#   live.boom()\n'
    assert text.out.startswith(head), text.out[:200]
    assert "\n# live.hello - cURL\ncurl -X POST" in text.out
    assert "YOUR_API_KEY" in text.err


def test_calls_are_recorded_and_a_deleted_key_is_refused_at_once(
    ctl: Ctl, daemon: DaemonProcess, deployed: str
) -> None:
    key = ctl.ok("keys", "create", deployed, "--key-name", "recorder")
    gw = daemon.gateway(key["key"])
    try:
        ok = gw.call(deployed, "hello", {"name": "Ada"})
        assert ok.status == 200 and ok.json() == {"result": "hello Ada"}
        failed = gw.call(deployed, "boom")
        assert failed.status == 422
        ok_id = ok.headers["X-Scriptd-Execution-Id"]
        failed_id = failed.headers["X-Scriptd-Execution-Id"]

        def listed() -> list[dict[str, Any]]:
            items = ctl.ok("executions", deployed, "--limit", "50")["executions"]
            ids = {e["id"] for e in items}
            return items if {ok_id, failed_id} <= ids else []

        items = wait_for(listed)
        assert items, "the two calls were never recorded"
        assert [e["id"] for e in items].index(failed_id) < [e["id"] for e in items].index(ok_id)
        assert len(ctl.ok("executions", deployed, "--limit", "1")["executions"]) == 1
        path = f"/v1/scripts/{deployed}/executions?function=boom"
        assert [e["id"] for e in daemon.client().get(path)["executions"]] == [failed_id]
        record = ctl.ok("execution", ok_id)
        assert record["script"] == deployed and record["function"] == "hello"
        assert record["status"] == "ok" and record["key_name"] == "recorder"
        assert record["result"] == "hello Ada" and record["version"] == 1
        bad = ctl.ok("execution", failed_id)
        assert bad["status"] == "error" and bad["error"]["type"] == "ValueError"
        table = ctl.run("executions", deployed, json_output=False).out
        assert ok_id in table and "ValueError: nope" in table
        assert "no execution" in ctl.refused("execution", "no-such-id")

        def used() -> Any:
            keys = ctl.ok("keys", "list", deployed, "--search", "recorder")["keys"]
            return keys[0]["last_used_at"]

        assert wait_for(used), "last_used_at was never written"

        ctl.ok("keys", "delete", deployed, "recorder")
        refused = gw.call(deployed, "hello")
        assert refused.status == 401, refused.body
    finally:
        gw.close()


def test_uploads_add_list_delete(ctl: Ctl, tmp_path: Path, daemon: DaemonProcess) -> None:
    data = tmp_path / "table.csv"
    data.write_bytes(b"a,b\n1,2\n")
    stored = ctl.ok("uploads", "add", str(data))
    assert stored["name"] == "table.csv" and stored["size"] == 8
    ctl.ok("uploads", "add", str(data), "--name", "copy.csv")
    assert "already uploaded" in ctl.refused("uploads", "add", str(data))
    data.write_bytes(b"new")
    assert ctl.ok("uploads", "add", str(data), "--replace")["size"] == 3
    assert "not allowed" in ctl.refused("uploads", "add", str(data), "--name", ".hidden")
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * 100_001)
    assert "limit" in ctl.refused("uploads", "add", str(big))

    names = [f["name"] for f in ctl.ok("uploads", "list")["files"]]
    assert {"copy.csv", "table.csv"} <= set(names) and "big.bin" not in names
    folder = daemon.state_dir / "files"
    assert (folder / "table.csv").read_bytes() == b"new"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries

    assert ctl.ok("uploads", "delete", "copy.csv") == {"deleted": "copy.csv"}
    assert "no uploaded file" in ctl.refused("uploads", "delete", "copy.csv")
    assert "copy.csv" not in {f["name"] for f in ctl.ok("uploads", "list")["files"]}


def test_openapi_describes_the_new_routes(admin: AdminClient) -> None:
    paths = admin.get("/openapi.json")["paths"]
    for path, method in [
        ("/v1/scripts/{name}/keys", "post"), ("/v1/scripts/{name}/keys", "get"),
        ("/v1/scripts/{name}/keys/{key_name}", "delete"), ("/v1/scripts/{name}/endpoint", "get"),
        ("/v1/scripts/{name}/executions", "get"), ("/v1/executions/{id}", "get"),
        ("/v1/uploads", "get"), ("/v1/uploads", "post"), ("/v1/uploads/{filename}", "delete"),
    ]:  # fmt: skip
        assert method in paths[path], (path, method)
    params = paths["/v1/scripts/{name}/executions"]["get"]["parameters"]
    assert {p["name"] for p in params} == {"name", "limit", "before", "status", "since", "function"}
