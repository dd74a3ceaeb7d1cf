"""The daemon's settings as one frozen object, `Config`, with every default beside its
field. daemon/config/loader.py fills it from the TOML file and checks each key."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daemon.config.account import AccountConfig
from daemon.config.archive_limits import ArchiveLimits
from daemon.config.egress import (
    DEFAULT_EGRESS_POLICY,
    DEFAULT_EGRESS_PORTS,
    DEFAULT_MAX_CONNECTIONS_PER_REPLICA,
)
from daemon.config.profiles import DEFAULT_PROFILES, Profile
from daemon.config.steps import (
    DEFAULT_BASE_PACKAGES,
    DEFAULT_STEP_MEMORY_MIB,
    DEFAULT_STEP_TIMEOUT_S,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
GIB = 1 << 30


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/scriptd")
    admin_socket: Path = Path("/run/scriptd/admin.sock")
    admin_socket_mode: int = 0o660
    admin_socket_group: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    # [archive] limits: their defaults are ArchiveLimits' (daemon/config/archive_limits.py)
    max_archive_bytes: int = ArchiveLimits.max_archive_bytes
    max_entries: int = ArchiveLimits.max_entries
    max_unpacked_bytes: int = ArchiveLimits.max_unpacked_bytes
    max_file_bytes: int = ArchiveLimits.max_file_bytes
    staged_archive_ttl_s: int = 3600
    build_timeout_s: int = 600
    build_parallel: int = 2
    build_cache_dir: Path | None = None  # None: <state_dir>/cache
    build_allow_source_builds: bool = False
    build_npm_ignore_scripts: bool = True
    uv_path: Path | None = None  # None: the uv beside the daemon's python, else PATH
    build_uid: int = 199_999  # builds run as this uid/gid, never as root
    build_gid: int = 199_999
    build_cache_max_bytes: int = 10 * GIB  # uv and npm download caches; emptied past it
    timeout_min_s: int = 30
    timeout_max_s: int = 600
    timeout_default_s: int = 30
    runtimes_discover: bool = True
    runtimes_python: tuple[Path, ...] = ()
    runtimes_node: tuple[Path, ...] = ()
    profiles: tuple[Profile, ...] = DEFAULT_PROFILES
    # The call path (gateway, dispatcher, replicas).
    max_body_bytes: int = 4 << 20  # largest call body; more is 413
    max_upload_file_bytes: int = GIB  # largest account upload (PUT /v1/uploads/NAME)
    max_upload_total_bytes: int = 10 * GIB  # all account uploads together
    account_uploads_dir: Path | None = None  # None: <state_dir>/files (UPLOADS_DIR)
    # Peers whose X-Forwarded-For names the client (for the key-failure throttle).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Slow clients on the gateway's port: a request's head, its body, an idle connection.
    gateway_header_timeout_s: float = 10.0
    gateway_body_timeout_s: float = 30.0  # call bodies; uploads: between two reads
    gateway_idle_timeout_s: float = 75.0
    queue_max: int = 64  # calls waiting for a free worker, per script; more is 429
    queue_max_wait_s: float = 10.0  # longest a call waits for a free worker; then 429
    # concurrency > 1: a call past its deadline is cancelled in its worker, which is
    # killed (with the calls beside it) when the call has not ended this long after
    cancel_grace_s: float = 2.0
    replica_start_timeout_s: float = 30.0  # launch to hello and every worker connected
    replica_max_start_failures: int = 3  # failed starts in a row before "failing"
    replica_spare_sandbox: bool = True  # one sandbox per serving version parked ahead
    replica_ping_interval_s: float = 5.0
    replica_ping_timeout_s: float = 10.0
    replica_uid_base: int = 200_000  # script id N runs as uid/gid uid_base + N
    replica_uid_count: int = 100_000  # script ids from 1 to uid_count - 1
    shutdown_drain_s: float = 10.0  # running calls may finish this long at shutdown
    cgroup_name: str | None = None  # None: derived from the state dir (cgroup_root_name)
    # Replicas' stdout and stderr on the host (<state_dir>/logs, serving/replica_logs.py).
    log_file_bytes: int = 1 << 20  # a replica's log file is rotated before this size
    log_files: int = 3  # files kept per replica: the current one and rotated ones
    log_replicas_kept: int = 10  # per script: logs of this many latest replicas (+ running)
    log_rate_bytes_per_s: int = 1 << 20  # output read from one replica per second at most
    # The daemon's own log to journald with fields: auto (when stderr is the journal),
    # yes, no (daemon/core/journal_log.py).
    log_journal: str = "auto"
    executions_output_bytes: int = 64 << 10  # stdout/stderr kept per record and stream
    executions_inputs_bytes: int = 64 << 10  # a record's inputs (payload), as JSON
    executions_outputs_bytes: int = 64 << 10  # its result (a step's outputs), as JSON
    executions_buffer: int = 20_000  # records waiting for the store; past it the oldest drop
    executions_buffer_bytes: int = 64 << 20  # and their outputs and results, at most
    # Retention (daemon/account/retention_loop.py): execution records, sent or failed
    # emails and build logs older than this, or past the newest max_per_script of a script.
    executions_retention_days: float = 30.0
    executions_max_per_script: int = 100_000
    executions_prune_interval_s: float = 600.0  # a pass this often (and one at start)
    executions_prune_batch: int = 2000  # rows deleted per transaction
    # [metrics]: Prometheus' text format on its own listener; None: off
    metrics_host: str | None = "127.0.0.1"
    metrics_port: int = 9464
    # [egress]: outbound HTTP through the daemon's proxy (daemon/config/egress.py)
    egress_default_policy: str = DEFAULT_EGRESS_POLICY  # off | public | allowlist
    egress_ports: tuple[int, ...] = DEFAULT_EGRESS_PORTS
    egress_allowed_networks: tuple[IPNetwork, ...] = ()  # opened despite being non-global
    egress_max_connections_per_replica: int = DEFAULT_MAX_CONNECTIONS_PER_REPLICA
    egress_upstream_ca_file: Path | None = None  # CAs trusted upstream besides the system's
    # [console]: the web console's own listener (daemon/console/), never the gateway's
    console_enabled: bool = True
    console_host: str = "127.0.0.1"
    console_port: int = 8081
    console_link_ttl_s: int = 600  # a sign-in link from `scriptctl console` lives this long
    console_tls_cert: Path | None = None  # both set: the console is served over HTTPS
    console_tls_key: Path | None = None
    # [steps]: code steps' base environment and default limits (daemon/config/steps.py)
    steps_base_packages: tuple[str, ...] = DEFAULT_BASE_PACKAGES
    steps_timeout_s: int = DEFAULT_STEP_TIMEOUT_S  # a step's timeout when none is given
    steps_memory_mib: int = DEFAULT_STEP_MEMORY_MIB  # its memory limit, at most the profile's
    # [async]: calls answered 202 and run from the store's queue (daemon/account/async_loop.py)
    async_max_worker_share: float = 0.5  # of a script's workers, async calls hold at most this
    async_max_concurrency: int = 16  # async calls running at once, all scripts; 0 pauses them
    async_retry_backoff_s: float = 10.0  # before the first retry; doubles for the next
    async_idempotency_window_s: float = 86400.0  # an Idempotency-Key names one call this long
    async_poll_s: float = 1.0  # a waiting call (script busy or not serving) is tried this often
    async_callback_attempts: int = 5  # POSTs of a result to its callback URL at most
    async_callback_backoff_s: float = 10.0  # before the second POST; doubles for the next
    async_callback_timeout_s: float = 10.0  # one POST, connection to answer
    # [autoscale], [credits], [notify]: daemon/config/account.py
    account: AccountConfig = field(default_factory=AccountConfig)
    source: str = "built-in defaults"

    @property
    def cache_dir(self) -> Path:
        return self.build_cache_dir or self.state_dir / "cache"

    @property
    def uploads_dir(self) -> Path:
        """The account's uploaded files, UPLOADS_DIR (read-only) in every replica; not
        StateDir.staging, which holds project archives waiting to be used."""
        return self.account_uploads_dir or self.state_dir / "files"

    @property
    def cgroup_root_name(self) -> str:
        """The daemon's cgroup below its own, in every hierarchy: `sandbox.cgroup_name`,
        else `scriptd-<hash of the resolved state dir>`, so two daemons with different
        state dirs never share (nor clean up) each other's cgroups."""
        if self.cgroup_name:
            return self.cgroup_name
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()
        return f"scriptd-{digest[:12]}"

    @property
    def default_profile(self) -> Profile:
        return next(p for p in self.profiles if p.default)

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_archive_bytes=self.max_archive_bytes,
            max_entries=self.max_entries,
            max_unpacked_bytes=self.max_unpacked_bytes,
            max_file_bytes=self.max_file_bytes,
        )

    @property
    def step_timeout_s(self) -> int:
        """A step's default timeout (`steps.timeout_s`) within the allowed range."""
        return min(max(self.steps_timeout_s, self.timeout_min_s), self.timeout_max_s)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
