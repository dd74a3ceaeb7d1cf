"""The proxy's TLS objects (daemon/egress/tls.py): the C object's own read, write and
pending, with the wrappers' results and errors, through a real handshake between the
proxy's leaf context and its upstream context."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest

from daemon.egress.ca import CertificateAuthority
from daemon.egress.tls import DirectSSLObject
from daemon.egress.upstream import upstream_context


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
