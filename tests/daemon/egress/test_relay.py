"""The in-sandbox relay (runtimes/egress_relay.py, stdlib only) in a real process,
between real clients and the real proxy: plain HTTP, intercepted HTTPS, and big
bodies both ways (backpressure) arriving intact."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.daemon.egress.conftest import EgressEnv

RELAY = Path(__file__).resolve().parents[3] / "runtimes" / "egress_relay.py"


@pytest.fixture
async def relay_for(egress: EgressEnv) -> AsyncIterator[object]:
    processes: list[subprocess.Popen[str]] = []

    async def start(socket_path: Path) -> str:
        process = subprocess.Popen(
            [sys.executable, "-I", str(RELAY), "0", str(socket_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        port = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 10)
        return f"http://127.0.0.1:{int(port)}"

    yield start
    for process in processes:
        process.kill()
        process.wait()


async def test_clients_reach_the_proxy_through_the_relay(
    egress: EgressEnv, relay_for: object
) -> None:
    channel, _ = await egress.open()
    proxy_url = await relay_for(channel.socket_path)  # type: ignore[operator]
    assert egress.proxy.ca is not None
    trust = ssl.create_default_context(cafile=str(egress.proxy.ca.cert_path))
    async with httpx.AsyncClient(proxy=proxy_url, verify=trust) as http:
        plain = await http.get(f"{egress.servers.http}/echo/plain")
        secure = await http.get(f"{egress.servers.https}/echo/secure")
        refused = await http.get("http://169.254.169.254/latest/meta-data")
    assert plain.json()["path"] == "/echo/plain" and secure.json()["path"] == "/echo/secure"
    assert refused.status_code == 403
    log = channel.take_log()
    assert log.total == 3 and len(log.refusals) == 1


async def test_big_bodies_cross_intact(egress: EgressEnv, relay_for: object) -> None:
    channel, _ = await egress.open()
    proxy_url = await relay_for(channel.socket_path)  # type: ignore[operator]
    upload = bytes(range(256)) * 40_000  # 10 MB
    async with httpx.AsyncClient(proxy=proxy_url, timeout=60) as http:
        received = await http.post(f"{egress.servers.http}/digest", content=upload)
        download = await http.get(f"{egress.servers.http}/big?n=20000000")
    assert received.json() == {
        "length": len(upload),
        "sha256": hashlib.sha256(upload).hexdigest(),
    }
    assert download.content == b"x" * 20_000_000
    assert channel.account.bytes_out > len(upload) and channel.account.bytes_in > 20_000_000
