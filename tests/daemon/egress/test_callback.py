"""Callbacks leave through the script's egress policy, signed: a real aiohttp server
on 127.0.0.1, names resolved by a StaticResolver (no DNS)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from daemon.config.daemon_config import Config
from daemon.core.models import EgressSettings
from daemon.egress.callback import CallbackSender, sign
from daemon.egress.policy import parse_networks
from daemon.egress.resolver import StaticResolver

SECRET = "whsec_test"
PUBLIC = EgressSettings("public")


class Hook:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.port = 0


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    found = Hook()

    async def receive(request: web.Request) -> web.Response:
        found.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.port = runner.addresses[0][1]
    yield found
    await runner.cleanup()


def sender(port: int, opened: bool = True) -> CallbackSender:
    config = replace(
        Config(),
        egress_ports=(80, 443, port),
        egress_allowed_networks=parse_networks(["127.0.0.1/32"]) if opened else (),
    )
    table = {"hooks.example": ["127.0.0.1"], "mixed.example": ["127.0.0.2", "127.0.0.1"]}
    return CallbackSender(config, StaticResolver(table))


async def test_a_delivery_is_signed_over_the_timestamp_and_body(hook: Hook) -> None:
    url = f"http://127.0.0.1:{hook.port}/hook"
    result = await sender(hook.port).post(url, b'{"a":1}', {"X-Scriptd-Status": "succeeded"},
                                          SECRET, PUBLIC)  # fmt: skip
    assert result.delivered and result.status_code == 204
    headers, body = hook.received[0]
    stamp = int(headers["X-Scriptd-Timestamp"])
    mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-Scriptd-Signature"] == f"v1={mac}" == sign(SECRET, stamp, body)
    assert headers["X-Scriptd-Status"] == "succeeded"


async def test_a_name_connects_only_to_an_address_the_policy_allows(hook: Hook) -> None:
    # mixed.example has 127.0.0.2 (refused: loopback, not opened) and 127.0.0.1 (opened)
    url = f"http://mixed.example:{hook.port}/hook"
    result = await sender(hook.port).post(url, b"{}", {}, SECRET, PUBLIC)
    assert result.delivered, result
    assert hook.received[0][0]["Host"] == f"mixed.example:{hook.port}"


@pytest.mark.parametrize(
    ("egress", "url", "opened", "words"),
    [
        (EgressSettings("off"), "http://127.0.0.1:{port}/hook", True, "egress is off"),
        (PUBLIC, "http://127.0.0.1:{port}/hook", False, "loopback address"),
        (PUBLIC, "http://127.0.0.1:9/hook", True, "port 9 is not allowed"),
        (EgressSettings("allowlist", ("api.example.com",)), "http://hooks.example:{port}/hook",
         True, "not in the allowlist"),
        (PUBLIC, "http://nowhere.example:{port}/hook", True, "does not resolve"),
    ],
)  # fmt: skip
async def test_refusals_name_the_rule_and_send_nothing(
    hook: Hook, egress: EgressSettings, url: str, opened: bool, words: str
) -> None:
    result = await sender(hook.port, opened).post(url.format(port=hook.port), b"{}", {},
                                                  SECRET, egress)  # fmt: skip
    assert not result.delivered and result.status_code is None
    assert words in (result.error or ""), result.error
    assert hook.received == []


async def test_an_answer_other_than_2xx_is_not_a_delivery(hook: Hook) -> None:
    url = f"http://127.0.0.1:{hook.port}/missing"
    result = await sender(hook.port).post(url, b"{}", {}, SECRET, PUBLIC)
    assert result.status_code == 404 and not result.delivered
    assert "answered 404" in (result.error or "")
