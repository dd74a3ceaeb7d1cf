"""POSTing an asynchronous call's result to its callback URL, through the script's
egress policy, signed.

The request leaves from the daemon, not from a sandbox, so it is checked here the way
the proxy checks a script's requests (daemon/egress/policy.py): the script's mode and
allowlist, the allowed ports, then every address the name resolves to (loopback,
private, link-local, ... are refused unless `egress.allowed_networks` opens them), and
the connection goes to exactly the addresses that passed (no second lookup). Redirects
are not followed.

The signature is HMAC-SHA256 with the script's callback secret over
`<timestamp>.<body>`, sent as `X-Scriptd-Signature: v1=<hex>` beside
`X-Scriptd-Timestamp` (unix seconds): a receiver recomputes it and refuses old
timestamps, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from daemon.config.daemon_config import Config
from daemon.core.models import EgressSettings
from daemon.egress.gate import policy_for
from daemon.egress.policy import EgressRefused, IPAddress, parse_literal
from daemon.egress.resolver import ResolveError, Resolver, SystemResolver, host_addresses

__all__ = ["CallbackResult", "CallbackSender", "sign"]

SIGNATURE_HEADER = "X-Scriptd-Signature"
TIMESTAMP_HEADER = "X-Scriptd-Timestamp"
_ERROR_BYTES = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class CallbackResult:
    status_code: int | None  # None: no answer
    error: str | None  # why it is not delivered (None: a 2xx)
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.error is None


class _Pinned(AbstractResolver):
    """aiohttp's resolver for one request: the addresses already checked."""

    def __init__(self, host: str, addresses: list[IPAddress]) -> None:
        self.host = host
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower() != self.host.lower():  # never: aiohttp asks for the URL's host
            raise OSError(f"callback: unexpected name {host!r}")
        return [
            ResolveResult(hostname=host, host=str(a), port=port, proto=0, flags=0,
                          family=socket.AF_INET if a.version == 4 else socket.AF_INET6)
            for a in self.addresses
        ]  # fmt: skip

    async def close(self) -> None:
        pass


class CallbackSender:
    def __init__(self, config: Config, resolver: Resolver | None = None) -> None:
        self.config = config
        self.resolver = resolver or SystemResolver()
        self.own = host_addresses()
        self.timeout = aiohttp.ClientTimeout(total=config.async_callback_timeout_s)

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], secret: str,
        egress: EgressSettings,
    ) -> CallbackResult:  # fmt: skip
        """POST `body` to `url` signed with `secret`; never raises."""
        started = time.perf_counter()
        try:
            status = await self._post(URL(url), body, headers, secret, egress)
        except (EgressRefused, ResolveError) as exc:
            return self._result(None, str(exc), started)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return self._result(None, f"callback: {type(exc).__name__}: {exc}"[:_ERROR_BYTES],
                                started)  # fmt: skip
        error = None if 200 <= status < 300 else f"callback: the receiver answered {status}"
        return self._result(status, error, started)

    async def _post(
        self, url: URL, body: bytes, headers: dict[str, str], secret: str,
        egress: EgressSettings,
    ) -> int:  # fmt: skip
        host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._checked(host, port, egress)
        stamp = int(time.time())
        signed: dict[str, Any] = {**headers, TIMESTAMP_HEADER: str(stamp),
                                  SIGNATURE_HEADER: sign(secret, stamp, body)}  # fmt: skip
        connector = aiohttp.TCPConnector(resolver=_Pinned(host, addresses), use_dns_cache=False)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=self.timeout) as session,
            session.post(url, data=body, headers=signed, allow_redirects=False) as response,
        ):
            await response.read()
            return response.status

    async def _checked(self, host: str, port: int, egress: EgressSettings) -> list[IPAddress]:
        """The addresses of host that the script's policy lets through; EgressRefused
        when there is none (the first refusal names the rule)."""
        policy = policy_for(egress, self.config, self.own)
        policy.check_target(host, port)
        literal = parse_literal(host)
        found = [literal] if literal is not None else await self.resolver.resolve(host, port)
        allowed: list[IPAddress] = []
        refusal: EgressRefused | None = None
        for address in found:
            try:
                policy.check_address(host, address)
            except EgressRefused as exc:
                refusal = refusal or exc
                continue
            allowed.append(address)
        if not allowed:
            raise refusal or EgressRefused(f"egress: {host} has no address", "resolve")
        return allowed

    @staticmethod
    def _result(status: int | None, error: str | None, started: float) -> CallbackResult:
        return CallbackResult(status, error, (time.perf_counter() - started) * 1000)
