"""Egress end to end: the real daemon, real sandboxed replicas (no network of their
own), the proxy's socket bound into each, the supervisor's relay on the sandbox's
loopback, and real HTTP and HTTPS servers on the host's loopback (127.0.0.2: inside a
sandbox 127.0.0.1 is the sandbox itself, and NO_PROXY keeps it there), opened with
egress.allowed_networks, the HTTPS one trusted through egress.upstream_ca_file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.egress.support import Servers
from tests.e2e.egress_fixtures import daemon, record, servers
from tests.helpers import DaemonProcess, GatewayClient, create_key, make_zip

__all__ = ["daemon", "servers"]

MAIN = """\
import json
import os
import socket
import ssl
import urllib.error
import urllib.request


def fetch(url, data=None):
    body = data.encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=20) as reply:
            return [reply.status, reply.read().decode()]
    except urllib.error.HTTPError as err:
        return [err.code, err.read().decode()]


def system_trust(url):
    # No variable names the bundle: OpenSSL's default paths, which the sandbox sees
    # with the egress CA in them, must be enough.
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    context = ssl.create_default_context()
    with urllib.request.urlopen(url, timeout=20, context=context) as reply:
        with open("/etc/ssl/certs/ca-certificates.crt") as bundle:
            return [reply.status, reply.read().decode(), bundle.read().count("BEGIN CERT")]


def env():
    names = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")
    return {name: os.environ.get(name) for name in names}


def raw_socket():
    # TEST-NET-1: the sandbox has no route at all, so nothing is sent anywhere.
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=5)
    except OSError as err:
        return [err.errno, str(err)]
    return "connected"
"""


@pytest.fixture(scope="module")
def gw(daemon: DaemonProcess) -> Iterator[GatewayClient]:
    admin = daemon.client()
    admin.create("net", make_zip({"main.py": MAIN}), deploy=True, timeout_s=30)
    assert admin.wait_status("net")["status"] == "Deployed"
    client = daemon.gateway(create_key(admin, "net"))
    yield client
    client.close()


def result(gw: GatewayClient, function: str, payload: dict[str, Any] | None = None) -> Any:
    reply = gw.call("net", function, payload or {})
    assert reply.status == 200, reply.body
    return reply.json()["result"]


def test_the_replica_is_pointed_at_its_relay(gw: GatewayClient) -> None:
    # The worker's own lane of the relay: 3129 for lane 0 (3128 is the replica's port).
    assert result(gw, "env") == {
        "HTTP_PROXY": "http://127.0.0.1:3129",
        "HTTPS_PROXY": "http://127.0.0.1:3129",
        "NO_PROXY": "localhost,127.0.0.1,::1",
        "SSL_CERT_FILE": "/opt/scriptd/egress-trust/bundle.pem",
        "NODE_EXTRA_CA_CERTS": "/opt/scriptd/egress-trust/egress-ca.pem",
    }


def test_http_and_https_leave_through_the_proxy(gw: GatewayClient, servers: Servers) -> None:
    status, body = result(gw, "fetch", {"url": f"{servers.http}/echo/plain", "data": "hi"})
    assert status == 200 and '"body": "hi"' in body
    status, body = result(gw, "fetch", {"url": f"{servers.https}/echo/tls"})
    assert status == 200 and '"path": "/echo/tls"' in body
    assert "/echo/plain" in servers.hits and "/echo/tls" in servers.hits


def test_the_system_bundle_in_the_sandbox_trusts_the_egress_ca(
    daemon: DaemonProcess, gw: GatewayClient, servers: Servers
) -> None:
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    before = host_bundle.read_bytes() if host_bundle.exists() else b""
    status, body, certificates = result(gw, "system_trust", {"url": f"{servers.https}/echo/sys"})
    assert status == 200 and '"path": "/echo/sys"' in body
    assert certificates == before.count(b"BEGIN CERT") + 1  # the host's CAs and ours
    assert (host_bundle.read_bytes() if host_bundle.exists() else b"") == before
    ca = (daemon.state_dir / "egress-ca" / "egress-ca.pem").read_bytes()
    assert ca not in before


def test_a_private_address_is_refused_with_the_rule(gw: GatewayClient, servers: Servers) -> None:
    url = f"http://10.1.2.3:{servers.http_port}/latest/meta-data"  # an allowed port
    status, body = result(gw, "fetch", {"url": url})
    assert status == 403
    assert body.startswith("egress: 10.1.2.3 is a private address; allowed: public addresses")


def test_raw_sockets_have_no_route(gw: GatewayClient) -> None:
    errno_, message = result(gw, "raw_socket")
    assert errno_ == 101, message  # ENETUNREACH


def test_the_execution_record_holds_the_http_log(
    daemon: DaemonProcess, gw: GatewayClient, servers: Servers
) -> None:
    reply = gw.call("net", "fetch", {"url": f"{servers.https}/echo/logged", "data": "x=1"})
    assert reply.status == 200, reply.body
    log = record(daemon, reply.headers["X-Scriptd-Execution-Id"])["http_log"]
    assert log["total"] == 1 and log["refusals"] == []
    (entry,) = log["requests"]
    assert entry["method"] == "POST" and entry["url"] == f"{servers.https}/echo/logged"
    assert entry["status"] == 200 and entry["request_body"] == "x=1"
    refused = gw.call("net", "fetch", {"url": f"http://10.9.9.9:{servers.http_port}/"})
    log = record(daemon, refused.headers["X-Scriptd-Execution-Id"])["http_log"]
    assert log["total"] == 1 and log["refusals"][0]["rule"] == "private address"


def test_a_killed_worker_takes_its_connections_along(
    daemon: DaemonProcess, gw: GatewayClient, servers: Servers
) -> None:
    admin = daemon.client()
    admin.create("brief", make_zip({"main.py": MAIN}), deploy=True, timeout_s=1)
    assert admin.wait_status("brief")["status"] == "Deployed"
    client = daemon.gateway(create_key(admin, "brief"))
    try:
        reply = client.call("brief", "fetch", {"url": f"{servers.http}/slow?s=25"})
    finally:
        client.close()
    assert reply.status == 504
    deadline = time.monotonic() + 10  # well before the server's 25 s sleep ends
    while "cancelled /slow?s=25" not in servers.hits:
        assert time.monotonic() < deadline, servers.hits
        time.sleep(0.05)


def deploy(daemon: DaemonProcess, name: str, egress: dict[str, Any]) -> GatewayClient:
    admin = daemon.client()
    admin.create(name, make_zip({"main.py": MAIN}), deploy=True, timeout_s=30, egress=egress)
    assert admin.wait_status(name)["status"] == "Deployed"
    assert admin.script(name)["settings"]["egress"]["policy"] == egress["policy"]
    return daemon.gateway(create_key(admin, name))


def test_an_allowlist_lets_only_its_hosts_through(daemon: DaemonProcess, servers: Servers) -> None:
    listed = f"{servers.host}:{servers.http_port}"
    client = deploy(daemon, "listed", {"policy": "allowlist", "allow_hosts": [listed]})
    try:
        ok = client.call("listed", "fetch", {"url": f"{servers.http}/echo/listed"})
        other = client.call("listed", "fetch", {"url": f"{servers.https}/echo/unlisted"})
    finally:
        client.close()
    assert ok.json()["result"][0] == 200
    status, body = other.json()["result"] if other.status == 200 else (None, other.body)
    assert "/echo/unlisted" not in servers.hits, (status, body)


def test_policy_off_keeps_todays_behaviour(daemon: DaemonProcess, servers: Servers) -> None:
    client = deploy(daemon, "offline", {"policy": "off"})
    try:
        env = client.call("offline", "env").json()["result"]
        reply = client.call("offline", "fetch", {"url": f"{servers.http}/echo/offline"})
    finally:
        client.close()
    assert env["HTTP_PROXY"] is None and env["SSL_CERT_FILE"] is None
    assert reply.status == 422 and "URLError" in reply.json()["error"]["type"]
    assert "/echo/offline" not in servers.hits


@pytest.mark.parametrize("source", ["secret-env", "granted"])
def test_secret_values_never_reach_the_http_log(
    daemon: DaemonProcess, servers: Servers, source: str
) -> None:
    """A secret env variable, or an integration secret granted as API_TOKEN."""
    token = "tok-e2e-7f3a9c"
    admin = daemon.client()
    if source == "granted":
        admin.call("PUT", "/v1/secrets/API_TOKEN", {"value": token})
        fields: dict[str, Any] = {"secrets": ["API_TOKEN"]}
    else:
        fields = {"env": [{"key": "API_TOKEN", "value": token, "secret": True}]}
    name = f"secretive-{source}"
    admin.create(name, make_zip({"main.py": MAIN}), deploy=True, **fields)
    assert admin.wait_status(name)["status"] == "Deployed"
    client = daemon.gateway(create_key(admin, name))
    try:
        url = f"{servers.http}/echo/s?key={token}"
        reply = client.call(name, "fetch", {"url": url, "data": f"token={token}"})
    finally:
        client.close()
    status, body = reply.json()["result"]
    assert status == 200 and token in body  # the server got the real value
    log = record(daemon, reply.headers["X-Scriptd-Execution-Id"])["http_log"]
    assert token not in str(log)
    (entry,) = log["requests"]
    assert entry["url"].endswith("/echo/s?key=[secret API_TOKEN]")
    assert entry["request_body"] == "token=[secret API_TOKEN]"
