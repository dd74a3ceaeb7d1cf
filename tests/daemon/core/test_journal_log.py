"""The daemon's log in journald's native protocol, with the context fields.

libsystemd always writes to /run/systemd/journal/socket. There is no journald on the
build machines, so a unix datagram socket of the test stands in for it: the logging
process runs in a mount namespace of its own where that path is a bind mount of the
test's socket (the host's /run is untouched), and the test parses the datagrams as
journald does, including a message too big for one datagram (libsystemd then passes
a sealed memfd). When the host does run journald, a second test reads an entry back
with journalctl."""

from __future__ import annotations

import array
import asyncio
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from daemon.core import log_context
from daemon.core.journal_log import stderr_is_journal, wants_journal
from tests.conftest import require, require_root
from tests.helpers import REPO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
BIG = 300_000  # past a unix datagram's limit: libsystemd sends a memfd instead

CHILD = f"""
import asyncio, logging
from daemon.core import log_context
from daemon.core.journal_log import log_to_journal

logging.basicConfig(level="INFO")  # as scriptd's main() does first
log_to_journal("yes", "INFO")
log = logging.getLogger("scriptd.test")

async def main():
    log_context.bind(script="hello", version=3)
    async def replica():
        log_context.bind(replica="hello-v3-r7")
        log.warning("replica line\\nsecond line")
    await asyncio.create_task(replica())
    log.info("after the replica", extra={{"execution_id": "c0ffee01"}})
    log.error("x" * {BIG})

asyncio.run(main())
"""
# in a mount namespace of its own: /run is a fresh tmpfs whose journal socket is ours
IN_NAMESPACE = (
    "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && "
    f': > {JOURNAL_SOCKET} && mount --bind "$1" {JOURNAL_SOCKET} && shift && exec "$@"'
)


def has_systemd_python() -> bool:
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        return False
    return True


def parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY, newline, a 64-bit
    little-endian length, the value's bytes and a newline (values with newlines)."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(datagram):
        end = datagram.index(b"\n", at)
        line = datagram[at:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            at = end + 1
        else:
            (size,) = struct.unpack("<Q", datagram[end + 1 : end + 9])
            key, value = line, datagram[end + 9 : end + 9 + size]
            assert datagram[end + 9 + size : end + 10 + size] == b"\n"
            at = end + 10 + size
        fields[key.decode()] = value.decode()
    return fields


def receive(sock: socket.socket) -> bytes:
    """One entry: the datagram, or the memfd passed with SCM_RIGHTS."""
    data, ancillary, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            with os.fdopen(fds[0], "rb") as memfd:
                return memfd.read()
    return data


def test_log_lines_carry_the_script_version_replica_and_execution(tmp_path: Path) -> None:
    require_root()  # a mount namespace to stand our socket in for journald's
    require(shutil.which("unshare") is not None, "needs unshare (util-linux)")
    require(has_systemd_python(), "needs systemd-python (./dev.sh setup installs it)")
    path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                IN_NAMESPACE, "sh", str(path), sys.executable, "-c", CHILD]  # fmt: skip
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # nothing went to stderr: all of it to the journal
        sock.settimeout(5)
        entries = [parse_native(receive(sock)) for _ in range(3)]
    first, second, big = entries
    assert first["MESSAGE"] == "replica line\nsecond line"
    assert first["PRIORITY"] == "4" and first["SYSLOG_IDENTIFIER"] == "scriptd"
    assert first["LOGGER"] == "scriptd.test" and first["CODE_FUNC"] == "replica"
    assert (first["SCRIPTD_SCRIPT"], first["SCRIPTD_VERSION"]) == ("hello", "3")
    assert first["SCRIPTD_REPLICA"] == "hello-v3-r7"
    # the replica was bound in its own task only; extra= adds the execution
    assert "SCRIPTD_REPLICA" not in second and second["SCRIPTD_SCRIPT"] == "hello"
    assert second["SCRIPTD_EXECUTION_ID"] == "c0ffee01" and second["PRIORITY"] == "6"
    assert big["MESSAGE"] == "x" * BIG and big["PRIORITY"] == "3"
    for entry in entries:  # the record's lower-case attributes are never sent
        assert all(k == k.upper() for k in entry), sorted(entry)


def test_a_real_journald_keeps_the_fields() -> None:
    if not (os.path.exists(JOURNAL_SOCKET) and shutil.which("journalctl")):
        pytest.skip("this host runs no journald (no /run/systemd/journal/socket)")
    require(has_systemd_python(), "needs systemd-python (./dev.sh setup installs it)")
    from daemon.core.journal_log import journal_handler

    tag = uuid.uuid4().hex
    log = logging.getLogger(f"scriptd.journal-test-{tag}")
    log.propagate = False
    log.addHandler(journal_handler())
    log_context.bind(script=f"s{tag}")
    log.warning("journal test %s", tag)
    shown = subprocess.run(["journalctl", "--sync"], capture_output=True)
    found = subprocess.run(["journalctl", "-o", "json", f"SCRIPTD_SCRIPT=s{tag}"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert shown.returncode == 0 and found.stdout.strip(), found.stderr
    entry = json.loads(found.stdout.splitlines()[-1])
    assert entry["MESSAGE"] == f"journal test {tag}"


def test_bound_fields_stay_in_their_task() -> None:
    seen: dict[str, dict[str, str]] = {}

    async def child(name: str) -> None:
        log_context.bind(replica=name)
        await asyncio.sleep(0)
        seen[name] = log_context.current()

    async def main() -> None:
        log_context.bind(script="hello", version=1)
        await asyncio.gather(child("a"), child("b"))
        seen["parent"] = log_context.current()

    asyncio.run(main())
    assert seen["a"] == {"script": "hello", "version": "1", "replica": "a"}
    assert seen["b"]["replica"] == "b" and seen["parent"] == {"script": "hello", "version": "1"}


def test_auto_means_stderr_is_the_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert not stderr_is_journal() and not wants_journal("auto")
    st = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert stderr_is_journal() and wants_journal("auto")
    assert not wants_journal("no") and wants_journal("yes")
