"""The email outbox's rows as the store keeps them, and the status derived from their
columns. Composing and sending is daemon/account/email_messages.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["deployed", "undeployed", "deploy_failed", "low_credits", "credits_exhausted"]


Status = Literal["queued", "sent", "retrying", "failed"]


@dataclass(frozen=True)
class Email:
    kind: Kind
    subject: str
    body: str
    script: str | None  # for listing and filtering the outbox; None for account-wide mail
    version: int | None


@dataclass(frozen=True)
class OutboxMessage:
    """One outbox row. Times are unix seconds (the store may keep them as ISO text)."""

    id: int
    kind: Kind
    recipient: str  # "" when no admin address was configured at enqueue time
    subject: str
    body: str
    attempts: int
    last_error: str | None
    created_at: float
    next_attempt_at: float | None  # None once sent or failed
    sent_at: float | None
    script: str | None = None  # optional columns, for filtering `scriptctl notifications`
    version: int | None = None

    @property
    def status(self) -> Status:
        """Derived from the columns, so the table needs no status of its own."""
        return status_of(self.attempts, self.next_attempt_at, self.sent_at)


def status_of(attempts: int, next_attempt_at: object, sent_at: object) -> Status:
    if sent_at is not None:
        return "sent"
    if next_attempt_at is None:
        return "failed"
    return "queued" if attempts == 0 else "retrying"
