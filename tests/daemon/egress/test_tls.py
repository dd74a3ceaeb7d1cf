"""The proxy's TLS objects (daemon/egress/tls.py): the C object's own read, write and
pending, with the wrappers' results and errors, through a real handshake between the
proxy's leaf context and its upstream context; and upstream sessions resumed, only
under the name they were verified for."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import httpx
import pytest

from daemon.egress.ca import CertificateAuthority
from daemon.egress.tls import DirectSSLObject, _sessions, keep_session, resume_sessions
from daemon.egress.upstream import upstream_context
from tests.daemon.egress.conftest import EgressEnv
from tests.daemon.egress.waiting import wait_for


def _pump(source: ssl.MemoryBIO, into: ssl.MemoryBIO) -> None:
    into.write(source.read())


def test_a_handshake_and_records_through_the_c_methods(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "state")
    server_bios, client_bios = (
        (ssl.MemoryBIO(), ssl.MemoryBIO()),
        (ssl.MemoryBIO(), ssl.MemoryBIO()),
    )
    server = ca.context_for("api.example.test").wrap_bio(*server_bios, server_side=True)
    client = upstream_context(ca.cert_path).wrap_bio(
        *client_bios, server_hostname="api.example.test"
    )
    for side in (server, client):
        assert isinstance(side, DirectSSLObject)
        assert type(side.read).__name__ == "builtin_function_or_method"
    for _ in range(4):  # TLS 1.3: a few flights each way
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        _pump(client_bios[1], server_bios[0])
        _pump(server_bios[1], client_bios[0])
    assert client.version() == "TLSv1.3" and server.version() == "TLSv1.3"
    assert client.write(b"GET / HTTP/1.1\r\n\r\n") == 18
    _pump(client_bios[1], server_bios[0])
    assert server.pending() == 0 and server.read(65536) == b"GET / HTTP/1.1\r\n\r\n"
    with pytest.raises(ssl.SSLWantReadError):
        server.read(65536)


async def test_a_new_upstream_connection_resumes_the_last_session(egress: EgressEnv) -> None:
    channel, relay = await egress.open()
    assert egress.proxy.ca is not None
    trust = ssl.create_default_context(cafile=str(egress.proxy.ca.cert_path))
    resumed = []
    for _ in range(3):  # a client connection each, and no idle upstream kept between
        async with httpx.AsyncClient(proxy=relay.url, verify=trust) as http:
            answer = await http.get(f"{egress.servers.https}/tls")
            resumed.append(answer.json()["resumed"])
        await wait_for(lambda: channel.account.open_connections == 0, "the client left")
        channel.pool.close_idle()  # so the next client connection opens a new upstream
    assert resumed == [False, True, True]
    assert channel.take_log().total == 3


async def test_a_session_is_not_kept_unverified_nor_offered_to_another_name(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority(tmp_path / "state")
    client_context = upstream_context(ca.cert_path)

    def connect(name: str, context: ssl.SSLContext = client_context) -> ssl.SSLObject:
        server_bios, client_bios = (
            (ssl.MemoryBIO(), ssl.MemoryBIO()),
            (ssl.MemoryBIO(), ssl.MemoryBIO()),
        )
        server = ca.context_for(name).wrap_bio(*server_bios, server_side=True)
        client = context.wrap_bio(*client_bios, server_hostname=name)
        for _ in range(4):
            for side in (client, server):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
            _pump(client_bios[1], server_bios[0])
            _pump(server_bios[1], client_bios[0])
        with contextlib.suppress(ssl.SSLWantReadError):
            client.read(1)  # the tickets, sent after the handshake
        return client

    first = connect("api.example.test")
    keep_session(first)
    assert connect("api.example.test").session_reused
    assert not connect("svc.example.test").session_reused  # another name: a full handshake
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    resume_sessions(unverified)
    keep_session(connect("api.example.test", unverified))  # never kept from CERT_NONE
    assert not _sessions[unverified]
