"""Per-call capture of fd 1 and fd 2 of a Python worker, with a size limit.

Why file descriptors and not a sys.stdout replacement: prints from C
extensions, from os.write(1, ...) and from child processes the call starts
all land on fd 1/2, and only redirecting the descriptors catches them.

Where to: one unlinked file per stream, made once per worker (O_TMPFILE in
/tmp, else a memfd), opened O_APPEND. A call costs a dup2 per stream before
(and an ftruncate of a stream the last call wrote to: ~4 µs each, so one that
stayed empty is not truncated), a dup2, an lseek to its end (its size) and at most
one pread after:
about 6 µs for a call that prints nothing, and no thread. (A pipe would cap
memory exactly but needs a reader thread; its start and the GIL hand-offs cost
150 µs a call and milliseconds at p99.)
The price: what a call writes past the limit still lands in the file before
being dropped, so it counts toward the free space of /tmp (a tmpfs of the
sandbox; a call that fills it gets ENOSPC on its writes). A child process the
call left running keeps writing into the file, so its later output shows up
in the next call's capture. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import sys


def _open_sink(name: str) -> int:
    try:
        return os.open("/tmp", os.O_TMPFILE | os.O_RDWR | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except (OSError, AttributeError):
        pass
    try:
        fd = os.memfd_create(f"scriptd-{name}", os.MFD_CLOEXEC)
    except (OSError, AttributeError):
        import tempfile

        with tempfile.TemporaryFile() as file:  # the dup outlives the unlinked file's object
            fd = os.dup(file.fileno())
    os.set_inheritable(fd, False)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    return fd


class Capture:
    """start() before the call, stop() after: returns (stdout, stderr, truncated)."""

    def __init__(self, limit: int, marker: str) -> None:
        self.limit = limit
        self.marker = marker
        _ensure_std_fds()
        # Originals kept for the worker's life: each call costs two dup2 back.
        self._saved = (os.dup(1), os.dup(2))
        self._sinks = (_open_sink("stdout"), _open_sink("stderr"))
        self._written = [True, True]  # per sink: not known to be empty

    def start(self) -> None:
        _flush()
        for index, sink in enumerate(self._sinks):
            if self._written[index]:
                os.ftruncate(sink, 0)
                self._written[index] = False
        os.dup2(self._sinks[0], 1)
        os.dup2(self._sinks[1], 2)

    def stop(self) -> tuple[str, str, bool]:
        _flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        out, out_cut = self._read(0)
        err, err_cut = self._read(1)
        return out, err, out_cut or err_cut

    def _read(self, index: int) -> tuple[str, bool]:
        sink = self._sinks[index]
        # Its size: the end's offset (a third of an fstat's cost: no stat object). The
        # file is O_APPEND and read with pread, so where its offset stands matters
        # to no one.
        size = os.lseek(sink, 0, os.SEEK_END)
        if not size:
            return "", False
        self._written[index] = True
        data = os.pread(sink, min(size, self.limit), 0)
        text = data.decode("utf-8", errors="replace")
        if size <= self.limit:
            return text, False
        return text + self.marker.format(dropped=size - self.limit), True


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib costs ms to import)
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _ensure_std_fds() -> None:
    """A sandbox may start us with 0-2 closed; sinks must never land there."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
