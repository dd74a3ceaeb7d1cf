"""The interception CA of one state dir: made once, its key kept 0600 beside it and
never inside a sandbox; leaf certificates are minted per host on first use and cached
as ready server-side SSL contexts.

All leaves share one EC key made at start: minting a leaf is then one signature
(well under a millisecond), and the key never leaves the daemon's memory."""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from daemon.egress.policy import parse_literal
from daemon.egress.tls import direct

CA_CERT_NAME = "egress-ca.pem"
CA_KEY_NAME = "egress-ca.key"
CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=30)
# A leaf is re-minted this long before it expires, so a cached one is never stale.
LEAF_RENEW_BEFORE = datetime.timedelta(days=1)
CLOCK_SKEW = datetime.timedelta(hours=1)


class CertificateAuthority:
    """Load the CA from `directory`, or make it there on first use."""

    def __init__(self, directory: Path) -> None:
        self.cert_path = directory / CA_CERT_NAME
        self.key_path = directory / CA_KEY_NAME
        if not self.cert_path.exists() or not self.key_path.exists():
            _create_ca(directory, self.cert_path, self.key_path)
        self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key_path}: the egress CA key must be an EC key")
        self._key = key
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key_pem = self._leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._contexts: dict[str, tuple[datetime.datetime, ssl.SSLContext]] = {}
        self._lock = threading.Lock()

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server-side context presenting a leaf for `host`, cached per host."""
        host = host.lower()
        now = _now()
        with self._lock:
            cached = self._contexts.get(host)
            if cached is not None and cached[0] - LEAF_RENEW_BEFORE > now:
                return cached[1]
            expires = now + LEAF_VALIDITY
            context = self._leaf_context(self._mint_leaf(host, now, expires))
            self._contexts[host] = (expires, context)
            return context

    def mint_leaf(self, host: str) -> bytes:
        """A fresh leaf certificate for `host` (PEM), signed by this CA."""
        now = _now()
        return self._mint_leaf(host, now, now + LEAF_VALIDITY)

    def _mint_leaf(self, host: str, now: datetime.datetime, expires: datetime.datetime) -> bytes:
        literal = parse_literal(host)
        alt: x509.GeneralName = (
            x509.IPAddress(literal) if literal is not None else x509.DNSName(host)
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self._cert.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(expires)
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def _leaf_context(self, cert_pem: bytes) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        # load_cert_chain only reads files: a private temp file, removed at once.
        with tempfile.NamedTemporaryFile(suffix=".pem") as chain:
            chain.write(cert_pem + self.cert_pem + self._leaf_key_pem)
            chain.flush()
            context.load_cert_chain(chain.name)
        return direct(context)


def _create_ca(directory: Path, cert_path: Path, key_path: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "scriptd"),
            x509.NameAttribute(NameOID.COMMON_NAME, "scriptd egress CA"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o644)


def _write_private(path: Path, data: bytes) -> None:
    """Create the key file 0600 from the start (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


__all__ = ["CertificateAuthority"]
