"""Prometheus metrics end to end: the real daemon with its metrics listener on a free
loopback port, real sandboxed replicas, real calls through the gateway (ok, raised,
unknown function, a crashed worker, outbound HTTP through the egress proxy to a
loopback server and a refused one), then a scrape parsed with prometheus_client's
own parser and its values checked."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_root
from tests.daemon.egress.support import Servers, servers_in_thread
from tests.helpers import (
    TINY_PROFILES,
    DaemonProcess,
    create_key,
    free_port,
    make_zip,
    running_daemon,
)

MAIN = """\
import os
import urllib.error
import urllib.request


def ok():
    return 1


def boom():
    raise ValueError("no")


def crash():
    os._exit(3)


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code
"""

# Every label of scriptd's metrics: each has a few values at most (no ids, no keys).
LABELS = {"script", "function", "status", "state", "cause", "rule", "direction", "language",
          "outcome", "source", "le"}  # fmt: skip
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with servers_in_thread(tmp_path_factory.mktemp("metrics-servers"), "127.0.0.2") as found:
        yield found


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory,
    build_cache: Path,
    servers: Servers,
    metrics_port: int,
) -> Iterator[DaemonProcess]:
    require_root()
    config: dict[str, Any] = {
        **TINY_PROFILES,
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "egress": {"ports": [servers.http_port], "allowed_networks": ["127.0.0.2/32"]},
    }
    with running_daemon(tmp_path_factory.mktemp("metrics"), config, build_cache) as d:
        yield d


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(port: int, check: Any, timeout: float = 30) -> Samples:
    """Scrape until `check(samples)` holds (the recorder counts calls a moment after
    their answer), within a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        _, samples = scrape(port)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"the metrics never held: {sorted(samples)[:80]}"
        time.sleep(0.1)


def test_a_scrape_after_real_calls(
    daemon: DaemonProcess, servers: Servers, metrics_port: int
) -> None:
    admin = daemon.client()
    admin.create("mx", make_zip({"main.py": MAIN}), deploy=True, timeout_s=30)
    assert admin.wait_status("mx")["status"] == "Deployed"
    gw = daemon.gateway(create_key(admin, "mx"))
    try:
        for _ in range(3):
            assert gw.call("mx", "ok", {}).status == 200
        assert gw.call("mx", "boom", {}).status == 422
        assert gw.call("mx", "nope", {}).status == 404
        assert gw.call("mx", "crash", {}).status == 502
        fetched = gw.call("mx", "fetch", {"url": f"{servers.http}/echo"})
        assert fetched.status == 200 and fetched.json()["result"] == 200
        refused = gw.call("mx", "fetch", {"url": f"http://127.0.0.3:{servers.http_port}/echo"})
        assert refused.json()["result"] == 403
    finally:
        gw.close()

    calls = "scriptd_calls_total"
    samples = wait_for(
        metrics_port, lambda s: value(s, calls, script="mx", function="fetch", status="ok") == 2
    )
    assert value(samples, calls, script="mx", function="ok", status="ok") == 3
    assert value(samples, calls, script="mx", function="boom", status="error") == 1
    assert value(samples, calls, script="mx", function="(unknown)", status="rejected") == 1
    assert value(samples, calls, script="mx", function="crash", status="crashed") == 1
    assert ("scriptd_calls_total", (("function", "nope"), ("script", "mx"), ("status",
            "rejected"))) not in samples  # fmt: skip
    # Durations and queue waits of the 7 calls that reached a worker.
    assert value(samples, "scriptd_call_duration_seconds_count", script="mx") == 7
    assert value(samples, "scriptd_call_queue_wait_seconds_count", script="mx") == 7
    assert 0 < value(samples, "scriptd_call_duration_seconds_sum", script="mx") < 60
    bucket = value(samples, "scriptd_call_duration_seconds_bucket", script="mx", le="+Inf")
    assert bucket == 7
    # The cold start of the one replica, and its state now.
    assert value(samples, "scriptd_replica_start_seconds_count", script="mx") >= 1
    assert value(samples, "scriptd_replicas", script="mx", state="ready") == 1
    assert value(samples, "scriptd_worker_restarts_total", script="mx", cause="crashed") == 1
    # Egress: one request relayed with its bytes, one refused (127.0.0.3 is not opened).
    assert value(samples, "scriptd_egress_requests_total", script="mx") == 1
    assert value(samples, "scriptd_egress_bytes_total", script="mx", direction="in") > 0
    assert value(samples, "scriptd_egress_bytes_total", script="mx", direction="out") > 0
    assert value(samples, "scriptd_egress_upstream_connections_total", script="mx",
                 source="new") == 1  # fmt: skip
    refusals = [v for (n, labels), v in samples.items()
                if n == "scriptd_egress_refusals_total" and ("script", "mx") in labels]  # fmt: skip
    assert sum(refusals) == 1
    # The build: a miss (or a hit when the session's cache had it), and its duration.
    builds = value(samples, "scriptd_build_cache_hits_total", language="python") + value(
        samples, "scriptd_build_cache_misses_total", language="python"
    )
    assert builds == 1
    # The account, the outbox (the deploy's email waits: no SMTP), the async queue.
    assert value(samples, "scriptd_credits_balance") > 0
    assert value(samples, "scriptd_credits_allocation") >= value(samples, "scriptd_credits_balance")
    assert value(samples, "scriptd_outbox_backlog") >= 1
    assert value(samples, "scriptd_async_queue_depth") == 0
    assert value(samples, "scriptd_async_queue_oldest_age_seconds") == 0
    assert value(samples, "scriptd_store_size_bytes") > 0
    assert value(samples, "scriptd_queued_calls", script="mx") == 0
    assert value(samples, "process_cpu_seconds_total") > 0


def test_names_follow_prometheus_conventions(daemon: DaemonProcess, metrics_port: int) -> None:
    text, _ = scrape(metrics_port)
    families = list(text_string_to_metric_families(text))
    ours = [f for f in families if f.name.startswith("scriptd_")]
    assert ours
    for family in ours:
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        assert not family.name.endswith("_ms"), family.name  # base units: seconds
        for sample in family.samples:
            assert set(sample.labels) <= LABELS, sample
