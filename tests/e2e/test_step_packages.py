"""The base environment of code steps against the real daemon: a step without a
requirements.txt imports numpy and requests (and calls a loopback HTTP server opened
with egress.allowed_networks), a step with its own requirements.txt still has numpy.

The base environment lives in the session's build cache (tests/helpers.py
`build_cache`): the first step of the test run builds it, every later daemon of the
run reuses it, so this costs one build per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.daemon.egress.support import Servers, servers_in_thread
from tests.helpers import (
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    create_key,
    make_zip,
    running_daemon,
)

NUMPY_STEP = """\
import numpy as np
import requests

outputs.total = int(np.arange(inputs.count).sum())
reply = requests.get(inputs.url, timeout=20)
outputs.status = reply.status_code
outputs.path = reply.json()["path"]
"""
NUMPY_TOML = """\
[inputs]
count = "n"
url = "s"

[outputs]
total = "n"
status = "n"
path = "s"
"""
OWN_REQS_STEP = """\
import numpy
import six

outputs.versions = numpy.__version__ + " " + six.__version__
"""
OWN_REQS_TOML = '[outputs]\nversions = "s"\n'


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with servers_in_thread(tmp_path_factory.mktemp("step-servers"), "127.0.0.2") as found:
        yield found


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, build_cache: Path, servers: Servers
) -> Iterator[DaemonProcess]:
    require_root()
    config: dict[str, Any] = {
        **TINY_PROFILES,
        "egress": {"ports": [servers.http_port], "allowed_networks": ["127.0.0.0/8"]},
    }
    with running_daemon(tmp_path_factory.mktemp("step-packages"), config, build_cache) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> AdminClient:
    return daemon.client()


def run(daemon: DaemonProcess, admin: AdminClient, script: str, inputs: Any) -> Any:
    client = daemon.gateway(create_key(admin, script))
    try:
        r = client.request("POST", f"/v1/scripts/{script}/run", _json(inputs),
                           {"Content-Type": "application/json"})  # fmt: skip
    finally:
        client.close()
    assert r.status == 200, r.body
    return r.json()["outputs"]


def _json(inputs: Any) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def test_a_step_uses_numpy_and_requests_from_the_base_environment(
    daemon: DaemonProcess, admin: AdminClient, servers: Servers
) -> None:
    admin.create("numeric", make_zip({"main.py": NUMPY_STEP, "step.toml": NUMPY_TOML}),
                 deploy=True)  # fmt: skip
    assert admin.wait_status("numeric", timeout=600)["status"] == "Deployed", admin.script(
        "numeric"
    )
    history = admin.history("numeric")["versions"][0]
    log = admin.get(f"/v1/scripts/numeric/versions/{history['number']}/log").decode()
    assert "base environment base-" in log and "numpy" in log, log
    url = f"{servers.http}/echo/from-step"
    outputs = run(daemon, admin, "numeric", {"count": {"n": 5}, "url": {"s": url}})
    assert outputs == {"total": {"n": 10}, "status": {"n": 200}, "path": {"s": "/echo/from-step"}}
    runtimes = admin.get("/v1/runtimes")["runtimes"]
    states = [r["base_env"]["state"] for r in runtimes if r["language"] == "python"]
    assert "ready" in states and "numpy" in runtimes[0]["base_env"]["packages"]


def test_a_step_with_its_own_requirements_still_has_numpy(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    files = {"main.py": OWN_REQS_STEP, "step.toml": OWN_REQS_TOML,
             "requirements.txt": "six==1.16.0\n"}  # fmt: skip
    admin.create("own-reqs", make_zip(files), deploy=True)
    deployed = admin.wait_status("own-reqs", timeout=600)
    assert deployed["status"] == "Deployed", deployed
    versions = run(daemon, admin, "own-reqs", {})["versions"]["s"]
    assert versions.endswith(" 1.16.0") and versions[0].isdigit()
