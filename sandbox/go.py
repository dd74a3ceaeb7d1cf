"""The "go" message that releases a parked sandbox (sandbox/parked.py): its environment.

A parked pid 1 has done every step of contain but the exec, and waits on a pipe for
this message. What must be fresh at exec time comes in it; everything else was fixed
when it parked. Only the environment is fresh: it carries secrets, whose values may
change while a sandbox is parked. The argv, cwd, ids, mounts, limits and descriptors
name the sandbox's identity and were given at park time.

Wire: b"go <length>\\n" then <length> bytes of NUL-separated KEY=VALUE entries. Pid 1
reads it to the end of the pipe (the parent closes its end after writing) and refuses
anything else: an empty pipe (the parent gone or discarding it) makes pid 1 exit.
Imports nothing but os: it runs in pid 1 between clone and exec.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

MAX_GO_BYTES = 1 << 20  # the whole environment, encoded
MAX_ENTRY_BYTES = 128 << 10  # Linux's MAX_ARG_STRLEN: a longer entry fails execve


class GoError(ValueError):
    """A bad environment (parent) or a bad message (pid 1)."""


def encode(env: Mapping[str, str]) -> bytes:
    """The message for `env`. Raises GoError for a key or value execve cannot carry."""
    entries = []
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise GoError(f"environment entries must be strings: {key!r}")
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise GoError(f"bad environment variable name or value: {key!r}")
        entry = f"{key}={value}".encode(errors="surrogateescape")
        if len(entry) >= MAX_ENTRY_BYTES:
            raise GoError(f"environment variable {key} is longer than {MAX_ENTRY_BYTES} bytes")
        entries.append(entry)
    payload = b"\0".join(entries)
    if len(payload) > MAX_GO_BYTES:
        raise GoError(f"the environment is larger than {MAX_GO_BYTES} bytes")
    return b"go %d\n" % len(payload) + payload


def decode(data: bytes) -> dict[str, str]:
    """The environment in a message; raises GoError for anything but a whole one."""
    head, sep, payload = data.partition(b"\n")
    if not sep or not head.startswith(b"go ") or not head[3:].isdigit():
        raise GoError("no go message (the parent discarded the sandbox)")
    if int(head[3:]) != len(payload) or len(payload) > MAX_GO_BYTES:
        raise GoError("truncated or oversized go message")
    env: dict[str, str] = {}
    for entry in payload.split(b"\0") if payload else ():
        key, eq, value = entry.partition(b"=")
        if not key or not eq:
            raise GoError("malformed environment entry")
        env[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return env


def await_go(fd: int) -> dict[str, str]:
    """Pid 1: block until the parent's message is whole (its end closed); its env."""
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
        if len(data) > MAX_GO_BYTES + 32:
            raise GoError("oversized go message")
    os.close(fd)
    return decode(data)
