"""The SMTP sender: stdlib smtplib run in a thread, one connection per message.

Notifications are a handful a day, so a blocking client in `asyncio.to_thread` is
simpler and as good as an async one (no new dependency). Security is "none" (plain,
for a relay on loopback), "starttls" (upgrade on the submission port, 587) or "tls"
(implicit TLS, 465); certificates are verified unless `verify_tls` is off.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

from daemon.account.email_messages import SendError
from daemon.config.account import SmtpSettings
from daemon.core.outbox import OutboxMessage

Security = Literal["none", "starttls", "tls"]
DEFAULT_PORTS: dict[Security, int] = {"none": 25, "starttls": 587, "tls": 465}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    from_addr: str
    to_addr: str  # the admin's address (used for rows queued without one)
    port: int | None = None  # None: 25 / 587 / 465 by security
    security: Security = "starttls"
    username: str | None = None  # log in only when set
    password: str | None = None
    timeout_s: float = SmtpSettings.timeout_s
    verify_tls: bool = True
    ca_file: str | None = None  # extra CA bundle (a private relay's certificate)

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]


def build_message(cfg: SmtpConfig, msg: OutboxMessage) -> EmailMessage:
    out = EmailMessage()
    out["From"] = cfg.from_addr
    out["To"] = msg.recipient or cfg.to_addr
    out["Subject"] = msg.subject
    out["Date"] = formatdate(msg.created_at, usegmt=True)
    # Stable per outbox row, so a resend after a crash can be recognised as the same mail.
    out["Message-ID"] = make_msgid(f"scriptd.outbox.{msg.id}.{int(msg.created_at)}", "scriptd")
    out["X-Scriptd-Kind"] = msg.kind
    out.set_content(msg.body)
    return out


class SmtpSender:
    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg

    async def send(self, message: OutboxMessage) -> None:
        email = build_message(self.cfg, message)
        await asyncio.to_thread(self._send_blocking, email)

    def _send_blocking(self, email: EmailMessage) -> None:
        try:
            with self._connect() as smtp:
                if self.cfg.security == "starttls":
                    smtp.starttls(context=self._tls_context())
                if self.cfg.username:
                    smtp.login(self.cfg.username, self.cfg.password or "")
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            raise SendError(f"recipient refused: {e.recipients}", _permanent(*codes)) from e
        except smtplib.SMTPAuthenticationError as e:
            # Wrong credentials are fixed in the config, then the queue should go out.
            raise SendError(f"login refused: {e.smtp_code} {_text(e.smtp_error)}") from e
        except smtplib.SMTPResponseException as e:
            raise SendError(f"{e.smtp_code} {_text(e.smtp_error)}", _permanent(e.smtp_code)) from e
        except (smtplib.SMTPException, OSError) as e:
            raise SendError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e

    def _connect(self) -> smtplib.SMTP:
        host, port, timeout = self.cfg.host, self.cfg.effective_port, self.cfg.timeout_s
        local = socket.getfqdn() if host not in ("127.0.0.1", "::1", "localhost") else "localhost"
        if self.cfg.security == "tls":
            ctx = self._tls_context()
            return smtplib.SMTP_SSL(host, port, local, timeout=timeout, context=ctx)
        return smtplib.SMTP(host, port, local, timeout=timeout)

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cfg.ca_file)
        if not self.cfg.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _permanent(*codes: int) -> bool:
    return bool(codes) and all(500 <= c < 600 for c in codes)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
