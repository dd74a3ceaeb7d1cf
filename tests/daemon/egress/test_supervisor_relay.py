"""The supervisor with --egress-socket: it starts the loopback relay before anything
else, its workers find HTTP_PROXY / HTTPS_PROXY / NO_PROXY pointing at it, and the
common Python clients reach real servers through the real proxy, unchanged.

(No sandbox here: the supervisor runs as a plain process, which is all this needs;
the e2e tests cover the sandboxed path.)"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.serving.launcher import egress_lanes
from tests.conftest import require
from tests.daemon.egress.conftest import EgressEnv
from tests.runtimes.client import Supervisor
from tests.runtimes.projects import write_project

MAIN = """
import os
import ssl
import urllib.request


def env():
    return {k: os.environ.get(k) for k in ("HTTP_PROXY", "https_proxy", "NO_PROXY")}


def with_urllib(url, ca):
    context = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(url, timeout=10, context=context) as reply:
        return [reply.status, reply.read().decode()]


def with_requests(url, ca):
    import requests

    reply = requests.get(url, timeout=10, verify=ca)
    return [reply.status_code, reply.text]


def with_aiohttp(url, ca):
    import asyncio

    import aiohttp

    async def get():
        # trust_env=True: aiohttp reads HTTP(S)_PROXY only when asked to.
        async with aiohttp.ClientSession(trust_env=True) as session:
            context = ssl.create_default_context(cafile=ca)
            async with session.get(url, ssl=context) as reply:
                return [reply.status, await reply.text()]

    return asyncio.run(get())


def with_httpx(url, ca):
    import httpx

    reply = httpx.get(url, timeout=10, verify=ssl.create_default_context(cafile=ca))
    return [reply.status_code, reply.text]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", {"main.py": MAIN})


@pytest.fixture
def started() -> Iterator[list[Supervisor]]:
    supervisors: list[Supervisor] = []
    yield supervisors
    for supervisor in supervisors:
        supervisor.close()


async def test_python_clients_go_through_the_relay(
    egress: EgressEnv, project: Path, started: list[Supervisor]
) -> None:
    channel, _ = await egress.open()
    port = free_ports(1)
    sup = Supervisor("python", project, 1, "--egress-socket", str(channel.socket_path),
                     "--egress-port", str(port))  # fmt: skip
    started.append(sup)
    await asyncio.to_thread(sup.start)
    worker = sup.worker()
    env = (await asyncio.to_thread(worker.call, "env"))["value"]
    assert env == {
        "HTTP_PROXY": f"http://127.0.0.1:{port}",
        "https_proxy": f"http://127.0.0.1:{port}",
        "NO_PROXY": "localhost,127.0.0.1,::1",
    }
    assert egress.proxy.ca is not None
    ca = str(egress.proxy.ca.cert_path)
    # By name: 127.0.0.1 itself is in NO_PROXY (inside a sandbox it is the sandbox).
    https = f"https://api.example.test:{egress.servers.https_port}/echo"
    http = f"http://api.example.test:{egress.servers.http_port}/echo"
    clients = ("with_urllib", "with_requests", "with_httpx", "with_aiohttp")
    for function in clients:
        for url in (f"{http}/{function}", f"{https}/{function}"):
            reply = await asyncio.to_thread(worker.call, function, {"url": url, "ca": ca})
            assert reply["ok"], reply["error"]
            status, body = reply["value"]
            assert status == 200 and f"/echo/{function}" in body
    refused = await asyncio.to_thread(
        worker.call, "with_requests", {"url": "http://10.1.2.3/", "ca": ca}
    )
    assert refused["value"][0] == 403 and "10.1.2.3 is a private address" in refused["value"][1]
    log = channel.take_log()
    assert log.total == 9 and [r.target for r in log.refusals] == ["http://10.1.2.3/"]
    urls = [e.url for e in log.entries]  # type: ignore[union-attr]
    assert urls == [f"{u}/{f}" for f in clients for u in (http, https)]


async def test_the_relay_ends_with_the_supervisor(
    egress: EgressEnv, project: Path, started: list[Supervisor]
) -> None:
    channel, _ = await egress.open()
    port = free_ports(1)
    sup = Supervisor("python", project, 1, "--egress-socket", str(channel.socket_path),
                     "--egress-port", str(port))  # fmt: skip
    started.append(sup)
    await asyncio.to_thread(sup.start)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    sup.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(sup.proc.wait, 10) == 0
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the port closes once the relay is gone
        try:
            _, probe = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        probe.close()
        assert asyncio.get_running_loop().time() < deadline, "the relay outlived its supervisor"
        await asyncio.sleep(0.05)
    del reader


NODE_MAIN = """
const http = require('node:http');
const https = require('node:https');

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
"""


async def test_node_fetch_and_http_go_through_the_relay(
    egress: EgressEnv, tmp_path: Path, started: list[Supervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    require(shutil.which("node") is not None, "needs node")
    channel, _ = await egress.open()
    assert egress.proxy.ca is not None
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(egress.proxy.ca.cert_path))
    project = write_project(tmp_path / "node", {"main.js": NODE_MAIN})
    port = free_ports(1)
    sup = Supervisor("javascript", project, 1, "--egress-socket", str(channel.socket_path),
                     "--egress-port", str(port))  # fmt: skip
    started.append(sup)
    await asyncio.to_thread(sup.start)
    worker = sup.worker()
    https = f"https://api.example.test:{egress.servers.https_port}/echo"
    http = f"http://api.example.test:{egress.servers.http_port}/echo"
    for function in ("withFetch", "withHttp"):
        for url in (f"{http}/{function}", f"{https}/{function}"):
            reply = await asyncio.to_thread(worker.call, function, {"url": url})
            assert reply["ok"], reply["error"]
            status, body = reply["value"]
            assert status == 200 and f"/echo/{function}" in body, (url, body)
    rule = ("egress: 10.1.2.3 is a private address; allowed: public addresses on ports 80, "
            f"443, {egress.servers.http_port}, {egress.servers.https_port}")  # fmt: skip
    for function in ("withHttp", "withFetch"):
        for url in ("https://10.1.2.3/", "http://10.1.2.3/"):
            refused = await asyncio.to_thread(worker.call, function, {"url": url})
            assert refused["value"] == ["error", rule], (function, url)
    urls = [e.url for e in channel.take_log().entries]  # type: ignore[union-attr]
    assert urls == [f"{u}/{f}" for f in ("withFetch", "withHttp") for u in (http, https)]


def free_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports free now (the relay's and its
    lanes').

    They are drawn below the kernel's ephemeral range: ports in that range are handed
    out all the time to the outgoing connections of the tests running beside this one,
    and one taken between this check and the supervisor's bind killed the supervisor.
    (In a replica the relay binds inside the sandbox's own network namespace.)"""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        first = random.randrange(10_000, max(low - count, 10_001))
        taken = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                taken.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in taken:
                sock.close()
        return first


LANE_MAIN = """
exports.get = async ({ url }) => {
  const reply = await fetch(url);
  return [process.env.HTTP_PROXY, reply.status];
};
"""


@pytest.mark.parametrize("language", ["javascript", "python"])
async def test_each_worker_has_a_lane_of_its_own(
    egress: EgressEnv,
    tmp_path: Path,
    started: list[Supervisor],
    monkeypatch: pytest.MonkeyPatch,
    language: str,
) -> None:
    """Two workers (spawned for Node, forked for Python), each pointed at its own lane
    port; what each sends arrives on its lane's channel only."""
    if language == "javascript":
        require(shutil.which("node") is not None, "needs node")
        project = write_project(tmp_path / "lanes", {"main.js": LANE_MAIN})
    else:
        main = MAIN + (
            "\n\ndef get(url):\n    with urllib.request.urlopen(url, timeout=10) as reply:\n"
            "        return [os.environ['HTTP_PROXY'], reply.status]\n"
        )
        project = write_project(tmp_path / "lanes", {"main.py": main})
    policy_of, _ = await egress.open()  # only its settings and account are used
    folder = tmp_path / "sockets"
    folder.mkdir()
    shared_path = folder / "proxy.sock"
    settings, account = policy_of.settings, policy_of.account
    shared = await egress.proxy.open_channel("lanes", shared_path, settings, account)
    lanes = [
        await egress.proxy.open_channel(f"lanes/w{n}", folder / f"w{n}.sock", settings, account)
        for n in range(3)
    ]
    port = free_ports(4)
    sup = Supervisor(language, project, 2, "--egress-socket", str(shared_path),
                     "--egress-port", str(port))  # fmt: skip
    started.append(sup)
    await asyncio.to_thread(sup.start, 2)
    workers = list(sup.workers.values())
    base = f"http://api.example.test:{egress.servers.http_port}/echo"
    proxies = []
    for n, worker in enumerate(workers):
        reply = await asyncio.to_thread(worker.call, "get", {"url": f"{base}/lane{n}"})
        assert reply["ok"], reply["error"]
        proxies.append(reply["value"][0])
    assert sorted(proxies) == [f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port + 2}"]
    for n, proxy in enumerate(proxies):
        lane = lanes[int(proxy.rsplit(":", 1)[1]) - port - 1]
        assert [e.url for e in lane.take_log().entries] == [f"{base}/lane{n}"]  # type: ignore[union-attr]
    assert shared.log.total == 0 and account.connections_total >= 2


async def test_workers_killed_together_are_replaced_on_lanes_of_their_own(
    egress: EgressEnv, tmp_path: Path, started: list[Supervisor]
) -> None:
    """A killed worker keeps its lane until it is reaped while its replacement starts
    at once: with two lanes per worker (as the launcher opens them), both workers of a
    replica killed together are replaced on lanes of their own, never the shared port."""
    main = MAIN + (
        "\n\ndef get(url):\n    with urllib.request.urlopen(url, timeout=10) as reply:\n"
        "        return [os.environ['HTTP_PROXY'], reply.status]\n"
    )
    project = write_project(tmp_path / "kills", {"main.py": main})
    policy_of, _ = await egress.open()
    folder = tmp_path / "sockets"
    folder.mkdir()
    settings, account = policy_of.settings, policy_of.account
    await egress.proxy.open_channel("kills", folder / "proxy.sock", settings, account)
    for n in range(egress_lanes(2)):
        await egress.proxy.open_channel(f"kills/w{n}", folder / f"w{n}.sock", settings, account)
    port = free_ports(6)
    sup = Supervisor("python", project, 2, "--egress-socket", str(folder / "proxy.sock"),
                     "--egress-port", str(port))  # fmt: skip
    started.append(sup)
    await asyncio.to_thread(sup.start, 2)
    old = list(sup.workers.values())
    for worker in old:
        sup.send({"t": "kill_worker", "worker": worker.id})
    kinds = [(await asyncio.to_thread(sup.next, 10.0))["t"] for _ in range(2 * len(old))]
    assert sorted(kinds) == ["worker", "worker", "worker_exit", "worker_exit"], kinds
    new = [w for w in sup.workers.values() if w.id not in {o.id for o in old}]
    base = f"http://api.example.test:{egress.servers.http_port}/echo"
    proxies = set()
    for worker in new:
        reply = await asyncio.to_thread(worker.call, "get", {"url": base})
        assert reply["ok"], reply["error"]
        proxies.add(reply["value"][0])
    shared = f"http://127.0.0.1:{port}"
    assert len(proxies) == 2 and shared not in proxies, proxies


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()}


def _alive(pid: int) -> bool:
    """Running, and not a zombie that its new parent has yet to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_the_relay_ends_when_its_supervisor_is_killed(
    egress: EgressEnv, project: Path, started: list[Supervisor]
) -> None:
    """Outside a sandbox nothing kills the relay with its supervisor (in one, pid 1's
    end ends the namespace): it notices its parent is gone and exits."""
    channel, _ = await egress.open()
    sup = Supervisor("python", project, 1, "--egress-socket", str(channel.socket_path),
                     "--egress-port", str(free_ports(1)))  # fmt: skip
    started.append(sup)
    await asyncio.to_thread(sup.start)
    relay = _children(sup.proc.pid) - {w.pid for w in sup.workers.values()}
    assert len(relay) == 1, relay  # (a worker ends when the daemon closes its socket)
    sup.proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(sup.proc.wait, 10)
    deadline = asyncio.get_running_loop().time() + 15
    while (left := {pid for pid in relay if _alive(pid)}) and (
        asyncio.get_running_loop().time() < deadline
    ):
        await asyncio.sleep(0.05)
    assert not left, f"the relay runs on after its supervisor was killed: {left}"
