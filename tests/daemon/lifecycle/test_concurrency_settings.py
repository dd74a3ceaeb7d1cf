from __future__ import annotations

import pytest

from daemon.config.daemon_config import Config
from daemon.core.errors import BadRequest
from daemon.core.models import Settings
from daemon.lifecycle.request_checks import default_settings, settings


def test_concurrency_and_workers_are_set_and_kept() -> None:
    config = Config()
    base = default_settings(config)
    assert (base.concurrency, base.workers_per_replica) == (1, None)
    out = settings({"concurrency": 32, "workers_per_replica": 4}, base, config)
    assert (out.concurrency, out.workers_per_replica) == (32, 4)
    # a field not sent stays; null puts the workers back to one per vCPU
    again = settings({"workers_per_replica": None}, out, config)
    assert (again.concurrency, again.workers_per_replica) == (32, None)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"concurrency": 0}, ["concurrency", "from 1 to 64"]),
        ({"concurrency": 65}, ["concurrency", "from 1 to 64"]),
        ({"concurrency": "8"}, ["concurrency"]),
        ({"concurrency": True}, ["concurrency"]),
        ({"workers_per_replica": 17}, ["workers_per_replica", "from 1 to 16", "null"]),
        ({"workers_per_replica": 0}, ["workers_per_replica"]),
    ],
)
def test_bad_values_are_refused(body: dict[str, object], words: list[str]) -> None:
    config = Config()
    with pytest.raises(BadRequest) as exc:
        settings(body, default_settings(config), config)
    for word in words:
        assert word in str(exc.value)


def test_snapshots_without_them_read_as_the_defaults() -> None:
    old = Settings.from_json({"env": [], "timeout_s": 30})
    assert (old.concurrency, old.workers_per_replica) == (1, None)
    new = Settings(env=(), timeout_s=30, concurrency=8, workers_per_replica=2)
    assert Settings.from_json(new.to_json()) == new
