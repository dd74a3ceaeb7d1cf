"""The systemd readiness datagram, on a real unix datagram socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from daemon.core.sdnotify import notify


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_ready_reaches_a_path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1") is True
        assert server.recv(64) == b"READY=1"


def test_ready_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"scriptd-test-notify-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1") is True
        assert server.recv(64) == b"STOPPING=1"


def test_the_daemon_says_ready_once_both_sockets_serve_then_stopping(tmp_path: Path) -> None:
    from tests.conftest import require_root
    from tests.helpers import start_daemon

    require_root()
    daemon = start_daemon(tmp_path / "d")  # returns on READY=1 (its own notify socket)
    try:
        assert daemon.notices == ["READY=1"]
        # Both sockets accept at once: READY comes after both serve.
        assert daemon.answers()
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5):
            pass
    finally:
        daemon.stop()
    assert daemon.notices == ["READY=1", "STOPPING=1"]
