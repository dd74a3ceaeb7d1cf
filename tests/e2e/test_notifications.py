"""Deployment emails through a real SMTP server on loopback (aiosmtpd), sent by the
real daemon: the deployed and undeployed mails with the seed's subjects, and one that
waited in the outbox while the server was down."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import require_root
from tests.helpers import DaemonProcess, free_port, make_zip, running_daemon

PORT = free_port()
CONFIG: dict[str, Any] = {
    "profiles": [
        {"name": "tiny", "label": "tiny (tests)", "nominal_vcpus": 1, "nominal_memory_gib": 1,
         "vcpus": 0.5, "memory_gib": 0.25, "credits_per_hour": 0.5, "default": True},
    ],
    "notify": {
        "smtp": {"host": "127.0.0.1", "port": PORT, "security": "none", "timeout_s": 5},
        "from": "scriptd@example.test", "to": "admin@example.test",
        "retry": {"base_s": 0.3, "cap_s": 0.6}, "poll_s": 0.3,
    },
}  # fmt: skip


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def wait_for(self, subject: str, script: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if m["Subject"] == subject and f"Script: {script}," in m.get_content():
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no {subject!r} mail about {script}: {self.subjects()}")

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


class Server:
    """The SMTP server on PORT; `down()` and `up()` stop it and start a new one."""

    def __init__(self, box: Inbox) -> None:
        self.box = box
        self.controller: Controller | None = None

    def up(self) -> None:
        self.controller = Controller(self.box, hostname="127.0.0.1", port=PORT)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, Server]]:
    server = Server(Inbox())
    server.up()
    yield server.box, server
    server.down()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    with running_daemon(tmp_path_factory.mktemp("mail"), CONFIG, build_cache) as d:
        yield d


DEPLOYED = "Custom script deployed successfully - API Endpoint Available"
UNDEPLOYED = "Your custom script has been undeployed successfully"


def test_deployed_and_undeployed_mails(inbox: Any, daemon: DaemonProcess) -> None:
    box, _ = inbox
    admin = daemon.client()
    admin.create("mailed", deploy=True)
    assert admin.wait_status("mailed")["status"] == "Deployed"
    mail = box.wait_for(DEPLOYED, "mailed")
    assert (mail["From"], mail["To"]) == ("scriptd@example.test", "admin@example.test")
    body = mail.get_content()
    assert "Script: mailed, version 1 (mailed-v1)" in body
    assert f"Endpoint: http://127.0.0.1:{daemon.port}/v1/scripts/mailed/functions/" in body
    assert "Credits remaining: " in body and "Total allocation: 100.000000" in body
    admin.action("mailed", "undeploy", expect=200)
    body = box.wait_for(UNDEPLOYED, "mailed").get_content()
    assert "Script: mailed, version 1" in body and "Credits remaining: " in body
    # The server has the mail; the outbox row is marked sent just after, so wait for it.
    want = {("deployed", "sent"), ("undeployed", "sent")}
    deadline = time.monotonic() + 20
    while True:
        sent = admin.get("/v1/notifications?script=mailed")["notifications"]
        seen = {(n["kind"], n["status"]) for n in sent}
        if seen == want or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seen == want


def test_a_mail_queued_while_the_server_is_down_goes_out_when_it_is_back(
    inbox: Any, daemon: DaemonProcess
) -> None:
    box, server = inbox
    admin = daemon.client()
    server.down()
    try:
        admin.create("later", deploy=True)
        assert admin.wait_status("later")["status"] == "Deployed"
        deadline = time.monotonic() + 15
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            [row] = admin.get("/v1/notifications?script=later")["notifications"]
            if row["attempts"] >= 2:
                break
            time.sleep(0.1)
        assert row["status"] == "retrying" and row["last_error"], row
    finally:
        server.up()
    mail = box.wait_for(DEPLOYED, "later")
    assert "Script: later, version 1" in mail.get_content()
    # The server has the mail; the outbox row is marked sent just after, so wait for it.
    deadline = time.monotonic() + 20
    while True:
        [row] = admin.get("/v1/notifications?script=later")["notifications"]
        if row["status"] == "sent" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row["status"] == "sent" and row["attempts"] >= 3, row
    admin.action("later", "undeploy", expect=200)
    box.wait_for(UNDEPLOYED, "later")


def test_a_failed_deploy_is_mailed_with_its_reason(inbox: Any, daemon: DaemonProcess) -> None:
    box, _ = inbox
    admin = daemon.client()
    broken = make_zip({"main.py": "def f():\n    return 1\n\nraise RuntimeError('no luck')\n"})
    admin.create("broken", broken, deploy=True)
    assert admin.wait_status("broken")["status"] == "Deployment Failed"
    body = box.wait_for("Custom script deployment failed", "broken").get_content()
    assert "Script: broken, version 1" in body and "Reason: " in body and "no luck" in body
