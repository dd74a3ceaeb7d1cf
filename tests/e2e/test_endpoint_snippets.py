"""The snippets of `scriptctl endpoint`, pasted as they are with only the key
filled in, run for real (sh + curl, node, python3) against the live
daemon's gateway: each must get HTTP 200 and print the function's result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, require_root
from tests.helpers import (
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    create_key,
    make_zip,
    running_daemon,
)

PY_MAIN = 'def greet(name="world"):\n    return {"greeting": "hello " + name}\n'
JS_MAIN = (
    'function greet(p) { return { greeting: "hello " + (p.name || "world") }; }\n'
    "module.exports = { greet };\n"
)
NODE = shutil.which("node")
EXPECTED = {"greeting": "hello world"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    with running_daemon(tmp_path_factory.mktemp("snippets"), TINY_PROFILES, build_cache) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> AdminClient:
    client = daemon.client()
    client.create("snip-py", make_zip({"main.py": PY_MAIN}), deploy=True)
    client.create("snip-js", make_zip({"main.js": JS_MAIN}), language="javascript", deploy=True)
    for name in ("snip-py", "snip-js"):
        assert client.wait_status(name)["status"] == "Deployed", name
    return client


def snippet(admin: AdminClient, script: str, fmt: str, key_name: str | None = None) -> str:
    """The one function's snippet in `fmt`, with a fresh key in place of the placeholder."""
    doc = admin.get(f"/v1/scripts/{script}/endpoint?format={fmt}")
    (function,) = doc["functions"]
    code: str = function[fmt]
    assert code.count(doc["key_placeholder"]) == 1
    return code.replace(doc["key_placeholder"], create_key(admin, script, key_name))


def run(argv: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script", ["snip-py", "snip-js"])
def test_curl_snippet(admin: AdminClient, script: str) -> None:
    require(shutil.which("curl") is not None, "curl is not installed")
    # The pasted command, plus one option that prints the status after the body.
    code = snippet(admin, script, "curl").rstrip("\n") + " \\\n  --write-out '\\n%{http_code}'\n"
    done = run(["sh"], code)
    assert done.returncode == 0, done.stderr
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "200", done.stdout
    assert json.loads(body) == {"result": EXPECTED}


@pytest.mark.parametrize("script", ["snip-py", "snip-js"])
def test_javascript_snippet(admin: AdminClient, script: str, tmp_path: Path) -> None:
    require(NODE is not None, "node is not installed (not on PATH)")
    assert NODE is not None  # for mypy: require() failed or skipped otherwise
    path = tmp_path / "call.js"  # a CommonJS file, as most pasted code ends up
    path.write_text(snippet(admin, script, "javascript"))
    done = subprocess.run([NODE, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # the snippet exits 1 on any non-2xx
    assert json.loads(done.stdout) == EXPECTED


@pytest.mark.parametrize("script", ["snip-py", "snip-js"])
def test_python_snippet(admin: AdminClient, script: str) -> None:
    done = run([sys.executable, "-I", "-"], snippet(admin, script, "python"))
    assert done.returncode == 0, done.stderr  # the snippet exits with the HTTP error otherwise
    assert json.loads(done.stdout) == EXPECTED


def test_each_snippet_call_is_recorded_with_its_key(admin: AdminClient) -> None:
    argv = {"curl": ["sh"], "python": [sys.executable, "-I", "-"]}
    for fmt in argv:
        assert run(argv[fmt], snippet(admin, "snip-py", fmt, f"recorded {fmt}")).returncode == 0
    wanted = {"recorded curl", "recorded python"}
    deadline = time.monotonic() + 10
    names: set[Any] = set()
    while time.monotonic() < deadline and not wanted <= names:
        executions = admin.get("/v1/scripts/snip-py/executions")["executions"]
        names = {e["key_name"] for e in executions if e["status"] == "ok"}
        time.sleep(0.1)
    assert wanted <= names
