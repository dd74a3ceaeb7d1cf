"""TLS objects for the proxy's own contexts whose per-record calls skip the ssl
module's Python wrappers. uvloop's TLS protocol reads, writes and asks for pending
bytes through the SSLObject that `SSLContext.wrap_bio` returns: `ssl.SSLObject.read`,
`write` and `pending` are Python methods that only call the C object's own, so each
record costs a Python frame per call (three per read, one per write; on both legs
of an intercepted request). `SSLContext.sslobject_class` is the documented hook for
a subclass of SSLObject."""

from __future__ import annotations

import ssl
from typing import Any


class DirectSSLObject(ssl.SSLObject):
    """An SSLObject whose read, write and pending are the C object's methods, bound
    once (same arguments, results and errors as the wrappers they replace)."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> DirectSSLObject:
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
