"""WORKSPACE_DIR is a filesystem of the profile's size (workspace_bytes), against the
real daemon: a script that writes past it gets ENOSPC and the next call is fine;
the data stays over undeploy, deploy and restarts (SIGTERM and SIGKILL), the mount
goes at shutdown, and delete removes the image. A plain folder of an older state
dir is migrated into an image."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.helpers import TINY_PROFILES, DaemonProcess, create_key, make_zip

WORKSPACE_BYTES = 64 << 20
MAIN = """\
import errno, os

def fill(mb=200):
    path = os.path.join(os.environ["WORKSPACE_DIR"], "fill.bin")
    written = 0
    try:
        with open(path, "wb") as f:
            for _ in range(mb):
                written += f.write(b"x" * (1 << 20))
            os.fsync(f.fileno())
    except OSError as e:
        os.unlink(path)
        return {"error": errno.errorcode.get(e.errno), "written": written}
    return {"error": None, "written": written}

def put(text):
    with open(os.path.join(os.environ["WORKSPACE_DIR"], "note.txt"), "w") as f:
        f.write(text)

def get():
    try:
        with open(os.path.join(os.environ["WORKSPACE_DIR"], "note.txt")) as f:
            return f.read()
    except FileNotFoundError:
        return None
"""


@pytest.fixture
def daemon_config() -> dict[str, Any]:
    profiles = [{**p, "workspace_bytes": WORKSPACE_BYTES} for p in TINY_PROFILES["profiles"]]
    return {"profiles": profiles}


def mounts_below(folder: Path) -> list[str]:
    top = os.path.realpath(folder) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(top)]


def call(daemon: DaemonProcess, key: str, fn: str, payload: Any = None) -> Any:
    """The function's result; retried until a replica answers (after a start)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            r = daemon.gateway(key).call("ws", fn, payload or {})
            if r.status == 200 or time.monotonic() > deadline:
                assert r.status == 200, (r.status, r.body)
                return r.json()["result"]
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def deploy(daemon: DaemonProcess) -> str:
    admin = daemon.client()
    admin.create("ws", make_zip({"main.py": MAIN}), deploy=True)
    assert admin.wait_status("ws")["status"] == "Deployed"
    return create_key(admin, "ws")


def test_a_write_past_the_limit_fails_inside_the_script_only(daemon: DaemonProcess) -> None:
    require_root()
    key = deploy(daemon)
    result = call(daemon, key, "fill", {"mb": 200})
    assert result["error"] == "ENOSPC" and result["written"] < WORKSPACE_BYTES, result
    call(daemon, key, "put", {"text": "still writable"})
    assert call(daemon, key, "get") == "still writable"
    assert daemon.gateway().request("GET", "/healthz").status == 200
    workspace = daemon.client().script("ws")["workspace"]
    assert workspace["limit_bytes"] == WORKSPACE_BYTES
    assert 0 < workspace["used_bytes"] < WORKSPACE_BYTES
    shown = subprocess.run(
        [*scriptctl(daemon), "show", "ws"], capture_output=True, text=True, check=True
    ).stdout
    assert "Workspace" in shown and "64.0 MB" in shown, shown


def scriptctl(daemon: DaemonProcess) -> list[str]:
    import sys

    return [sys.executable, "-m", "daemon.cli", "--socket", str(daemon.socket)]


def test_data_stays_over_undeploy_and_restarts_and_goes_with_delete(
    daemon: DaemonProcess,
) -> None:
    require_root()
    key = deploy(daemon)
    call(daemon, key, "put", {"text": "kept"})
    scripts = daemon.state_dir / "scripts"
    admin = daemon.client()
    admin.action("ws", "undeploy", expect=200)
    assert mounts_below(scripts) == []  # no replica: no loop device either
    admin.action("ws", "deploy")
    assert admin.wait_status("ws")["status"] == "Deployed"
    assert call(daemon, key, "get") == "kept"
    assert daemon.stop() == 0
    assert mounts_below(scripts) == []  # shutdown unmounts
    daemon.start()
    assert call(daemon, key, "get") == "kept"
    daemon.kill()  # no shutdown: the mount stays, and the next start reuses it
    assert len(mounts_below(scripts)) == 1
    daemon.start()
    assert call(daemon, key, "get") == "kept"
    admin = daemon.client()
    admin.action("ws", "undeploy", expect=200)
    admin.call("DELETE", "/v1/scripts/ws")
    assert mounts_below(scripts) == []
    assert list(scripts.glob("*/workspace.img")) == []
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(scripts) not in losetup


def test_a_plain_workspace_folder_is_migrated_into_an_image(daemon: DaemonProcess) -> None:
    require_root()
    key = deploy(daemon)
    call(daemon, key, "put", {"text": "from the image"})
    assert daemon.stop() == 0
    (image,) = daemon.state_dir.glob("scripts/*/workspace.img")
    workspace = image.with_name("workspace")
    image.unlink()  # the layout before images: a plain folder with the script's files
    (workspace / "note.txt").write_text("from the old folder")
    uid = (workspace.stat().st_uid, workspace.stat().st_gid)
    os.chown(workspace / "note.txt", *uid)
    daemon.start()
    assert call(daemon, key, "get") == "from the old folder"
    assert image.exists() and os.path.ismount(workspace)
    assert not workspace.with_name("workspace.migrating").exists()
    shutil.disk_usage(workspace)  # a filesystem of its own now
    assert daemon.client().script("ws")["workspace"]["used_bytes"] > 0
