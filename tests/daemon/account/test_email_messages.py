"""Notifications: composition, and delivery through a real SMTP server on loopback.

The outbox is the daemon's own: `daemon.account.mailer_loop.StoreOutbox` on a real
`daemon.store.database.Store` in a temp file, so a change in the store's outbox SQL shows up here.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from daemon.account.email_messages import SUBJECTS, Backoff, Mailer, ScriptRef, compose
from daemon.account.mailer_loop import StoreOutbox
from daemon.account.smtp import SmtpConfig, SmtpSender
from daemon.core.credits import Account, to_micro
from daemon.core.outbox import OutboxMessage, Status
from daemon.store.database import Store
from tests.conftest import require

_OPEN: list[Store] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


class RealOutbox(StoreOutbox):
    """The daemon's outbox over a new Store at `path`, plus the reads that
    `scriptctl notifications` goes through (Store.list_outbox)."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        _OPEN.append(self.store)
        super().__init__(self.store)

    def list(self) -> list[OutboxMessage]:
        """Every message, oldest first (the store lists newest first)."""
        return list(reversed(self.store.list_outbox(limit=10_000)))

    def statuses(self) -> list[str]:
        """Each message's status as the store's SQL filter sees it, oldest first; it must
        agree with OutboxMessage.status, which the Python side computes."""
        seen: dict[int, str] = {}
        for status in get_args(Status):
            for message in self.store.list_outbox(limit=10_000, status=status):
                assert message.id not in seen, f"message {message.id} matches two statuses"
                seen[message.id] = status
        return [seen.get(m.id, "none") for m in self.list()]


ACCOUNT = Account(allocation=to_micro(100), balance=to_micro("42.5"))
APP = ScriptRef("invoice-parser", 3)


@pytest.mark.parametrize("kind", list(SUBJECTS))
def test_every_email_names_script_version_and_credits(kind: Any) -> None:
    e = compose(kind, [APP], ACCOUNT)
    assert e.subject == SUBJECTS[kind] and (e.script, e.version) == ("invoice-parser", 3)
    assert "Script: invoice-parser, version 3 (invoice-parser-v3)" in e.body
    assert "Credits remaining: 42.500000" in e.body
    assert "Total allocation: 100.000000" in e.body


def test_seed_subjects_and_details() -> None:
    deployed = compose("deployed", [APP], ACCOUNT, endpoint="http://h:8080/v1/scripts/x")
    assert deployed.subject == "Custom script deployed successfully - API Endpoint Available"
    assert "Endpoint: http://h:8080/v1/scripts/x" in deployed.body
    undeployed = compose("undeployed", [ScriptRef("x", 2, "nightly")], ACCOUNT)
    assert undeployed.subject == "Your custom script has been undeployed successfully"
    assert "Script: x, version 2 (nightly)" in undeployed.body
    failed = compose("deploy_failed", [APP], ACCOUNT, reason="pip install failed: no such dist")
    assert "Reason: pip install failed: no such dist" in failed.body


def test_exhausted_lists_every_script_and_never_shows_a_negative_balance() -> None:
    e = compose("credits_exhausted", [APP, ScriptRef("b", 1)], Account(to_micro(5), -30))
    assert (e.script, e.version) == (None, None)
    assert "Script: b, version 1 (b-v1)" in e.body and "Credits remaining: 0.000000" in e.body


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    b = Backoff(base_s=10, cap_s=60, jitter=0.5)
    assert [b.delay(n, 0.0) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    assert b.delay(2, 1.0) == 10


# --- a real SMTP server on loopback -------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse = False

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:
        if self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Inbox, int]]]:
    started: list[Controller] = []

    def start(port: int | None = None, **kwargs: Any) -> tuple[Inbox, int]:
        inbox, port = Inbox(), port or free_port()
        c = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
        c.start()
        started.append(c)
        return inbox, port

    yield start
    for c in started:
        c.stop()


def config(port: int, **kw: Any) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, security=kw.pop("security", "none"),
                      from_addr="scriptd@example.test", to_addr="admin@example.test",
                      timeout_s=5.0, **kw)  # fmt: skip


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def mailer(outbox: RealOutbox, port: int | None, recipient: str = "", **kw: Any) -> Mailer:
    sender = SmtpSender(config(port, **kw)) if port else None
    fast = Backoff(base_s=0.05, cap_s=0.2, jitter=0.5, give_up_after_s=60)
    return Mailer(outbox, sender, recipient, fast, poll_s=0.05)


async def test_deployed_email_arrives(smtp_server: Any, tmp_path: Path) -> None:
    inbox, port = smtp_server()
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, port)
    msg_id = await m.enqueue(compose("deployed", [APP], ACCOUNT))
    assert await m.drain_once() == 1
    [got] = inbox.messages
    assert got["Subject"] == "Custom script deployed successfully - API Endpoint Available"
    assert (got["From"], got["To"]) == ("scriptd@example.test", "admin@example.test")
    assert f"scriptd.outbox.{msg_id}." in got["Message-ID"]
    body = got.get_content()
    assert "invoice-parser, version 3" in body and "Credits remaining: 42.500000" in body
    [row] = outbox.list()
    assert (row.status, row.attempts, row.next_attempt_at) == ("sent", 1, None)
    assert outbox.statuses() == ["sent"]


async def test_a_row_goes_to_the_address_it_was_queued_for(
    smtp_server: Any, tmp_path: Path
) -> None:
    inbox, port = smtp_server()
    m = mailer(RealOutbox(tmp_path / "db"), port, recipient="ops@example.test")
    await m.enqueue(compose("deployed", [APP], ACCOUNT))
    await m.drain_once()
    assert inbox.messages[0]["To"] == "ops@example.test"


async def test_server_down_then_up_delivers_after_a_retry(smtp_server: Any, tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, port)
    task = asyncio.create_task(m.run())
    try:
        await m.enqueue(compose("undeployed", [APP], ACCOUNT))
        await eventually(lambda: outbox.list()[0].attempts >= 2)
        row = outbox.list()[0]
        assert row.status == "retrying" and row.next_attempt_at is not None
        assert row.last_error and "refused" in row.last_error.lower()
        await m.enqueue(compose("deployed", [APP], ACCOUNT))
        inbox, _ = smtp_server(port)
        await eventually(lambda: [r.status for r in outbox.list()] == ["sent", "sent"])
    finally:
        task.cancel()
    subjects = sorted(str(msg["Subject"]) for msg in inbox.messages)
    assert subjects == [SUBJECTS["deployed"], SUBJECTS["undeployed"]]
    assert outbox.list()[0].attempts >= 3


async def test_a_down_server_is_tried_once_per_pass(tmp_path: Path) -> None:
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, free_port())
    for kind in ("deployed", "undeployed", "low_credits"):
        await m.enqueue(compose(kind, [APP], ACCOUNT))  # type: ignore[arg-type]
    assert await m.drain_once() == 0
    assert outbox.statuses() == ["retrying", "queued", "queued"]
    assert [(r.status, r.attempts) for r in outbox.list()] == [
        ("retrying", 1), ("queued", 0), ("queued", 0)
    ]  # fmt: skip


async def test_without_smtp_messages_stay_queued(tmp_path: Path) -> None:
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, None)
    await m.enqueue(compose("low_credits", [APP], ACCOUNT))
    assert await m.drain_once() == 0
    [row] = outbox.list()
    assert (row.status, row.attempts, row.subject) == ("queued", 0, "Credits are running low")
    assert outbox.statuses() == ["queued"]


async def test_a_permanent_refusal_fails_without_retrying(smtp_server: Any, tmp_path: Path) -> None:
    inbox, port = smtp_server()
    inbox.refuse = True
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, port)
    await m.enqueue(compose("deploy_failed", [APP], ACCOUNT, reason="boom"))
    await m.drain_once()
    [row] = outbox.list()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    assert row.last_error and "550" in row.last_error
    assert await outbox.due(4e9, 10) == [] and outbox.statuses() == ["failed"]


async def test_gives_up_after_the_deadline(tmp_path: Path) -> None:
    outbox = RealOutbox(tmp_path / "db")
    now = [1000.0]
    m = Mailer(outbox, SmtpSender(config(free_port())), "", Backoff(base_s=1, give_up_after_s=10),
               clock=lambda: now[0])  # fmt: skip
    await m.enqueue(compose("deployed", [APP], ACCOUNT))
    await m.drain_once()
    assert outbox.list()[0].status == "retrying"
    now[0] += 11
    await m.drain_once()
    assert outbox.list()[0].status == "failed"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    require(shutil.which("openssl") is not None, "openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 535


async def test_starttls_with_login(smtp_server: Any, certificate: Any, tmp_path: Path) -> None:
    inbox, port = smtp_server(tls_context=server_tls(certificate), require_starttls=True,
                              authenticator=authenticator, auth_required=True)  # fmt: skip
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, port, security="starttls", username="scriptd", password="s3cret",
               ca_file=certificate[0])  # fmt: skip
    await m.enqueue(compose("deployed", [APP], ACCOUNT))
    assert await m.drain_once() == 1 and len(inbox.messages) == 1


async def test_wrong_password_is_retried(
    smtp_server: Any, certificate: Any, tmp_path: Path
) -> None:
    _, port = smtp_server(tls_context=server_tls(certificate), require_starttls=True,
                          authenticator=authenticator, auth_required=True)  # fmt: skip
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, port, security="starttls", username="scriptd", password="nope",
               ca_file=certificate[0])  # fmt: skip
    await m.enqueue(compose("deployed", [APP], ACCOUNT))
    await m.drain_once()
    row = outbox.list()[0]
    assert row.status == "retrying" and row.last_error and "login refused" in row.last_error


async def test_implicit_tls(smtp_server: Any, certificate: Any, tmp_path: Path) -> None:
    inbox, port = smtp_server(ssl_context=server_tls(certificate))
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, port, security="tls", ca_file=certificate[0])
    await m.enqueue(compose("credits_exhausted", [APP], ACCOUNT))
    assert await m.drain_once() == 1
    assert inbox.messages[0]["Subject"] == "Credits exhausted - custom scripts undeployed"


async def test_untrusted_certificate_is_refused(smtp_server: Any, certificate: Any,
                                                tmp_path: Path) -> None:  # fmt: skip
    _, port = smtp_server(ssl_context=server_tls(certificate))
    outbox = RealOutbox(tmp_path / "db")
    m = mailer(outbox, port, security="tls")  # no ca_file: the self-signed cert is unknown
    await m.enqueue(compose("deployed", [APP], ACCOUNT))
    assert await m.drain_once() == 0
    assert "CERTIFICATE_VERIFY_FAILED" in (outbox.list()[0].last_error or "")
