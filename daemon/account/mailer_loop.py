"""Deployment and credits emails, wired: the store's outbox, the SMTP sender from the
config, and one method per event.

`Notifications.run()` is the daemon's drain task (daemon/account/email_messages.py's `Mailer`).
Every email is written to the outbox first; with no `notify.smtp.host` configured it
stays there, "queued", and `scriptctl notifications` lists it. The methods never
raise: an email that cannot even be queued is logged, the deployment goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from daemon.account.email_messages import Backoff, Mailer, ScriptRef, compose
from daemon.account.smtp import Security, SmtpConfig, SmtpSender
from daemon.config.account import NotifyConfig
from daemon.config.daemon_config import Config
from daemon.core.credits import Account
from daemon.core.models import Script, Version
from daemon.core.outbox import Email, Kind, OutboxMessage
from daemon.gateway.snippets import gateway_base_url
from daemon.store.database import Store

__all__ = ["Notifications", "StoreOutbox", "smtp_config"]

log = logging.getLogger(__name__)


class StoreOutbox:
    """daemon.account.email_messages.Outbox over the store, each call in a thread."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, email: Email, recipient: str, now: float) -> int:
        return await asyncio.to_thread(self._store.outbox_add, email, recipient, now)

    async def due(self, now: float, limit: int) -> list[OutboxMessage]:
        return await asyncio.to_thread(self._store.outbox_due, now, limit)

    async def mark_sent(self, id: int, attempts: int, now: float) -> None:
        await asyncio.to_thread(self._store.outbox_mark_sent, id, attempts, now)

    async def mark_retry(self, id: int, attempts: int, error: str, next_at: float) -> None:
        await asyncio.to_thread(self._store.outbox_mark_retry, id, attempts, error, next_at)

    async def mark_failed(self, id: int, attempts: int, error: str) -> None:
        await asyncio.to_thread(self._store.outbox_mark_failed, id, attempts, error)


def smtp_config(n: NotifyConfig) -> SmtpConfig | None:
    """The sender's settings, or None when no SMTP host is configured."""
    if not n.smtp.host:
        return None
    security: Security = n.smtp.security  # type: ignore[assignment]  # checked by config
    return SmtpConfig(
        host=n.smtp.host,
        from_addr=n.from_addr,
        to_addr=n.to_addr,
        port=n.smtp.port,
        security=security,
        username=n.smtp.username or None,
        password=n.smtp.password or None,
        timeout_s=n.smtp.timeout_s,
        verify_tls=n.smtp.verify_tls,
        ca_file=n.smtp.ca_file or None,
    )


def ref(script: Script, version: Version | None) -> ScriptRef:
    if version is None:
        return ScriptRef(script.name, script.current_version or 0)
    return ScriptRef(script.name, version.number, version.display_name)


class Notifications:
    def __init__(self, config: Config, store: Store) -> None:
        n = config.account.notify
        smtp = smtp_config(n)
        backoff = Backoff(
            base_s=n.retry.base_s, cap_s=n.retry.cap_s, give_up_after_s=n.retry.give_up_after_s
        )
        self.configured = smtp is not None
        self.mailer = Mailer(
            StoreOutbox(store),
            SmtpSender(smtp) if smtp else None,
            n.to_addr,
            backoff,
            poll_s=n.poll_s,
        )
        self._store = store
        self._base_url = gateway_base_url(config.listen_host, config.listen_port)

    async def run(self) -> None:
        if not self.configured:
            log.info("no notify.smtp.host: emails stay queued in the outbox")
        await self.mailer.run()

    async def deployed(self, script: Script, version: Version) -> None:
        endpoint = f"{self._base_url}/v1/scripts/{script.name}/functions/{{function}}"
        await self._send("deployed", [ref(script, version)], endpoint=endpoint)

    async def undeployed(self, script: Script, version: Version | None) -> None:
        await self._send("undeployed", [ref(script, version)])

    async def deploy_failed(self, script: Script, version: Version, reason: str) -> None:
        await self._send("deploy_failed", [ref(script, version)], reason=reason)

    async def low_credits(self, scripts: Sequence[ScriptRef], account: Account) -> None:
        await self._send("low_credits", scripts, account=account)

    async def credits_exhausted(self, scripts: Sequence[ScriptRef], account: Account) -> None:
        await self._send("credits_exhausted", scripts, account=account)

    async def _send(
        self,
        kind: Kind,
        scripts: Sequence[ScriptRef],
        *,
        account: Account | None = None,
        endpoint: str | None = None,
        reason: str | None = None,
    ) -> None:
        try:
            if account is None:
                account = await asyncio.to_thread(self._store.get_account)
            email = compose(kind, scripts, account, endpoint=endpoint, reason=reason)
            await self.mailer.enqueue(email)
        except Exception:
            log.exception("could not queue the %s email", kind)
