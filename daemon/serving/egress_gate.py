"""What a replica's launch needs from the egress proxy, declared here so serving does not
import daemon/egress (which sits above it): `EgressGate` opens the proxy's socket of one
replica and says what to bind into its sandbox and which variables to set; the launcher
releases it once the replica's process is gone. daemon/egress/gate.py implements it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from daemon.core.models import EgressSettings


@dataclass(frozen=True)
class EgressAccess:
    """One replica's way out. `binds` are (host path, path inside) pairs, read-only: folders,
    or files bound over the sandbox's files (the system CA bundle);
    `socket` is the proxy's socket as the sandbox sees it; `env` the variables the
    script's clients need (CA trust: paths inside the sandbox)."""

    socket: str
    binds: tuple[tuple[Path, str], ...]
    env: Mapping[str, str] = field(default_factory=dict)


class EgressGate(Protocol):
    def open(
        self,
        replica: str,
        settings: EgressSettings,
        secrets: Mapping[str, str],
        lanes: int = 0,
        script: str = "",
    ) -> EgressAccess | None:
        """Blocking, thread-safe (called from the launch thread). None: no network for
        this replica (policy off). `secrets` (name -> value) never appear in its log.
        `lanes`: sockets of its own for that many workers, so each request is logged on
        the call of the worker that sent it. `script` names the replica's script in the
        metrics."""
        ...

    def release(self, replica: str) -> None:
        """Thread-safe; closes the replica's socket and its connections."""
        ...
