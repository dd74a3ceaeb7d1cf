"""systemd's readiness protocol (Type=notify): one datagram to $NOTIFY_SOCKET.

Without systemd the variable is absent and `notify` does nothing. The socket
may be a path or, with a leading '@', a name in the abstract namespace.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify"]


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1", "STOPPING=1"); True when it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(state.encode(), address)
    return True
