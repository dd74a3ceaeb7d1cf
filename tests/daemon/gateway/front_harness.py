"""The aiohttp gateway and the lean front side by side, over the same kind of state
(the fakes of tests/daemon/gateway/test_app.py), on a loop in a thread, plus a raw
HTTP/1.1 client that sends bytes as they are and parses every answer."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httptools
import uvloop
from aiohttp import web

from daemon.gateway.app import Gateway, make_gateway
from daemon.gateway.bridge import AiohttpBridge
from daemon.gateway.calls import FrontCalls
from daemon.gateway.front import FrontServer
from daemon.gateway.front_types import FrontLimits
from daemon.gateway.recorder import ExecutionRecorder
from daemon.gateway.serving_table import Routes
from daemon.gateway.step_route import StepRoute
from daemon.gateway.uploads_route import Uploads
from daemon.keys.api_key import KeyRecord, mint_key
from daemon.keys.checker import KeyChecker
from daemon.keys.throttle import FailureThrottle
from tests.daemon.gateway.test_app import RECORDS, FakeRunner, FakeStore, Recorded, target

MAX_BODY = 4096
UPLOAD_MAX = 20_000
STEP_KEY = mint_key()  # the key of "delta", a code step (test_app's FakeDispatcher.run)
KEYS = {**RECORDS, STEP_KEY.key_id: KeyRecord(STEP_KEY.key_id, "delta", "key s", STEP_KEY.hash)}


@dataclass
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    version: str = ""


class FakeEgress:
    """What the egress proxy gives the gateway: an HTTP log per call (with a secret
    in it), and the replicas whose connections it was told to close."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    def take_log(self, replica: str, lane: int | None = None) -> dict[str, Any]:
        return {"requests": [{"url": "https://example.com/?token=sekrit", "replica": replica}]}

    def close_connections(self, replica: str, lane: int | None = None) -> None:
        self.closed.append(replica)


@dataclass
class Servers:
    loop: asyncio.AbstractEventLoop
    aiohttp_port: int
    front_port: int
    front: FrontServer
    gateways: list[Gateway]
    folders: list[Path]  # the uploads folders: aiohttp's, the front's
    egresses: list[FakeEgress]  # of the gateways, in their order

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


async def _gateway(egress: FakeEgress) -> Gateway:
    # A throttle that never fires: both servers see the same bad keys in turn.
    throttle = FailureThrottle(burst=1_000_000, window_s=1.0)
    keys = KeyChecker(lambda key_id: KEYS.get(key_id), verify=lambda h, s: True,
                      throttle=throttle)  # fmt: skip
    routes = Routes(FakeRunner(), keys)  # type: ignore[arg-type]
    await routes.start(target("alpha", 1))
    await routes.start(target("beta", 2))
    step = '{"inputs": {"x": "s"}, "outputs": {"x": "s"}}'
    await routes.start(replace(target("delta", 4), step_spec=step, secret_values=("sekrit",)))
    recorder = ExecutionRecorder(Recorded(), keys, output_bytes=100)  # type: ignore[arg-type]
    closer = egress.close_connections
    return Gateway(routes, keys, FakeStore(), recorder, MAX_BODY,  # type: ignore[arg-type]
                   http_logs=egress.take_log, close_connections=closer)  # fmt: skip


async def _start(
    limits: FrontLimits, folders: list[Path], egresses: list[FakeEgress]
) -> tuple[list[web.AppRunner], int, FrontServer, list[Gateway]]:
    """The aiohttp gateway on a port; the front on another, with its own aiohttp app
    (no port) behind it for the uploads route."""
    reference, lean = await _gateway(egresses[0]), await _gateway(egresses[1])
    runner = web.AppRunner(make_gateway(reference, _uploads(reference, folders[0]),
                                        StepRoute(reference)), access_log=None)  # fmt: skip
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    behind = web.AppRunner(make_gateway(lean, _uploads(lean, folders[1]), StepRoute(lean)),
                           access_log=None)  # fmt: skip
    await behind.setup()
    assert behind.server is not None
    front = FrontServer(FrontCalls(lean, AiohttpBridge(behind.server)), limits)
    await front.start("127.0.0.1", 0)
    return [runner, behind], port, front, [reference, lean]


def _uploads(gateway: Gateway, folder: Path) -> Uploads:
    return Uploads(gateway, folder, max_bytes=UPLOAD_MAX, max_total_bytes=3 * UPLOAD_MAX)


@contextmanager
def servers(limits: FrontLimits | None = None) -> Iterator[Servers]:
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    tmp = tempfile.TemporaryDirectory(prefix="scriptd-front-")
    folders = [Path(tmp.name) / "aiohttp", Path(tmp.name) / "front"]
    for folder in folders:
        folder.mkdir()
    egresses = [FakeEgress(), FakeEgress()]
    started: Future[Any] = asyncio.run_coroutine_threadsafe(
        _start(limits or FrontLimits(), folders, egresses), loop
    )
    runners, port, front, gateways = started.result(30)
    assert front._server is not None
    front_port = front._server.sockets[0].getsockname()[1]
    try:
        yield Servers(loop, port, front_port, front, gateways, folders, egresses)
    finally:
        asyncio.run_coroutine_threadsafe(front.close(), loop).result(30)
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        for gw in gateways:
            gw.keys.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        tmp.cleanup()


class _Replies:
    """httptools callbacks that collect the answers of one connection."""

    def __init__(self, heads: list[bool]) -> None:
        self.heads = heads  # per request: was it HEAD (an answer without a body)
        self.replies: list[Reply] = []
        self.current = Reply()
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.current.status = self.parser.get_status_code()
        self.current.version = self.parser.get_http_version()
        if self.current.status == 100:
            self.current = Reply()
            return
        if self._is_head():
            self._done()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        if self.current.status and not self._is_head():
            self._done()

    def _is_head(self) -> bool:
        index = len(self.replies)
        return index < len(self.heads) and self.heads[index]

    def _done(self) -> None:
        self.replies.append(self.current)
        self.current = Reply()


def exchange(
    port: int,
    raw: bytes,
    heads: list[bool],
    timeout: float = 5.0,
    chunks: int = 1,
    wait_close: bool = False,
) -> tuple[list[Reply], bool]:
    """Send `raw` (in `chunks` writes), read until len(heads) answers, the peer's close
    or `timeout`. Returns the answers and whether the server closed the connection
    (with `wait_close`, waits up to `timeout` for the close after the answers)."""
    replies = _Replies(heads)
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        step = max(1, len(raw) // chunks)
        for at in range(0, len(raw), step):
            try:
                sock.sendall(raw[at : at + step])
            except OSError:
                break  # the server closed already: read what it said
        deadline = time.monotonic() + timeout
        while len(replies.replies) < len(heads) and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                closed = True
                break
            if not data:
                closed = True
                break
            try:
                replies.parser.feed_data(data)
            except httptools.HttpParserError:
                # A HEAD answer parsed as if it had a body, or garbage: stop here.
                break
        if wait_close and not closed:
            try:
                closed = sock.recv(1) == b""
            except (TimeoutError, ConnectionResetError):
                closed = False
    return replies.replies, closed
