"""DESIGN.md's status table, cell by cell, against the real daemon.

A `uv` wrapper (config build.uv) makes builds controllable from the project
itself: a line `six==1.16.0  # slow-marker` in requirements.txt keeps the build running (the
script stays Deploying), `# fail-marker` makes it fail (Deployment Failed). The
wrapper reads the requirements it is given: the build user never sees the
project's other files.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.daemon.build_tools import build_python, copy_uv, tool_folder, write_tool
from tests.helpers import AdminClient, DaemonProcess, make_zip, start_daemon

WRAPPER = """#!{python}
import os, sys, time
args = sys.argv[1:]
reqs = open(args[args.index("-r") + 1]).read() if "-r" in args else ""
if "slow-marker" in reqs:
    time.sleep(60)
if "fail-marker" in reqs:
    print("failing on purpose", file=sys.stderr)
    sys.exit(1)
os.execv({uv!r}, [{uv!r}, *args])
"""
YES, NO = True, False
# status -> action -> allowed (DESIGN.md)
TABLE = {
    "Draft": {"update": YES, "export": YES, "delete": YES, "deploy": YES, "redeploy": NO,
              "undeploy": NO},
    "Deploying": {"update": NO, "export": YES, "delete": YES, "deploy": NO, "redeploy": NO,
                  "undeploy": NO},
    "Ready to Deploy": {"update": YES, "export": YES, "delete": YES, "deploy": YES,
                        "redeploy": NO, "undeploy": NO},
    "Deployed": {"update": NO, "export": YES, "delete": NO, "deploy": NO, "redeploy": YES,
                 "undeploy": YES},
    "Deployment Failed": {"update": YES, "export": YES, "delete": YES, "deploy": YES,
                          "redeploy": NO, "undeploy": NO},
}  # fmt: skip


@pytest.fixture(scope="module")
def table_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("table")
    with tool_folder() as tools:
        text = WRAPPER.format(python=build_python(), uv=copy_uv(tools))
        wrapper = write_tool(tools, "uv-wrapper", text)
        # enough build slots that the builds held in `slow-marker` never queue the others
        config = {"build": {"uv": str(wrapper), "parallel": 32}}
        d = start_daemon(root / "d", config, root / "cache")
        yield d
        d.stop()


def project(marker: str | None = None) -> bytes:
    # a marker comes with a real requirement: uv pip install runs only for those
    reqs = f"# {uuid.uuid4()}\n" + (f"six==1.16.0  # {marker}\n" if marker else "")
    return make_zip({"main.py": "def f():\n    return 1\n", "requirements.txt": reqs})


def script_in(admin: AdminClient, status: str, name: str) -> None:
    if status == "Draft":
        admin.create(name, project())
    elif status == "Deploying":
        admin.create(name, project("slow-marker"), deploy=True)
        admin.wait_phase(name, "building")
    elif status == "Deployment Failed":
        admin.create(name, project("fail-marker"), deploy=True)
        assert admin.wait_status(name)["status"] == status
    else:
        admin.create(name, project(), deploy=True)
        assert admin.wait_status(name)["status"] == "Deployed"
        if status == "Ready to Deploy":
            admin.action(name, "undeploy", expect=200)
    assert admin.script(name)["status"] == status


def attempt(admin: AdminClient, name: str, action: str) -> int:
    requests = {
        "update": ("PATCH", f"/v1/scripts/{name}", {"description": "changed"}),
        "export": ("GET", f"/v1/scripts/{name}/export", None),
        "delete": ("DELETE", f"/v1/scripts/{name}", None),
        "deploy": ("POST", f"/v1/scripts/{name}/deploy", {}),
        "redeploy": ("POST", f"/v1/scripts/{name}/redeploy", {"description": "again"}),
        "undeploy": ("POST", f"/v1/scripts/{name}/undeploy", {}),
    }
    method, path, body = requests[action]
    r = admin.request(method, path, body)
    if r.status == 409:
        message = r.json()["error"]["message"]
        status = admin.script(name)["status"]
        assert f"it is {status}" in message and f"{status} allows:" in message, message
    return r.status


CELLS = [(status, action) for status, row in TABLE.items() for action in row]


@pytest.mark.parametrize(("status", "action"), CELLS, ids=[f"{s}-{a}" for s, a in CELLS])
def test_cell(table_daemon: DaemonProcess, status: str, action: str) -> None:
    admin = table_daemon.client()
    name = f"t{uuid.uuid4().hex[:10]}"
    script_in(admin, status, name)
    before = admin.script(name)
    code = attempt(admin, name, action)
    if TABLE[status][action]:
        assert code in (200, 202), (status, action, code)
    else:
        assert code == 409, (status, action, code)
        after = admin.script(name)
        assert after["updated_at"] == before["updated_at"]  # a refusal changes nothing


def test_delete_while_deploying_cancels_the_build(table_daemon: DaemonProcess) -> None:
    admin = table_daemon.client()
    folders = table_daemon.state_dir / "scripts"
    before = set(folders.iterdir())
    script_in(admin, "Deploying", "cancelme")
    (mine,) = set(folders.iterdir()) - before
    assert admin.call("DELETE", "/v1/scripts/cancelme") == {"deleted": "cancelme"}
    assert admin.request("GET", "/v1/scripts/cancelme").status == 404
    assert not mine.exists()
