"""Opening a connection to the outside for one checked target: the policy checks the
name and port, the name is resolved by the proxy, every address is checked, and the
connection goes to exactly an address that passed (never to a second lookup).

Upstream TLS is verified against the system store plus egress.upstream_ca_file; a
failure becomes an `UpstreamError` whose message the script sees in a 502."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from daemon.egress.policy import EgressPolicy, EgressRefused, IPAddress, parse_literal
from daemon.egress.resolver import Resolver
from daemon.egress.tls import resume_sessions

CONNECT_TIMEOUT = 10.0

P = TypeVar("P", bound=asyncio.BaseProtocol)


class UpstreamError(Exception):
    """The target could not be reached; the message is for the script."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    address: IPAddress

    @property
    def tls_name(self) -> str:
        """The name to verify the certificate against (the address for IP literals)."""
        literal = parse_literal(self.host)
        return str(literal) if literal is not None else self.host


def upstream_context(extra_ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if extra_ca_file is not None:
        context.load_verify_locations(cafile=str(extra_ca_file))
    context.set_alpn_protocols(["http/1.1"])
    return resume_sessions(context)


async def check_target(
    policy: EgressPolicy, resolver: Resolver, host: str, port: int
) -> list[Target]:
    """The addresses of host:port that the policy lets through, in resolver order;
    raises EgressRefused when there is none."""
    policy.check_target(host, port)
    literal = parse_literal(host)
    addresses = [literal] if literal is not None else await resolver.resolve(host, port)
    passed: list[Target] = []
    first_refusal: EgressRefused | None = None
    for address in addresses:
        try:
            policy.check_address(host, address)
        except EgressRefused as refusal:
            first_refusal = first_refusal or refusal
            continue
        passed.append(Target(host, port, address))
    if not passed:
        assert first_refusal is not None
        raise first_refusal
    return passed


async def connect(
    targets: list[Target], tls: ssl.SSLContext | None, protocol: Callable[[], P]
) -> tuple[Target, P]:
    """Connect to the first target that answers (with TLS when `tls` is given); the
    connection's protocol comes from `protocol`."""
    last_error = ""
    for target in targets:
        try:
            opened = await asyncio.wait_for(_open(target, tls, protocol), CONNECT_TIMEOUT)
        except ssl.SSLCertVerificationError as err:
            raise UpstreamError(
                f"egress: the certificate of {target.host}:{target.port} could not be"
                f" verified: {err.verify_message or err.reason}"
            ) from None
        except (OSError, TimeoutError, ssl.SSLError) as err:
            last_error = str(err) or type(err).__name__
            continue
        return target, opened
    raise UpstreamError(
        f"egress: cannot connect to {targets[0].host}:{targets[0].port}: {last_error}"
    )


async def _open(target: Target, tls: ssl.SSLContext | None, protocol: Callable[[], P]) -> P:
    _, opened = await asyncio.get_running_loop().create_connection(
        protocol,
        str(target.address),
        target.port,
        ssl=tls,
        server_hostname=target.tls_name if tls is not None else None,
    )
    return opened
