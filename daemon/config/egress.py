"""The [egress] section's values: the default policy of a script, the ports scripts may
reach, the networks an admin opens, the connection limit and the extra upstream CAs.
Their defaults live here once; daemon/egress reads them from `Config`."""

from __future__ import annotations

from daemon.config.checks import fail

EGRESS_POLICIES = ("off", "public", "allowlist")
DEFAULT_EGRESS_POLICY = "public"
DEFAULT_EGRESS_PORTS = (80, 443)
DEFAULT_MAX_CONNECTIONS_PER_REPLICA = 64


def policy(key: str, value: object) -> str:
    if value in EGRESS_POLICIES:
        return str(value)
    raise fail(key, value, "one of " + ", ".join(EGRESS_POLICIES))


def ports(key: str, value: object) -> tuple[int, ...]:
    allowed = "a non-empty list of port numbers from 1 to 65535, e.g. [80, 443]"
    if not isinstance(value, list) or not value:
        raise fail(key, value, allowed)
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 < item < 65536:
            raise fail(f"{key}[{i}]", item, "a port number from 1 to 65535")
    return tuple(dict.fromkeys(value))
