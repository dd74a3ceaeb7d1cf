"""bench/egress.py's two child processes: the local HTTP and HTTPS server, and the proxy."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import sys
from pathlib import Path

BODY = b"x" * 256
CALL_S = 0.02  # how often the proxy's channels end a call (take and serialise its log)
SECRETS = {"API_TOKEN": "bench-7d0c1e55-secret"}  # redacted from every logged request


# --- the upstream server (child process) ---------------------------------------


def serve_upstream(directory: Path) -> None:
    import uvloop
    from aiohttp import web

    from tests.daemon.egress.support import make_test_ca

    _, cert, key = make_test_ca(directory)

    async def small(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    async def main() -> None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        ports = []
        for context in (None, tls):
            app = web.Application()
            app.router.add_get("/small", small)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        print(json.dumps({"http": ports[0], "https": ports[1]}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    uvloop.run(main())


# --- the proxy (child process) --------------------------------------------------


def serve_proxy(directory: Path, ports: list[int]) -> None:
    import uvloop

    from daemon.egress.ca import CertificateAuthority
    from daemon.egress.policy import EgressPolicy
    from daemon.egress.proxy import Channel, ChannelSettings, EgressProxy
    from daemon.egress.upstream import upstream_context

    async def main() -> None:
        proxy = EgressProxy(
            CertificateAuthority(directory / "state"),
            upstream_context(directory / "test-ca.pem"),
        )
        policy = EgressPolicy(
            ports=tuple(ports), allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)
        )
        channels = []
        for name, inspect in (("inspect", True), ("tunnel", False)):
            settings = ChannelSettings(policy, inspect, SECRETS, max_connections=1000)
            channels.append(await proxy.open_channel(name, directory / f"{name}.sock", settings))
        calls = asyncio.ensure_future(end_calls(channels))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        calls.cancel()
        await proxy.close()

    async def end_calls(channels: list[Channel]) -> None:
        """A call ends every CALL_S: its request log is taken and made JSON, as the
        daemon does for each execution record. Without it, only the first 100 requests
        of the whole run would be logged in detail and the figures would leave the
        request log's cost out."""
        while True:
            await asyncio.sleep(CALL_S)
            for channel in channels:
                channel.take_log().to_json()

    uvloop.run(main())
