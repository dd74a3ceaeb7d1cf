from __future__ import annotations

import contextlib
import ssl
import stat
from pathlib import Path

from cryptography import x509

from daemon.egress.ca import CertificateAuthority


def test_the_ca_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "state")
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.cert_path.stat().st_mode) == 0o644
    again = CertificateAuthority(tmp_path / "state")
    assert again.cert_pem == ca.cert_pem


def test_leaves_are_cached_per_host_and_signed_by_the_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    context = ca.context_for("API.example.com")
    assert ca.context_for("api.example.com") is context
    assert ca.context_for("other.example.com") is not context
    leaf = x509.load_pem_x509_certificate(ca.mint_leaf("api.example.com"))
    root = x509.load_pem_x509_certificate(ca.cert_pem)
    leaf.verify_directly_issued_by(root)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["api.example.com"]
    ip_leaf = x509.load_pem_x509_certificate(ca.mint_leaf("10.1.2.3"))
    ip_names = ip_leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in ip_names.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]


def test_a_client_trusting_the_ca_accepts_a_leaf(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    client = ssl.create_default_context(cafile=str(ca.cert_path))
    server = ca.context_for("svc.example.com")
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_tls = client.wrap_bio(c_in, c_out, server_hostname="svc.example.com")
    server_tls = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client_tls, server_tls):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert client_tls.version() is not None and server_tls.version() is not None
