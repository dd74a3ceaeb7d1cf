"""Node clients through the egress proxy, end to end: fetch, http/https and axios
(installed from npm by the normal build) reach the loopback HTTP and HTTPS servers
from a sandboxed replica, the call's HTTP log lists their requests, a refused fetch
fails with the proxy's message, and `node --use-openssl-ca` trusts the egress CA
through the system bundle the sandbox sees."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.daemon.egress.support import Servers
from tests.e2e.egress_fixtures import daemon, record, servers
from tests.helpers import DaemonProcess, GatewayClient, create_key, make_zip

__all__ = ["daemon", "servers"]

AXIOS = "1.7.9"

MAIN = r"""
const axios = require('axios');
const http = require('node:http');
const https = require('node:https');
const { spawnSync } = require('node:child_process');

exports.withAxios = async ({ url }) => {
  try {
    const reply = await axios.get(url, { transformResponse: (body) => body });
    return [reply.status, reply.data];
  } catch (err) {
    return err.response ? [err.response.status, err.response.data] : ['error', err.message];
  }
};

exports.withFetch = async ({ url }) => {
  try {
    const reply = await fetch(url);
    return [reply.status, await reply.text()];
  } catch (err) {
    return ['error', String(err.cause ? err.cause.message : err.message)];
  }
};

exports.withHttp = ({ url }) => new Promise((resolve) => {
  const client = url.startsWith('https:') ? https : http;
  client.get(url, (reply) => {
    let body = '';
    reply.setEncoding('utf8');
    reply.on('data', (chunk) => { body += chunk; });
    reply.on('end', () => resolve([reply.statusCode, body]));
  }).on('error', (err) => resolve(['error', err.message]));
});

// A node of its own, without the harness's routing and without any CA variable: it
// opens the tunnel itself and verifies the proxy's leaf against the root store.
const PROBE = String.raw`
const net = require('node:net');
const tls = require('node:tls');
const [proxyPort, host, port] = process.argv.slice(1);
const socket = net.connect(Number(proxyPort), '127.0.0.1', () => {
  socket.write('CONNECT ' + host + ':' + port + ' HTTP/1.1\r\nHost: ' + host + '\r\n\r\n');
});
socket.once('data', (head) => {
  if (!String(head).startsWith('HTTP/1.1 200')) { console.log('refused'); return; }
  const secure = tls.connect({ socket, host }, () => {
    const head = 'Host: ' + host + '\r\nConnection: close\r\n\r\n';
    secure.write('GET /echo/openssl-ca HTTP/1.1\r\n' + head);
  });
  let answer = '';
  secure.on('data', (chunk) => { answer += chunk; });
  secure.on('end', () => console.log(answer.split('\r\n')[0]));
  secure.on('error', (err) => console.log('error: ' + err.code));
});
`;

exports.rootStore = ({ host, port, flags }) => {
  const env = { ...process.env };
  for (const name of ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'NODE_OPTIONS']) {
    delete env[name];
  }
  const proxyPort = new URL(process.env.HTTPS_PROXY).port;
  const args = [...flags, '-e', PROBE, proxyPort, host, String(port)];
  const run = spawnSync(process.execPath, args, { env, encoding: 'utf8', timeout: 20000 });
  return (run.stdout || run.stderr || String(run.error)).trim();
};
"""


@pytest.fixture(scope="module")
def gw(daemon: DaemonProcess) -> Iterator[GatewayClient]:
    require(shutil.which("node") is not None, "needs node")
    admin = daemon.client()
    package = json.dumps({"name": "clients", "version": "1.0.0", "dependencies": {"axios": AXIOS}})
    archive = make_zip({"main.js": MAIN, "package.json": package})
    admin.create("nodenet", archive, language="javascript", deploy=True, timeout_s=30)
    script = admin.wait_status("nodenet", timeout=300)
    assert script["status"] == "Deployed", script["deployment"]
    client = daemon.gateway(create_key(admin, "nodenet"))
    yield client
    client.close()


def call(gw: GatewayClient, function: str, payload: dict[str, Any]) -> tuple[Any, str]:
    """The function's result and the call's execution id."""
    reply = gw.call("nodenet", function, payload)
    assert reply.status == 200, reply.body
    return reply.json()["result"], reply.headers["X-Scriptd-Execution-Id"]


@pytest.mark.parametrize("function", ["withAxios", "withFetch", "withHttp"])
def test_each_client_reaches_both_servers_and_is_logged(
    daemon: DaemonProcess, gw: GatewayClient, servers: Servers, function: str
) -> None:
    for base, path in (
        (servers.http, f"/echo/{function}/plain"),
        (servers.https, f"/echo/{function}/tls"),
    ):
        url = base + path
        (status, body), execution = call(gw, function, {"url": url})
        assert status == 200 and f'"path": "{path}"' in body, body
        log = record(daemon, execution)["http_log"]
        assert [(e["method"], e["url"], e["status"]) for e in log["requests"]] == [
            ("GET", url, 200)
        ]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refused_fetch_fails_with_the_proxys_message(
    daemon: DaemonProcess, gw: GatewayClient, servers: Servers, scheme: str
) -> None:
    url = f"{scheme}://10.1.2.3:{servers.http_port}/"
    (kind, message), execution = call(gw, "withFetch", {"url": url})
    assert kind == "error"
    assert message.startswith("egress: 10.1.2.3 is a private address; allowed: public addresses")
    log = record(daemon, execution)["http_log"]
    assert [r["rule"] for r in log["refusals"]] == ["private address"]


def test_node_with_the_openssl_store_trusts_the_egress_ca(
    gw: GatewayClient, servers: Servers
) -> None:
    where = {"host": servers.host, "port": servers.https_port}
    trusted, _ = call(gw, "rootStore", {**where, "flags": ["--use-openssl-ca"]})
    assert trusted == "HTTP/1.1 200 OK"
    # Node's bundled store alone does not know the egress CA: the system bundle did it.
    bundled, _ = call(gw, "rootStore", {**where, "flags": []})
    assert bundled.startswith("error: "), bundled
