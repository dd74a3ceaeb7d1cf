"""The real daemon's log in journald's native protocol: a replica's start carries the
script, version and replica; a worker lost during a call carries that call's
execution id. The daemon runs in a mount namespace of its own in which
/run/systemd/journal/socket is the test's socket (these machines run no journald;
tests/daemon/core/test_journal_log.py parses the protocol)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

from tests.conftest import require, require_root
from tests.daemon.core.test_journal_log import (
    IN_NAMESPACE,
    has_systemd_python,
    parse_native,
    receive,
)
from tests.helpers import DaemonProcess, create_key, make_zip

MAIN = """\
import os


def hello():
    return "hi"


def crash():
    os._exit(3)
"""


class Journal:
    """The stand-in journald: collects every entry in a thread until closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._open = True
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while self._open:
            try:
                self.entries.append(parse_native(receive(self._sock)))
            except TimeoutError:
                continue

    def wait_for(self, text: str, timeout: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in list(self.entries):
                if text in entry.get("MESSAGE", ""):
                    return entry
            time.sleep(0.05)
        messages = [e.get("MESSAGE") for e in self.entries]
        raise AssertionError(f"no journal entry with {text!r} in {timeout} s: {messages}")

    def close(self) -> None:
        self._open = False
        self._thread.join(5)
        self._sock.close()


def test_the_daemons_journal_entries_name_script_version_replica_and_call(
    tmp_path: Path,
) -> None:
    require_root()
    require(shutil.which("unshare") is not None, "needs unshare (util-linux)")
    require(has_systemd_python(), "needs systemd-python (./dev.sh setup installs it)")
    journal = Journal(tmp_path / "journal.sock")
    (tmp_path / "d").mkdir()
    daemon = DaemonProcess(tmp_path / "d", {"logs": {"journal": "yes"}}, tmp_path / "cache")
    wrapper = tmp_path / "python-in-its-namespace"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec unshare --mount --propagation private -- sh -c '{IN_NAMESPACE}' "
        f'sh {journal.path} {daemon.python} "$@"\n'
    )
    wrapper.chmod(0o755)
    daemon.python = str(wrapper)
    try:
        daemon.start(timeout=120)
        started = journal.wait_for("admin API on")
        assert started["SYSLOG_IDENTIFIER"] == "scriptd" and started["PRIORITY"] == "6"
        admin = daemon.client()
        admin.create("noted", make_zip({"main.py": MAIN}), deploy=True)
        assert admin.wait_status("noted", timeout=300)["status"] == "Deployed", daemon.log()
        ready = journal.wait_for("ready in")
        assert ready["SCRIPTD_SCRIPT"] == "noted" and ready["SCRIPTD_VERSION"] == "1"
        assert ready["SCRIPTD_REPLICA"].startswith("noted-v1-r")
        gateway = daemon.gateway(create_key(admin, "noted"))
        answer = gateway.call("noted", "crash")
        assert answer.status == 502
        lost = journal.wait_for("exited")
        assert lost["SCRIPTD_EXECUTION_ID"] == answer.headers["X-Scriptd-Execution-Id"]
        assert lost["SCRIPTD_REPLICA"] == ready["SCRIPTD_REPLICA"]
        assert lost["PRIORITY"] == "4"
    finally:
        code = daemon.stop()
        journal.close()
    assert code == 0
    assert "admin API on" not in daemon.log()  # the journal had it, not stderr
