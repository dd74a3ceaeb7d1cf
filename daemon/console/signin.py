"""Sign-in links and sessions of the web console, kept in the daemon's memory.

`scriptctl console` asks the admin API (over the unix socket, so the unix user is
known) for a link; the link's token is single-use and expires after
`console.link_ttl_s` (10 minutes). Redeeming it opens a session for that user: the
session id travels in a cookie, and each session has its own CSRF token that every
form and action must echo. Only hashes of tokens are kept, so a memory dump does not
give away a live link. A restart of the daemon ends every session (sign in again).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SESSION_TTL_S", "Session", "SignIn", "SignInRefused"]

SESSION_TTL_S = 12 * 3600  # a session ends after a working day even without sign-out
_MAX_LINKS = 1000  # links asked for and never used: the oldest go first


class SignInRefused(Exception):
    """A sign-in link that is unknown, used already or expired."""


@dataclass
class Session:
    user: str
    csrf: str
    expires: float
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    wizard: dict[str, Any] = field(default_factory=dict)  # the import wizard's answers

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())

    def flash(self, message: str, kind: str = "success") -> None:
        """A message the next page shows once (after a redirect)."""
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignIn:
    """Links (token hash -> user, expiry) and sessions (id hash -> Session)."""

    def __init__(self, link_ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.link_ttl_s = link_ttl_s
        self._clock = clock
        self._links: dict[str, tuple[str, float]] = {}
        self._sessions: dict[str, Session] = {}

    def issue_link_token(self, user: str) -> str:
        """A new single-use token for `user`."""
        self._forget_expired()
        while len(self._links) >= _MAX_LINKS:
            self._links.pop(next(iter(self._links)))
        token = secrets.token_urlsafe(32)
        self._links[_digest(token)] = (user, self._clock() + self.link_ttl_s)
        return token

    def peek(self, token: str) -> str:
        """The user a link's token is for, without spending it (the confirm page that
        a GET shows: a link preview or a prefetch must not use the link up)."""
        entry = self._links.get(_digest(token))
        if entry is None:
            raise SignInRefused("this sign-in link is unknown or was used already")
        if self._clock() >= entry[1]:
            raise SignInRefused("this sign-in link has expired")
        return entry[0]

    def redeem(self, token: str) -> tuple[str, Session]:
        """Spend the link's token: (the new session's id, the session)."""
        entry = self._links.pop(_digest(token), None)
        if entry is None:
            raise SignInRefused("this sign-in link is unknown or was used already")
        user, expires = entry
        if self._clock() >= expires:
            raise SignInRefused("this sign-in link has expired")
        session_id = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), self._clock() + SESSION_TTL_S)
        self._sessions[_digest(session_id)] = session
        return session_id, session

    def session(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(_digest(session_id))
        if session is None or self._clock() >= session.expires:
            self._sessions.pop(_digest(session_id), None)
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [k for k, (_, exp) in self._links.items() if now >= exp]:
            del self._links[key]
        for key in [k for k, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[key]
