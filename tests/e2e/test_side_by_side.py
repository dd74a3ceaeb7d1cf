"""Two daemons with different state dirs on one host, both with the cgroup root name
they derive from their state dir (no sandbox.cgroup_name): each keeps serving its
own script while the other starts, stops and is killed and started again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon.config.daemon_config import Config
from sandbox.cgroup_layout import discover
from tests.conftest import require_root
from tests.helpers import TINY_PROFILES, DaemonProcess, create_key, make_zip, start_daemon

MAIN = "import os\n\ndef who():\n    return os.environ['OWNER']\n"


def deploy(daemon: DaemonProcess, owner: str) -> str:
    admin = daemon.client()
    env = [{"key": "OWNER", "value": owner, "secret": False}]
    admin.create("svc", make_zip({"main.py": MAIN}), deploy=True, env=env)
    assert admin.wait_status("svc")["status"] == "Deployed"
    return create_key(admin, "svc")


def answers(daemon: DaemonProcess, key: str, owner: str, timeout: float = 60) -> None:
    """The daemon's script answers as `owner` (retried while replicas start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = daemon.gateway(key).call("svc", "who", {})
            if r.status == 200:
                assert r.json() == {"result": owner}
                return
        except ConnectionError:
            pass
        assert time.monotonic() < deadline, f"{owner}'s script stopped answering"
        time.sleep(0.1)


def cgroup_root(daemon: DaemonProcess) -> Path:
    unified = discover().unified_dir()
    assert unified is not None
    return Path(unified) / Config(state_dir=daemon.state_dir).cgroup_root_name


def replica_cgroups(daemon: DaemonProcess) -> set[str]:
    root = cgroup_root(daemon)
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def settled_cgroups(daemon: DaemonProcess, timeout: float = 30) -> set[str]:
    """The daemon's sandboxes once its replica's spare is parked beside it (a pool parks
    one shortly after its start, replicas.spare_sandbox): then nothing comes or goes."""
    deadline = time.monotonic() + timeout
    while len(found := replica_cgroups(daemon)) < 2:
        assert time.monotonic() < deadline, f"no replica and spare: {found}"
        time.sleep(0.05)
    return found


def test_two_daemons_never_touch_each_others_replicas(tmp_path: Path, build_cache: Path) -> None:
    require_root()
    a = start_daemon(tmp_path / "a", TINY_PROFILES, build_cache, derived_cgroup=True)
    b = None
    try:
        key_a = deploy(a, "a")
        assert cgroup_root(a).name.startswith("scriptd-")
        replicas_a = settled_cgroups(a)
        b = start_daemon(tmp_path / "b", TINY_PROFILES, build_cache, derived_cgroup=True)
        assert cgroup_root(a) != cgroup_root(b)
        key_b = deploy(b, "b")
        answers(a, key_a, "a")
        assert b.stop() == 0  # b's shutdown removes only its own root
        answers(a, key_a, "a")
        assert replica_cgroups(a) == replicas_a and not cgroup_root(b).exists()
        b.start()
        answers(b, key_b, "b")
        b.kill()
        b.start()  # b's leftovers are its own: a's replica is not one of them
        answers(b, key_b, "b")
        answers(a, key_a, "a")
        assert replica_cgroups(a) == replicas_a
        a.kill()
        a.start()
        answers(a, key_a, "a")
        answers(b, key_b, "b")
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_a_daemon_given_anothers_cgroup_name_refuses_to_start(
    tmp_path: Path, build_cache: Path
) -> None:
    require_root()
    a = start_daemon(tmp_path / "a", TINY_PROFILES, build_cache, derived_cgroup=True)
    try:
        key_a = deploy(a, "a")
        replicas_a = settled_cgroups(a)
        taken = {**TINY_PROFILES, "sandbox": {"cgroup_name": cgroup_root(a).name}}
        with pytest.raises(RuntimeError, match="in use by another process"):
            start_daemon(tmp_path / "b", taken, build_cache)
        answers(a, key_a, "a")
        assert replica_cgroups(a) == replicas_a  # nothing of a's was cleaned up
    finally:
        a.stop()
