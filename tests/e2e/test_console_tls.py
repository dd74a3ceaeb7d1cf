"""The console's sign-in over TLS (the session cookie is then Secure), and the link
route of a daemon whose console is off."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import REPO, AdminClient, DaemonProcess, free_port, running_daemon


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scriptd console test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "console.pem", folder / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def scriptctl(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "daemon.cli", "--socket", str(daemon.socket), *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO)


def test_over_tls_the_link_is_https_and_the_cookie_secure(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    console = {"listen": f"127.0.0.1:{port}", "tls_cert": str(cert), "tls_key": str(key)}
    with running_daemon(tmp_path / "tls", {"console": {"enabled": True, **console}}) as daemon:
        link = scriptctl(daemon, "console").stdout.split()[-1]
        assert link.startswith(f"https://127.0.0.1:{port}/signin?token=")
        asked = requests.get(link, verify=str(cert), allow_redirects=False, timeout=30)
        assert asked.status_code == 200 and "Sign in" in asked.text  # not spent by a GET
        token = link.split("token=", 1)[1]
        answer = requests.post(
            f"https://127.0.0.1:{port}/signin", data={"token": token}, verify=str(cert),
            allow_redirects=False, timeout=30,
        )  # fmt: skip
        assert answer.status_code == 303
        cookie = answer.headers["Set-Cookie"]
        for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
            assert attribute in cookie, cookie
        session_id = answer.cookies["scriptd_console"]
        page = requests.get(
            f"https://127.0.0.1:{port}/",
            cookies={"scriptd_console": session_id},
            verify=str(cert),
            timeout=30,
        )
        assert page.status_code == 200 and "Manage Custom Scripts" in page.text
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_the_link_route_says_when_the_console_is_off(daemon: DaemonProcess) -> None:
    body = AdminClient(daemon.socket).call("POST", "/v1/console/link", expect=404)
    assert "console is disabled" in body["error"]["message"]
    done = scriptctl(daemon, "console")
    assert done.returncode == 1 and "console is disabled" in done.stderr
