"""Real servers and clients for the egress tests: an HTTP and an HTTPS server on
loopback (the HTTPS one with a certificate from a test CA), a loopback relay to a
channel's unix socket (what the sandbox's relay does), and a raw client for request
forms that client libraries would rewrite or refuse."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, 127.0.0.2, `localhost` and
    `*.example.test` signed by it: (CA file, server cert file, server key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("egress test CA"))
        .issuer_name(_name("egress test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [
        x509.DNSName("localhost"),
        x509.DNSName("*.example.test"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("127.0.0.2")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "test-ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Servers:
    http_port: int
    https_port: int
    ca_file: Path
    hits: list[str]
    host: str = "127.0.0.1"

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def https(self) -> str:
        return f"https://{self.host}:{self.https_port}"


def make_app(hits: list[str]) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
            },
            headers={"X-Echo": "yes"},
        )

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        raise web.HTTPFound(request.query["to"])

    async def big(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return web.Response(body=b"x" * int(request.query.get("n", "100000")))

    async def status(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return web.Response(status=int(request.match_info["code"]))

    async def chunked(request: web.Request) -> web.StreamResponse:
        hits.append(request.path_qs)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for n in range(5):
            await response.write(b"part%d;" % n)
        await response.write_eof()
        return response

    async def digest(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        body = await request.read()
        return web.json_response({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def tls(request: web.Request) -> web.Response:
        """Whether the connection resumed a TLS session."""
        assert request.transport is not None
        ssl_object = request.transport.get_extra_info("ssl_object")
        return web.json_response({"resumed": ssl_object.session_reused})

    async def slow(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        try:
            await asyncio.sleep(float(request.query.get("s", "30")))
        except asyncio.CancelledError:
            hits.append("cancelled " + request.path_qs)  # the client went away
            raise
        return web.Response(text="slept")

    app = web.Application(
        client_max_size=64 * 1024 * 1024, handler_args={"handler_cancellation": True}
    )
    app.router.add_get("/slow", slow)
    app.router.add_get("/tls", tls)
    app.router.add_post("/digest", digest)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/chunked", chunked)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/big", big)
    return app


async def start_servers(
    directory: Path, host: str = "127.0.0.1"
) -> tuple[Servers, list[web.AppRunner]]:
    ca_file, cert, key = make_test_ca(directory)
    hits: list[str] = []
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    ports = []
    runners = []
    for context in (None, tls):
        runner = web.AppRunner(make_app(hits), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0, ssl_context=context)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        runners.append(runner)
    return Servers(ports[0], ports[1], ca_file, hits, host), runners


@contextmanager
def servers_in_thread(directory: Path, host: str = "127.0.0.1") -> Iterator[Servers]:
    """The HTTP and HTTPS servers on an event loop of their own in a thread, beside a
    daemon that the test drives synchronously; stopped on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(start_servers(directory, host), loop)
    found, runners = started.result(30)
    try:
        yield found
    finally:
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class LoopbackRelay:
    """TCP on 127.0.0.1 -> the channel's unix socket, byte for byte: the same thing
    the relay inside the sandbox does, so real clients can use HTTP(S)_PROXY."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> LoopbackRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass


async def raw_request(socket_path: Path, head: str) -> tuple[int, str]:
    """Send one request head as written (no library rewriting it) and read the whole
    answer; the proxy is asked to close after it."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
    await writer.drain()
    data = await asyncio.wait_for(_read_answer(reader), 10)
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), body.decode()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = await reader.read(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def as_json(text: str) -> dict[str, object]:
    return json.loads(text)  # type: ignore[no-any-return]
