"""Per-client throttling of failed API-key attempts, in bounded memory.

Each client gets a token bucket: ``burst`` failures are free, then one more
every ``window_s / burst`` seconds (defaults: 5 failures, 10 s). A client whose
bucket is empty is refused before its key is even parsed, so random keys cost
no argon2. Clients live in an LRU of ``max_clients`` entries: forgetting the
least recently seen one only gives it a fresh bucket, never a wrong refusal.

IPv6 clients are grouped by /64, the block one subscriber usually holds, so an
attacker cannot get a fresh bucket per address from their own prefix.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailureThrottle", "client_bucket"]

Clock = Callable[[], float]


def client_bucket(address: str | None) -> str:
    """The throttling unit of a peer address: IPv4 as is, IPv6 by /64,
    IPv4-mapped IPv6 as its IPv4 address; anything else (a unix socket peer,
    None) verbatim."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class FailureThrottle:
    """Counts failures per client; says how long a client must wait."""

    def __init__(
        self,
        *,
        burst: int = 5,
        window_s: float = 10.0,
        max_clients: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if burst < 1 or window_s <= 0 or max_clients < 1:
            raise ValueError("burst and max_clients must be >= 1 and window_s > 0")
        self._burst = float(burst)
        self._rate = burst / window_s  # tokens regained per second
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def retry_after(self, client: str) -> float:
        """0.0 when ``client`` may try a key now, else the seconds to wait."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        self._refill(bucket)
        if bucket.tokens >= 1.0:
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def record_failure(self, client: str) -> None:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(self._burst, self._clock())
            self._buckets[client] = bucket
            if len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            self._refill(bucket)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)

    def refund(self, client: str) -> None:
        """Give back a failure charged in advance (the attempt succeeded)."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            self._refill(bucket)
            bucket.tokens = min(self._burst, bucket.tokens + 1.0)

    def _refill(self, bucket: _Bucket) -> None:
        now = self._clock()
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
        bucket.updated = now
