"""Email notifications: what each email says, and the outbox that gets it delivered.

Every email is first written to the outbox (a table the store keeps), then sent by
`Mailer`'s drain loop through a `Sender` (daemon/account/smtp.py). A message that fails
is retried with exponential backoff, capped and jittered; the outbox row says where it
stands: queued, sent, retrying (with the last error and the next attempt) or failed
(a permanent refusal by the server, or still undelivered after `give_up_after_s`).
Without a sender (no SMTP configured) messages stay queued and visible. Delivery is at
least once: a crash between the server's "250 OK" and the row's update sends it again
with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from daemon.core.credits import Account, format_credits
from daemon.core.outbox import Email, Kind, OutboxMessage

log = logging.getLogger(__name__)

Outcome = Literal["sent", "retry", "failed"]

SUBJECTS: dict[Kind, str] = {
    "deployed": "Custom script deployed successfully - API Endpoint Available",
    "undeployed": "Your custom script has been undeployed successfully",
    "deploy_failed": "Custom script deployment failed",
    "low_credits": "Credits are running low",
    "credits_exhausted": "Credits exhausted - custom scripts undeployed",
}


@dataclass(frozen=True)
class ScriptRef:
    name: str
    version: int
    display_name: str | None = None  # the version's display name, default "<name>-v<N>"

    def __str__(self) -> str:
        label = self.display_name or f"{self.name}-v{self.version}"
        return f"{self.name}, version {self.version} ({label})"


def compose(
    kind: Kind,
    scripts: Sequence[ScriptRef],
    account: Account,
    *,
    endpoint: str | None = None,
    reason: str | None = None,
) -> Email:
    """The email for one event. `scripts` is the script concerned; for the credits emails,
    the scripts deployed (low) or the ones just undeployed (exhausted)."""
    lines = [_OPENING[kind], ""]
    if scripts:
        lines += [f"Script: {s}" for s in scripts]
    else:
        lines.append("Script: none deployed")
    if endpoint:
        lines.append(f"Endpoint: {endpoint}")
    if reason:
        lines.append(f"Reason: {reason}")
    lines += [
        "",
        f"Credits remaining: {format_credits(max(0, account.balance))}",
        f"Total allocation: {format_credits(account.allocation)}",
    ]
    if kind in ("low_credits", "credits_exhausted"):
        lines += ["", "Raise the allocation with: scriptctl account set --allocation N"]
    first = scripts[0] if len(scripts) == 1 else None
    return Email(
        kind=kind,
        subject=SUBJECTS[kind],
        body="\n".join(lines) + "\n",
        script=first.name if first else None,
        version=first.version if first else None,
    )


_OPENING: dict[Kind, str] = {
    "deployed": "Your custom script is deployed and its API endpoint is available.",
    "undeployed": "Your custom script has been undeployed. Its data and configuration are "
    "kept; deploy it again to restore the endpoint.",
    "deploy_failed": "The deployment of your custom script failed.",
    "low_credits": "The account's credits are running low. When they reach zero, deployed "
    "scripts are undeployed.",
    "credits_exhausted": "The account's credits are exhausted. The deployed scripts have "
    "been undeployed; their data and configuration are kept.",
}


class Outbox(Protocol):
    """The store's outbox table, as the mailer uses it."""

    async def add(self, email: Email, recipient: str, now: float) -> int:
        """Insert with attempts 0, created_at and next_attempt_at now; return the id."""
        ...

    async def due(self, now: float, limit: int) -> list[OutboxMessage]:
        """Rows with sent_at NULL and next_attempt_at <= now, oldest first."""
        ...

    async def mark_sent(self, id: int, attempts: int, now: float) -> None:
        """attempts, sent_at now, next_attempt_at NULL."""
        ...

    async def mark_retry(self, id: int, attempts: int, error: str, next_at: float) -> None:
        """attempts, last_error, next_attempt_at."""
        ...

    async def mark_failed(self, id: int, attempts: int, error: str) -> None:
        """attempts, last_error, next_attempt_at NULL (sent_at stays NULL)."""
        ...


class SendError(Exception):
    """A delivery that did not happen; `permanent` means retrying cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sender(Protocol):
    async def send(self, message: OutboxMessage) -> None:
        """Deliver or raise SendError."""
        ...


@dataclass(frozen=True)
class Backoff:
    base_s: float = 30.0  # delay after the first failure
    factor: float = 2.0
    cap_s: float = 3600.0
    jitter: float = 0.5  # the delay is cut by up to this fraction, at random
    give_up_after_s: float = 3 * 86400.0  # then the message is failed, not retried

    def delay(self, attempts: int, rand: float) -> float:
        """Seconds before attempt `attempts` + 1, for a failure on attempt `attempts`."""
        plain = min(self.cap_s, self.base_s * self.factor ** max(0, attempts - 1))
        return plain * (1.0 - self.jitter * rand)


class Mailer:
    """Writes emails to the outbox and drains it through the sender (if any).

    `recipient` is the admin's address as configured ("" if none); a row keeps the
    address it was queued for, and the sender falls back to its own `to` for "".
    """

    def __init__(
        self,
        outbox: Outbox,
        sender: Sender | None,
        recipient: str = "",
        backoff: Backoff = Backoff(),
        poll_s: float = 30.0,
        batch: int = 20,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._recipient = recipient
        self._backoff = backoff
        self._poll_s = poll_s
        self._batch = batch
        self._clock = clock
        self._rand = rand
        self._wake = asyncio.Event()

    async def enqueue(self, email: Email) -> int:
        """Store the email (it survives crashes from here on) and wake the drainer."""
        msg_id = await self._outbox.add(email, self._recipient, self._clock())
        self._wake.set()
        return msg_id

    async def run(self) -> None:
        """Drain until cancelled: at once after enqueue, else every `poll_s` for retries."""
        while True:
            try:
                await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox drain failed")
            await self._sleep(self._next_wait())

    async def drain_once(self) -> int:
        """Try every due message once; return how many were sent."""
        if self._sender is None:
            return 0
        sent = 0
        for msg in await self._outbox.due(self._clock(), self._batch):
            outcome = await self._attempt(self._sender, msg)
            if outcome == "retry":
                break  # the server is down or busy: the rest wait for their turn
            sent += 1 if outcome == "sent" else 0
        return sent

    async def _attempt(self, sender: Sender, msg: OutboxMessage) -> Outcome:
        attempts = msg.attempts + 1
        try:
            await sender.send(msg)
        except SendError as e:
            return await self._failed(msg, attempts, e)
        await self._outbox.mark_sent(msg.id, attempts, self._clock())
        return "sent"

    async def _failed(self, msg: OutboxMessage, attempts: int, e: SendError) -> Outcome:
        now = self._clock()
        error = str(e)[:500]
        if e.permanent or now - msg.created_at >= self._backoff.give_up_after_s:
            log.warning("email %d failed for good after %d attempts: %s", msg.id, attempts, e)
            await self._outbox.mark_failed(msg.id, attempts, error)
            return "failed"
        next_at = now + self._backoff.delay(attempts, self._rand())
        log.info("email %d attempt %d failed (%s); next at %.0f", msg.id, attempts, e, next_at)
        await self._outbox.mark_retry(msg.id, attempts, error, next_at)
        return "retry"

    def _next_wait(self) -> float:
        # Short backoffs (tests, a quick first retry) must not wait for the poll.
        return min(self._poll_s, max(0.01, self._backoff.base_s * (1.0 - self._backoff.jitter)))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
