"""The proxy's side of replica launches (serving's `EgressGate`): a socket per replica
in a folder of its own, bound read-only into that replica's sandbox with the trust
bundle beside it, and the policy of the script applied to it.

The trust folder holds the system's CA bundle plus the egress CA (SSL_CERT_FILE,
REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) and the egress CA alone (NODE_EXTRA_CA_CERTS);
the CA's key stays in a folder of its own that no sandbox sees. The same combined
bundle is also bound, read-only and in the sandbox's mount namespace only, over the
system bundle files the sandbox sees, so a client that ignores those variables (or a
script that clears them) still trusts the egress CA; the host's files are untouched."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import sandbox
from daemon.config.daemon_config import Config
from daemon.core.models import EgressSettings
from daemon.egress.ca import CertificateAuthority
from daemon.egress.httplog import DETAILED_LIMIT, REFUSAL_LIMIT
from daemon.egress.policy import EgressPolicy, HostPattern, IPAddress, Mode
from daemon.egress.proxy import ChannelSettings, EgressProxy
from daemon.egress.resolver import host_addresses
from daemon.egress.upstream import upstream_context
from daemon.serving.egress_gate import EgressAccess

SOCKET_IN = "/opt/scriptd/egress"  # the replica's socket folder, inside its sandbox
TRUST_IN = "/opt/scriptd/egress-trust"
SOCKET_NAME = "proxy.sock"
OPEN_TIMEOUT_S = 10.0
# Where clients look for the system's CA bundle: the distros' paths, and /etc/ssl/cert.pem
# is also the default file of the OpenSSL built into Node (OPENSSLDIR /etc/ssl), which
# `node --use-openssl-ca` reads.
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # Alpine, macOS-like layouts, Node's own OpenSSL
)

SettingsFor = Callable[[EgressSettings, Mapping[str, str]], ChannelSettings | None]


def policy_for(script: EgressSettings, config: Config, own: frozenset[IPAddress]) -> EgressPolicy:
    """A script's policy over the daemon's: its mode (else egress.default_policy) and
    allowlist, the daemon's ports and opened networks, the host's own addresses."""
    return EgressPolicy(
        mode=Mode(script.policy or config.egress_default_policy),
        allow_hosts=tuple(HostPattern.parse(h) for h in script.allow_hosts),
        ports=config.egress_ports,
        allowed_networks=config.egress_allowed_networks,
        own_addresses=own,
    )


def settings_from_config(config: Config) -> SettingsFor:
    """A script's settings over the daemon's (policy_for), with the connection limit."""
    own = host_addresses()

    def settings_for(script: EgressSettings, secrets: Mapping[str, str]) -> ChannelSettings | None:
        policy = policy_for(script, config, own)
        if policy.mode is Mode.OFF:
            return None
        limit = config.egress_max_connections_per_replica
        return ChannelSettings(policy, script.inspect, secrets, max_connections=limit)

    return settings_for


def write_trust(ca: CertificateAuthority, folder: Path) -> None:
    """The system bundle plus the egress CA, readable by every replica's uid."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    system = ssl.get_default_verify_paths().cafile or next(
        (p for p in SYSTEM_BUNDLES if Path(p).is_file()), None
    )
    bundle = Path(system).read_bytes() if system else b""
    (folder / "egress-ca.pem").write_bytes(ca.cert_pem)
    (folder / "bundle.pem").write_bytes(bundle.rstrip(b"\n") + b"\n" + ca.cert_pem)
    for name in ("egress-ca.pem", "bundle.pem"):
        (folder / name).chmod(0o644)


def bundle_targets() -> tuple[str, ...]:
    """Where the sandbox must find the combined bundle: OpenSSL's default file and the
    distros' bundle paths, each by its real path on the host (a bind target must not go
    through a symlink; the sandbox's links, such as /usr/lib/ssl/cert.pem, resolve to
    it). A path the host lacks is kept only outside the folders the sandbox binds from
    the host: the sandbox then gets it in its own root, while a missing file inside a
    host folder could not be a mount point."""
    defaults = ssl.get_default_verify_paths()
    host_folders = [b.target.rstrip("/") + "/" for b in sandbox.system_binds("none")[0]]
    found = []
    for path in (defaults.openssl_cafile, defaults.cafile, *SYSTEM_BUNDLES):
        real = os.path.realpath(path) if path else None
        if real is None or os.path.isdir(real):
            continue
        if os.path.isfile(real) or not any(real.startswith(f) for f in host_folders):
            found.append(real)
    return tuple(dict.fromkeys(found))


def trust_env() -> dict[str, str]:
    bundle = f"{TRUST_IN}/bundle.pem"
    return {
        "SSL_CERT_FILE": bundle,
        "REQUESTS_CA_BUNDLE": bundle,
        "CURL_CA_BUNDLE": bundle,
        "NODE_EXTRA_CA_CERTS": f"{TRUST_IN}/egress-ca.pem",
    }


class ReplicaEgress:
    """Opens and releases replicas' channels from launch threads, on the proxy's loop.

    A replica gets its shared socket (`proxy.sock`) and one socket per worker lane
    (`w0.sock`, ...): the supervisor gives each worker a relay port of its own that
    leads to its lane's socket, so each request is logged on the call of the worker
    that sent it. Lanes share the replica's account (bytes, connection limit)."""

    def __init__(
        self,
        proxy: EgressProxy,
        loop: asyncio.AbstractEventLoop,
        settings_for: SettingsFor,
        sockets_dir: Path,
        trust_dir: Path,
    ) -> None:
        self.proxy = proxy
        self.loop = loop
        self.settings_for = settings_for
        self.sockets_dir = sockets_dir
        self.trust_dir = trust_dir
        self._numbers = itertools.count(1)
        self._folders: dict[str, tuple[Path, int]] = {}  # replica -> (folder, lanes)
        self._lock = threading.Lock()
        bundle = trust_dir / "bundle.pem"
        self._trust_binds = ((trust_dir, TRUST_IN), *((bundle, t) for t in bundle_targets()))

    def open(
        self,
        replica: str,
        egress: EgressSettings,
        secrets: Mapping[str, str],
        lanes: int = 0,
        script: str = "",
    ) -> EgressAccess | None:
        settings = self.settings_for(egress, secrets)
        if settings is None:
            return None
        settings = replace(settings, script=script or replica)
        # Short folder names: a unix socket's path must fit in 108 bytes.
        folder = self.sockets_dir / f"r{next(self._numbers)}"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        with self._lock:
            self._folders[replica] = (folder, lanes)
        opening = self._open_channels(replica, folder, settings, lanes)
        try:
            asyncio.run_coroutine_threadsafe(opening, self.loop).result(OPEN_TIMEOUT_S)
        except BaseException:
            self.release(replica)  # the channels opened before the failure
            raise
        return EgressAccess(
            socket=f"{SOCKET_IN}/{SOCKET_NAME}",
            binds=((folder, SOCKET_IN), *self._trust_binds),
            env=trust_env(),
        )

    async def _open_channels(
        self, replica: str, folder: Path, settings: ChannelSettings, lanes: int
    ) -> None:
        shared = await self.proxy.open_channel(replica, folder / SOCKET_NAME, settings)
        for lane in range(lanes):
            path = folder / lane_socket(lane)
            await self.proxy.open_channel(lane_name(replica, lane), path, settings, shared.account)

    def take_log(self, replica: str, lane: int | None = None) -> dict[str, Any] | None:
        """On the loop: what the worker of `lane` sent since its last call ended, or None
        when it sent nothing. What came through the replica's shared port is added
        too: a worker without a lane, or a client made before the worker was (at
        import, in the supervisor) that kept the shared port."""
        channels = self.proxy.channels  # once per call: no list, no loop
        shared = channels.get(replica)
        if shared is not None and shared.log.total == 0:
            shared = None
        own = None if lane is None else channels.get(lane_name(replica, lane))
        if own is not None and own.log.total == 0:
            own = None
        if own is None:
            return None if shared is None else shared.take_log().to_json()
        log = own.take_log().to_json()
        return log if shared is None else merged_log(log, shared.take_log().to_json())

    def counters(self, replica: str) -> dict[str, int] | None:
        """On the loop: the replica's bytes and connections through the proxy since it
        started, or None when it has no egress (policy off, or already gone)."""
        channel = self.proxy.channels.get(replica)
        if channel is None:
            return None
        account = channel.account
        return {
            "bytes_out": account.bytes_out,
            "bytes_in": account.bytes_in,
            "open_connections": account.open_connections,
            "idle_connections": account.idle_connections,  # upstream ones kept for reuse
            "connections": account.connections_total,
        }

    def close_connections(self, replica: str, lane: int | None = None) -> None:
        """On the loop: end the open connections of a killed worker: those of its lane,
        or the whole replica's when it has none."""
        if lane is not None:
            names = [lane_name(replica, lane)]
        else:
            names = [replica, *(lane_name(replica, n) for n in range(self._lanes(replica)))]
        for name in names:
            channel = self.proxy.channels.get(name)
            if channel is not None:
                channel.close_connections()

    def _lanes(self, replica: str) -> int:
        with self._lock:
            return self._folders.get(replica, (None, 0))[1]

    def release(self, replica: str) -> None:
        with self._lock:
            opened = self._folders.pop(replica, None)
        if opened is not None:
            self.loop.call_soon_threadsafe(self._close, replica, *opened)

    def _close(self, replica: str, folder: Path, lanes: int) -> None:
        async def close() -> None:
            for lane in range(lanes):
                await self.proxy.close_channel(lane_name(replica, lane))
            await self.proxy.close_channel(replica)
            await asyncio.to_thread(shutil.rmtree, folder, True)

        self.loop.create_task(close())


def merged_log(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two request logs (as JSON) as one, in time order, within the detail limits."""
    requests = sorted(first["requests"] + second["requests"], key=lambda r: r["started_at"])
    refusals = sorted(first["refusals"] + second["refusals"], key=lambda r: r["at"])
    summed = {key: first[key] + second[key] for key in ("total", "bytes_out", "bytes_in")}
    return {
        **summed,
        "requests": requests[:DETAILED_LIMIT],
        "not_detailed": first["not_detailed"]
        + second["not_detailed"]
        + max(0, len(requests) - DETAILED_LIMIT),
        "refusals": refusals[:REFUSAL_LIMIT],
        "refusals_not_kept": first["refusals_not_kept"]
        + second["refusals_not_kept"]
        + max(0, len(refusals) - REFUSAL_LIMIT),
    }


def lane_socket(lane: int) -> str:
    """The socket of a worker lane, beside the replica's shared one (the supervisor's
    relay finds them by this name: runtimes/egress_relay.py)."""
    return f"w{lane}.sock"


def lane_name(replica: str, lane: int) -> str:
    return f"{replica}/w{lane}"


def make_gate(config: Config, loop: asyncio.AbstractEventLoop) -> tuple[ReplicaEgress, EgressProxy]:
    """The proxy and its gate for this daemon's state dir."""
    root = config.state_dir / "egress"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # replicas' uids reach their own folder, list nothing
    ca = CertificateAuthority(config.state_dir / "egress-ca")
    (config.state_dir / "egress-ca").chmod(0o700)
    write_trust(ca, root / "trust")
    proxy = EgressProxy(ca, upstream_context(config.egress_upstream_ca_file))
    gate = ReplicaEgress(
        proxy, loop, settings_from_config(config), root / "sockets", root / "trust"
    )
    return gate, proxy
