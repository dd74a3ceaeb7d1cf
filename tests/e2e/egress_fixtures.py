"""The egress e2e tests' fixtures: real HTTP and HTTPS servers on the host's loopback
(127.0.0.2: inside a sandbox 127.0.0.1 is the sandbox itself, and NO_PROXY keeps it
there), and a daemon that opens their network with egress.allowed_networks and trusts
the HTTPS one's test CA through egress.upstream_ca_file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.daemon.egress.support import Servers, servers_in_thread
from tests.helpers import TINY_PROFILES, DaemonProcess, running_daemon

# A profile of two whole vCPUs: its replicas run two workers.
DUO_PROFILE = {"name": "duo", "label": "duo (tests)", "nominal_vcpus": 2,
               "nominal_memory_gib": 2, "vcpus": 2, "memory_gib": 0.5,
               "credits_per_hour": 0.02}  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The servers run on a loop of their own in a thread, beside the daemon."""
    with servers_in_thread(tmp_path_factory.mktemp("egress-servers"), "127.0.0.2") as found:
        yield found


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, build_cache: Path, servers: Servers
) -> Iterator[DaemonProcess]:
    require_root()
    config: dict[str, Any] = {
        "profiles": [*TINY_PROFILES["profiles"], DUO_PROFILE],
        "settings": {"timeout_min_s": 1, "timeout_default_s": 30},
        "egress": {
            "ports": [servers.http_port, servers.https_port],
            "allowed_networks": ["127.0.0.0/8"],
            "upstream_ca_file": str(servers.ca_file),
        },
    }
    with running_daemon(tmp_path_factory.mktemp("egress"), config, build_cache) as d:
        yield d


def record(daemon: DaemonProcess, execution_id: str) -> dict[str, Any]:
    """The execution record, once the recorder has written it."""
    admin = daemon.client()
    deadline = time.monotonic() + 20
    while True:
        response = admin.request("GET", f"/v1/executions/{execution_id}")
        if response.status == 200:
            found: dict[str, Any] = response.json()
            return found
        assert time.monotonic() < deadline, f"no record of {execution_id}: {response.body!r}"
        time.sleep(0.1)
