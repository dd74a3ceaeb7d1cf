"""Against the real daemon: the environment of a deleted script is swept at the next
start once it has been unused for an hour (its marker's mtime is set back here),
while the environment of a script that still exists stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon.build.sweep import KEEP_UNUSED_S
from tests.daemon.lifecycle.test_restart import fresh_project
from tests.helpers import start_daemon

MARKER = ".scriptd-built"


def age(env: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(env / MARKER, (then, then))


def test_environments_no_version_needs_are_swept_at_start(tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # its own cache: the sweep never sees other tests' envs
    daemon = start_daemon(tmp_path / "d", {}, cache)
    try:
        admin = daemon.client()
        for name in ("kept", "gone"):
            admin.create(name, fresh_project(), deploy=True)
            assert admin.wait_status(name)["status"] == "Deployed"
        envs = {p.name: p for p in (cache / "envs").iterdir()}
        assert len(envs) == 2
        admin.action("gone", "undeploy", expect=200)
        admin.call("DELETE", "/v1/scripts/gone")
        assert daemon.stop() == 0
        for env in envs.values():
            age(env, KEEP_UNUSED_S + 60)
        daemon.start()
        left = [p.name for p in (cache / "envs").iterdir()]
        assert len(left) == 1, left
        assert daemon.client().script("kept")["status"] == "Deployed"
    finally:
        daemon.stop()
