"""Config keys of the call path: defaults, refusals that name the key, and how
main.py turns them into the replica runner's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.build.catalogue import Catalogue, Runtime
from daemon.config.daemon_config import Config
from daemon.config.loader import config_from_mapping
from daemon.core.errors import ConfigError
from daemon.serving.runner_setup import runner_settings


def test_defaults() -> None:
    c = Config()
    assert c.max_body_bytes == 4 << 20
    assert c.uploads_dir == Path("/var/lib/scriptd/files")
    assert (c.queue_max, c.queue_max_wait_s, c.cancel_grace_s) == (64, 10.0, 2.0)
    assert c.cgroup_name is None  # derived from the state dir: cgroup_root_name


def test_the_cgroup_root_name_follows_the_state_dir(tmp_path: Path) -> None:
    a, b = Config(state_dir=tmp_path / "a"), Config(state_dir=tmp_path / "b")
    assert a.cgroup_root_name.startswith("scriptd-") and len(a.cgroup_root_name) == 20
    assert a.cgroup_root_name != b.cgroup_root_name
    same = Config(state_dir=tmp_path / "x" / ".." / "a")  # resolved: the same folder
    assert same.cgroup_root_name == a.cgroup_root_name
    assert Config(state_dir=tmp_path, cgroup_name="mine").cgroup_root_name == "mine"


def test_keys_reach_the_runner_settings() -> None:
    c = config_from_mapping({
        "state_dir": "/srv/s",
        "uploads": {"dir": "/srv/files"},
        "dispatch": {"max_queue": 3, "max_wait_s": 0.5, "cancel_grace_s": 0.25},
        "replicas": {"start_timeout_s": 5, "max_start_failures": 2, "uid_base": 300000,
                     "uid_count": 1000, "ping_interval_s": 1, "ping_timeout_s": 3,
                     "shutdown_drain_s": 2},
        "sandbox": {"cgroup_name": "scriptd-b"},
    })  # fmt: skip
    python = Runtime("python", "3.11.2", "/usr/bin/python3.11", default=True, prefix="/usr")
    node = Runtime("javascript", "20.1.0", "/usr/bin/node", default=True, prefix="/usr")
    s = runner_settings(c, Catalogue((python, node)))
    assert s.launch.supervisor_python == "/usr/bin/python3.11"  # never the daemon's own
    assert runner_settings(c, Catalogue((node,))).launch.supervisor_python is None
    assert s.launch.uploads_dir == Path("/srv/files")
    assert (s.launch.uid_base, s.launch.uid_count) == (300000, 1000)
    assert (s.pool.start_timeout_s, s.pool.max_start_failures) == (5.0, 2)
    assert (s.pool.ping_interval_s, s.pool.ping_timeout_s) == (1.0, 3.0)
    assert (s.dispatch.max_queue, s.dispatch.max_wait_s, s.dispatch.cancel_grace_s) == (
        3,
        0.5,
        0.25,
    )
    assert s.shutdown_drain_s == 2.0
    assert c.cgroup_name == c.cgroup_root_name == "scriptd-b"


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"gateway": {"max_body_bytes": 10}}, "gateway.max_body_bytes"),
        ({"dispatch": {"max_wait_s": "soon"}}, "dispatch.max_wait_s"),
        ({"sandbox": {"cgroup_name": "../up"}}, "sandbox.cgroup_name"),
        ({"uploads": {"dir": "relative"}}, "uploads.dir"),
        ({"replicas": {"ping_interval_s": 5, "ping_timeout_s": 5}}, "replicas.ping_timeout_s"),
        ({"replicas": {"max_start_failures": True}}, "replicas.max_start_failures"),
    ],
)
def test_bad_values_name_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_mapping(doc)
