"""TLS objects for the proxy's own contexts.

Their per-record calls skip the ssl module's Python wrappers. uvloop's TLS protocol
reads, writes and asks for pending bytes through the SSLObject that
`SSLContext.wrap_bio` returns: `ssl.SSLObject.read`, `write` and `pending` are Python
methods that only call the C object's own, so each record cost a Python frame per
call (three per read, one per write; on both legs of an intercepted request).
`SSLContext.sslobject_class` is the documented hook for a subclass of SSLObject.

Upstream connections resume the TLS session of the last connection to the same
server name (TLS 1.3 tickets): the client side of a new upstream connection's
handshake costs the proxy about 400 us instead of 760 (measured in one process).
uvloop's create_connection takes no session, so the client-side objects of a context
that `resume_sessions` prepared offer the one kept for their server name. A session
is kept after a full handshake only (reading it copies it, about 170 us; a server
that refuses a ticket used again gives a full handshake, whose session is kept). It
is only kept from a connection whose certificate was verified, only offered under the
name it was verified for and with the context that verified it, and a server that did
not issue it cannot accept it (the handshake is then a full, verified one)."""

from __future__ import annotations

import ssl
import weakref
from typing import Any

# Server names whose sessions a context keeps at most (the oldest go first).
SESSIONS_KEPT = 256

_sessions: weakref.WeakKeyDictionary[ssl.SSLContext, dict[str, ssl.SSLSession]] = (
    weakref.WeakKeyDictionary()
)


class DirectSSLObject(ssl.SSLObject):
    """An SSLObject whose read, write and pending are the C object's methods, bound
    once (same arguments, results and errors as the wrappers they replace); on the
    client side of a context that resumes sessions, it offers its server name's."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> DirectSSLObject:
        if not kwargs.get("server_side") and kwargs.get("session") is None:
            kwargs["session"] = _kept_session(kwargs.get("context"), kwargs.get("server_hostname"))
        created: DirectSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        inner = getattr(created, "_sslobj", None)
        if inner is not None:  # (a later Python may build it otherwise: keep the wrappers)
            created.read = inner.read  # type: ignore[method-assign]
            created.write = inner.write  # type: ignore[method-assign]
            created.pending = inner.pending  # type: ignore[method-assign]
        return created


def direct(context: ssl.SSLContext) -> ssl.SSLContext:
    """`context`, whose TLS objects are `DirectSSLObject`s."""
    context.sslobject_class = DirectSSLObject
    return context


def resume_sessions(context: ssl.SSLContext) -> ssl.SSLContext:
    """`context` (a client's, verifying certificates): its connections offer the
    session that `keep_session` kept for their server name."""
    direct(context)
    _sessions[context] = {}
    return context


def keep_session(tls: object) -> None:
    """Keep the session of a connection (its SSLObject, None for plain TCP) for the
    next connection to the same server name. Call it once a response was read: a
    TLS 1.3 server sends its tickets after the handshake."""
    if not isinstance(tls, ssl.SSLObject) or tls.server_side or tls.session_reused:
        return  # (a resumed session is kept already: reading it copies it, ~170 us)
    kept = _sessions.get(tls.context)
    name = tls.server_hostname
    session = tls.session
    if kept is None or not name or session is None or not session.has_ticket:
        return
    if tls.context.verify_mode != ssl.CERT_REQUIRED:
        return  # never resume what was not verified
    kept.pop(name, None)
    if len(kept) >= SESSIONS_KEPT:
        kept.pop(next(iter(kept)))
    kept[name] = session


def _kept_session(context: object, name: object) -> ssl.SSLSession | None:
    kept = _sessions.get(context) if isinstance(context, ssl.SSLContext) else None
    if kept is None or not isinstance(name, str):
        return None
    return kept.get(name)
