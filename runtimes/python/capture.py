"""Per-call capture of fd 1 and fd 2 of a Python worker, with a size limit.

Why file descriptors and not a sys.stdout replacement: prints from C
extensions, from os.write(1, ...) and from child processes the call starts
all land on fd 1/2, and only redirecting the descriptors catches them.

For the length of one call fd 1 and fd 2 point at the write ends of two fresh
pipes; a drain thread reads both, keeps the first `limit` bytes of each and
counts the rest (so a call printing gigabytes costs no memory). When the call
ends the original descriptors are put back, which closes the pipes' last
write ends we hold; the drain thread then sees EOF. A background process that
still holds a write end is not waited for longer than LINGER_S: what it wrote
so far is kept, the rest is dropped with the pipe.
Standard library only.
"""

from __future__ import annotations

import os
import select
import sys
import threading

LINGER_S = 0.05


class _Stream:
    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def take(self, data: bytes) -> None:
        room = max(0, self.limit - len(self.kept))
        self.kept += data[:room]
        self.dropped += max(0, len(data) - room)


def _drain(streams: list[_Stream], stop: threading.Event) -> None:
    poller = select.poll()
    open_fds = {s.fd: s for s in streams}
    for fd in open_fds:
        poller.register(fd, select.POLLIN)
    while open_fds and not stop.is_set():
        for fd, _ in poller.poll(10):
            data = os.read(fd, 65536)
            if data:
                open_fds[fd].take(data)
            else:
                poller.unregister(fd)
                del open_fds[fd]


class Capture:
    """start() before the call, stop() after: returns (stdout, stderr, truncated)."""

    def __init__(self, limit: int, marker: str) -> None:
        self.limit = limit
        self.marker = marker
        _ensure_std_fds()
        # Originals kept for the worker's life, so each call costs two dup2 back.
        self._saved = (os.dup(1), os.dup(2))
        self._streams: list[_Stream] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        _flush()
        self._streams = []
        for target in (1, 2):
            r, w = os.pipe()
            os.dup2(w, target)
            os.close(w)
            self._streams.append(_Stream(r, self.limit))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_drain, args=(self._streams, self._stop), daemon=True
        )
        self._thread.start()

    def stop(self) -> tuple[str, str, bool]:
        _flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        assert self._thread is not None
        self._thread.join(LINGER_S)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        for s in self._streams:
            os.close(s.fd)
        out, err = (self._text(s) for s in self._streams)
        return out, err, any(s.dropped for s in self._streams)

    def _text(self, s: _Stream) -> str:
        text = bytes(s.kept).decode("utf-8", errors="replace")
        if s.dropped:
            text += self.marker.format(dropped=s.dropped)
        return text


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _ensure_std_fds() -> None:
    """A sandbox may start us with 0-2 closed; pipes must never land there."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
