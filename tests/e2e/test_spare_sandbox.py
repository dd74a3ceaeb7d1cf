"""The spare sandbox of a Deployed version, against the real daemon: parked beside the
replica and never listed as one; a crashed replica's replacement is released from it and
answers; undeploy, and a SIGKILLed daemon's next start, leave no spare behind."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import require_root
from tests.helpers import (
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    create_key,
    make_zip,
    running_daemon,
)

T = TypeVar("T")
MAIN = """\
import os
import time

def pid():
    return os.getpid()

def token():
    return os.environ.get("SPARE_TOKEN")

WORKER = os.urandom(8).hex()  # pids repeat: each replica has its own pid namespace

def nap(s):
    time.sleep(s)
    return WORKER
"""
# The autoscaler scales up on calls waiting (the queue signal), quickly.
CONFIG = {**TINY_PROFILES, "autoscale": {"tick_s": 0.2, "queue_wait_s": 0.2}}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    with running_daemon(tmp_path_factory.mktemp("spare"), CONFIG, build_cache) as d:
        yield d


def _until(probe: Callable[[], T | None], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _root(daemon: DaemonProcess) -> Path:
    """The daemon's cgroup root in the pids hierarchy (v1), else the unified one."""
    assert daemon.proc is not None
    lines = Path(f"/proc/{daemon.proc.pid}/cgroup").read_text().splitlines()
    own = {ctrl: path for _, ctrl, path in (line.split(":", 2) for line in lines)}
    base = Path("/sys/fs/cgroup/pids") if "pids" in own else Path("/sys/fs/cgroup")
    return base / own.get("pids", own.get("")).lstrip("/") / f"scriptd-test-{daemon.port}"


def _leaves(daemon: DaemonProcess, script: str = "") -> dict[str, list[int]]:
    """The sandboxes' cgroups below the daemon's root (of `script`'s versions only, when
    given: the tests share a daemon), with their processes."""
    root = _root(daemon)
    out = {}
    for leaf in root.iterdir() if root.is_dir() else ():
        if leaf.is_dir() and leaf.name.startswith(f"{script}-" if script else ""):
            procs = (leaf / "cgroup.procs").read_text().split()
            out[leaf.name] = [int(p) for p in procs]
    return out


def _kill(pids: list[int]) -> None:
    """SIGKILL a replica's processes (one may have exited since its cgroup was read)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _replicas(admin: AdminClient, name: str) -> set[str]:
    return {r["name"] for r in admin.script(name)["replicas"]}


def _spare(daemon: DaemonProcess, admin: AdminClient, name: str) -> tuple[str, list[int]]:
    """The serving version's spare: its cgroup that holds a process and is no replica
    (a previous version's replicas may still be draining beside it)."""

    def parked() -> Any:
        script = admin.script(name)
        replicas = {r["name"] for r in script["replicas"]}
        mine = f"{name}-v{script['current_version']}-"
        spares = {
            k: v
            for k, v in _leaves(daemon).items()
            if k.startswith(mine) and k not in replicas and v
        }
        return next(iter(spares.items()), None) if len(replicas) == 1 else None

    return _until(parked)


def test_a_scale_up_takes_the_spare_and_answers(daemon: DaemonProcess) -> None:
    admin = daemon.client()
    admin.create("scaling", make_zip({"main.py": MAIN}), deploy=True, min_replicas=1,
                 max_replicas=2)  # fmt: skip
    assert admin.wait_status("scaling")["status"] == "Deployed"
    key = create_key(admin, "scaling")
    (first,) = _replicas(admin, "scaling")
    spare, _ = _spare(daemon, admin, "scaling")
    with ThreadPoolExecutor(3) as pool:  # one worker: two of them wait, and it scales up
        naps = [pool.submit(daemon.gateway(key).call, "scaling", "nap", {"s": 1.5})
                for _ in range(3)]  # fmt: skip
        _until(lambda: _replicas(admin, "scaling") == {first, spare})
        workers = {f.result(30).json()["result"] for f in naps}
    assert len(workers) == 2  # both replicas answered
    _until(lambda: len(_leaves(daemon, "scaling")) == 3)  # and a new spare beside them
    admin.action("scaling", "undeploy", expect=200)
    _until(lambda: not _leaves(daemon, "scaling"))


def test_a_replacement_comes_from_the_spare_and_undeploy_leaves_none(
    daemon: DaemonProcess,
) -> None:
    admin = daemon.client()
    admin.create("sparing", make_zip({"main.py": MAIN}), deploy=True)
    assert admin.wait_status("sparing")["status"] == "Deployed"
    gw = daemon.gateway(create_key(admin, "sparing"))
    assert gw.call("sparing", "pid").status == 200
    (first,) = _replicas(admin, "sparing")
    spare, spare_pids = _spare(daemon, admin, "sparing")
    assert admin.script("sparing")["replicas"][0]["name"] == first  # the spare is not one
    _kill(_leaves(daemon)[first])  # the replica crashes
    _until(lambda: _replicas(admin, "sparing") == {spare})
    assert gw.call("sparing", "pid").status == 200
    next_spare, _ = _spare(daemon, admin, "sparing")
    assert next_spare not in (first, spare)
    admin.action("sparing", "undeploy", expect=200)
    _until(lambda: not _leaves(daemon, "sparing"))
    assert not any(os.path.exists(f"/proc/{pid}") for pid in spare_pids)


def test_a_secret_set_while_a_spare_is_parked_reaches_the_released_replica(
    daemon: DaemonProcess,
) -> None:
    """A version's environment, secrets included, is opened at its deploy; the spare is
    sent it at release. So after `secrets set` and the redeploy that takes it, no spare
    of the old version serves, and a replica released from the new one's has the value."""
    admin = daemon.client()
    admin.call("PUT", "/v1/secrets/SPARE_TOKEN", {"value": "before"})
    admin.create("secretive", make_zip({"main.py": MAIN}), deploy=True, secrets=["SPARE_TOKEN"])
    assert admin.wait_status("secretive")["status"] == "Deployed"
    gw = daemon.gateway(create_key(admin, "secretive"))
    old_spare, old_pids = _spare(daemon, admin, "secretive")
    admin.call("PUT", "/v1/secrets/SPARE_TOKEN", {"value": "after"})
    admin.action("secretive", "redeploy")
    assert admin.wait_status("secretive")["current_version"] == 2
    _until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in old_pids))
    (first,) = _replicas(admin, "secretive")
    spare, _ = _spare(daemon, admin, "secretive")
    assert old_spare not in _leaves(daemon)
    _kill(_leaves(daemon)[first])
    _until(lambda: _replicas(admin, "secretive") == {spare})
    assert gw.call("secretive", "token").json() == {"result": "after"}
    admin.action("secretive", "undeploy", expect=200)
    _until(lambda: not _leaves(daemon, "secretive"))


def test_a_killed_daemons_spare_exits_and_is_swept(daemon: DaemonProcess) -> None:
    admin = daemon.client()
    admin.create("swept", make_zip({"main.py": MAIN}), deploy=True)
    assert admin.wait_status("swept")["status"] == "Deployed"
    old_spare, pids = _spare(daemon, admin, "swept")
    daemon.kill()
    _until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids))
    daemon.start()
    admin = daemon.client()
    assert admin.wait_status("swept")["status"] == "Deployed"
    (replica,) = _replicas(admin, "swept")
    new_spare, _ = _spare(daemon, admin, "swept")
    assert set(_leaves(daemon, "swept")) == {replica, new_spare}  # the old spare's is gone
    assert old_spare not in (replica, new_spare)  # (names restart with the daemon's count)
    admin.action("swept", "undeploy", expect=200)
    _until(lambda: not _leaves(daemon, "swept"))
