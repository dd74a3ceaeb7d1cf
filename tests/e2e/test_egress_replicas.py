"""Egress per replica and per worker, end to end: a replica's bytes through the proxy
are served with the script's replicas (admin API and `scriptctl show`), and in a
replica of two workers each call's HTTP log holds the requests of its own worker
only, although both calls run at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.daemon.egress.support import Servers
from tests.e2e.egress_fixtures import daemon, record, servers
from tests.helpers import DaemonProcess, create_key, make_zip

__all__ = ["daemon", "servers"]

REPO = Path(__file__).resolve().parents[2]

MAIN = """\
import urllib.request

# Made at import, in the supervisor before any worker: it keeps the replica's shared
# port, not a worker's lane.
EARLY_PROXIES = urllib.request.getproxies()
EARLY = urllib.request.build_opener(urllib.request.ProxyHandler(EARLY_PROXIES))


def early(url):
    with EARLY.open(url, timeout=20) as reply:
        return [EARLY_PROXIES.get("http"), reply.status]


def post(url, size):
    with urllib.request.urlopen(url, data=b"x" * size, timeout=20) as reply:
        return len(reply.read())


def tagged(base, tag, rounds):
    # Each round holds its connection a while, so two calls' requests interleave.
    for n in range(rounds):
        with urllib.request.urlopen(f"{base}/echo/{tag}/{n}", timeout=20) as reply:
            reply.read()
        with urllib.request.urlopen(f"{base}/slow?s=0.3&tag={tag}", timeout=20) as reply:
            reply.read()
    return tag
"""


def scriptctl(daemon: DaemonProcess, *args: str) -> str:
    env = {**os.environ, "SCRIPTD_SOCKET": str(daemon.socket)}
    out = subprocess.run([sys.executable, "-m", "daemon.cli", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def deploy(daemon: DaemonProcess, name: str, **fields: Any) -> str:
    admin = daemon.client()
    admin.create(name, make_zip({"main.py": MAIN}), deploy=True, timeout_s=30, **fields)
    assert admin.wait_status(name)["status"] == "Deployed"
    return create_key(admin, name)


def test_a_replicas_bytes_are_served_with_it(daemon: DaemonProcess, servers: Servers) -> None:
    client = daemon.gateway(deploy(daemon, "counted"))
    try:
        reply = client.call("counted", "post", {"url": f"{servers.http}/echo/n", "size": 5000})
    finally:
        client.close()
    assert reply.status == 200 and reply.json()["result"] > 5000  # the body comes back
    (replica,) = daemon.client().script("counted")["replicas"]
    egress = replica["egress"]
    assert replica["state"] == "ready" and egress["connections"] >= 1
    assert 0 <= egress["idle_connections"] <= 8  # (kept once the script's connection ends)
    assert egress["bytes_out"] > 5000 and egress["bytes_in"] > 5000
    shown = json.loads(scriptctl(daemon, "--json", "show", "counted"))
    assert shown["replicas"][0]["egress"]["bytes_out"] >= egress["bytes_out"]
    text = scriptctl(daemon, "show", "counted")
    assert "Replicas" in text and "SENT" in text and replica["name"] in text
    row = next(line for line in text.splitlines() if replica["name"] in line)
    assert " KB" in row and "total" in row, row


def test_a_replica_without_egress_shows_none(daemon: DaemonProcess) -> None:
    deploy(daemon, "silent", egress={"policy": "off"})
    (replica,) = daemon.client().script("silent")["replicas"]
    assert replica["egress"] is None
    row = next(line for line in scriptctl(daemon, "show", "silent").splitlines()
               if replica["name"] in line)  # fmt: skip
    assert "no egress" in row


def test_concurrent_calls_on_two_workers_keep_their_own_http_logs(
    daemon: DaemonProcess, servers: Servers
) -> None:
    key = deploy(daemon, "pair", profile="duo")
    replies: dict[str, Any] = {}

    def run(tag: str) -> None:
        client = daemon.gateway(key)
        try:
            replies[tag] = client.call("pair", "tagged", {"base": servers.http, "tag": tag,
                                                          "rounds": 4})  # fmt: skip
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("alpha", "beta")]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert time.monotonic() - started < 60
    for tag, other in (("alpha", "beta"), ("beta", "alpha")):
        reply = replies[tag]
        assert reply.status == 200, reply.body
        log = record(daemon, reply.headers["X-Scriptd-Execution-Id"])["http_log"]
        urls = [entry["url"] for entry in log["requests"]]
        assert log["total"] == 8 and all(tag in url and other not in url for url in urls), urls
    # A client made at import uses the replica's shared port: its requests still land
    # on the record of the call that sent them.
    client = daemon.gateway(key)
    try:
        reply = client.call("pair", "early", {"url": f"{servers.http}/echo/early"})
    finally:
        client.close()
    assert reply.json()["result"] == ["http://127.0.0.1:3128", 200]
    log = record(daemon, reply.headers["X-Scriptd-Execution-Id"])["http_log"]
    assert [e["url"] for e in log["requests"]] == [f"{servers.http}/echo/early"]
    # The two calls did run at once: each one's slow requests overlapped the other's.
    hits = servers.hits
    first_beta = next(i for i, hit in enumerate(hits) if "beta" in hit)
    last_alpha = max(i for i, hit in enumerate(hits) if "alpha" in hit)
    assert first_beta < last_alpha, hits


def test_calls_sharing_a_worker_say_their_http_logs_are_shared(
    daemon: DaemonProcess, servers: Servers
) -> None:
    # One worker (the default profile), two calls on it at once (concurrency 2): the
    # lane is the worker's, so each log holds what the worker sent and says it is shared.
    key = deploy(daemon, "shared", concurrency=2)
    replies: dict[str, Any] = {}

    def run(tag: str) -> None:
        client = daemon.gateway(key)
        try:
            replies[tag] = client.call("shared", "tagged", {"base": servers.http, "tag": tag,
                                                            "rounds": 2})  # fmt: skip
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    logs = []
    for tag in ("alpha", "beta"):
        reply = replies[tag]
        assert reply.status == 200, reply.body
        logs.append(record(daemon, reply.headers["X-Scriptd-Execution-Id"])["http_log"])
    # The call that ended first took what the worker had sent by then, the other the
    # rest (none, when the first one took all): every request is on one of the records.
    kept = [log for log in logs if log is not None]
    assert kept and all(log.get("shared") is True for log in kept), logs
    assert sum(log["total"] for log in kept) == 8
    client = daemon.gateway(key)
    try:
        alone = client.call("shared", "post", {"url": f"{servers.http}/echo/alone", "size": 10})
    finally:
        client.close()
    log = record(daemon, alone.headers["X-Scriptd-Execution-Id"])["http_log"]
    assert "shared" not in log and log["total"] == 1
