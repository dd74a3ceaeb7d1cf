"""The daemon's configuration: a TOML file where every key is optional.

`load_config(path)` reads the file (a missing default path means "all defaults"),
checks every key and returns a frozen `Config`. A bad file raises `ConfigError`
whose message names the key, the value and what is allowed; unknown keys are
refused too, so a typo never silently falls back to a default. The keys, their
units and defaults are listed in `KEYS` below and in the README.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.config.account import SECTIONS as ACCOUNT_SECTIONS
from daemon.config.account import parse_sections
from daemon.config.checks import Checker, abs_path, boolean, fail, flatten, integer, number, paths
from daemon.config.daemon_config import Config, IPNetwork
from daemon.config.egress import policy, ports
from daemon.config.profiles import parse_profiles
from daemon.config.steps import base_packages
from daemon.core.errors import ConfigError
from daemon.core.journal_log import JOURNAL_MODES

DEFAULT_CONFIG_PATH = Path("/etc/scriptd/scriptd.toml")
GIB = 1 << 30


# --- checking values -------------------------------------------------------------


def _cgroup_name(key: str, value: object) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        return value
    raise fail(key, value, "1 to 64 characters of letters, digits, '_', '.', '-'")


def _mode(key: str, value: object) -> int:
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value):
        return int(value, 8)
    raise fail(key, value, 'an octal mode as a string, such as "0660"')


def _group(key: str, value: object) -> str | None:
    if not isinstance(value, str):
        raise fail(key, value, "a group name (a string); empty means the daemon's group")
    return value or None


def _journal_mode(key: str, value: object) -> str:
    if value not in JOURNAL_MODES:
        raise fail(key, value, "auto, yes or no")
    return str(value)


def _listen(key: str, value: object) -> tuple[str, int]:
    try:
        return parse_listen(str(value)) if isinstance(value, str) else parse_listen("")
    except ValueError:
        allowed = 'HOST:PORT with a port from 1 to 65535, e.g. "127.0.0.1:8080"'
        raise fail(key, value, allowed) from None


def _optional_listen(key: str, value: object) -> tuple[str | None, int]:
    """HOST:PORT, or "" for off."""
    if value == "":
        return None, 0
    try:
        return parse_listen(value) if isinstance(value, str) else parse_listen("")
    except ValueError:
        allowed = 'HOST:PORT, e.g. "127.0.0.1:9464", or "" (off)'
        raise fail(key, value, allowed) from None


def _egress_networks(key: str, value: object) -> tuple[IPNetwork, ...]:
    networks = _networks(key, value)
    if any(network.prefixlen == 0 for network in networks):
        raise fail(key, value, "networks an admin opens on purpose, never all addresses (/0)")
    return networks


def _networks(key: str, value: object) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise fail(key, value, 'a list of IP addresses or CIDRs, e.g. ["10.0.0.1", "10.1.0.0/16"]')
    nets = []
    for i, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ValueError("not a string")
            nets.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise fail(f"{key}[{i}]", item, f"an IP address or CIDR as a string ({exc})") from None
    return tuple(nets)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port); raises ValueError on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


# key in the file -> (Config field(s), checker). A checker returning a tuple for
# two fields (listen) is spread over them.
KEYS: dict[str, tuple[tuple[str, ...], Checker]] = {
    "state_dir": (("state_dir",), abs_path),
    "admin.socket": (("admin_socket",), abs_path),
    "admin.mode": (("admin_socket_mode",), _mode),
    "admin.group": (("admin_socket_group",), _group),
    "gateway.listen": (("listen_host", "listen_port"), _listen),
    "archive.max_bytes": (("max_archive_bytes",), integer(1024, 64 * GIB)),
    "archive.max_entries": (("max_entries",), integer(1, 10_000_000)),
    "archive.max_unpacked_bytes": (("max_unpacked_bytes",), integer(1024, 256 * GIB)),
    "archive.max_file_bytes": (("max_file_bytes",), integer(1024, 64 * GIB)),
    "archive.upload_ttl_s": (("staged_archive_ttl_s",), integer(60, 7 * 86400)),
    "build.timeout_s": (("build_timeout_s",), integer(1, 86400)),
    "build.parallel": (("build_parallel",), integer(1, 64)),
    "build.cache_dir": (("build_cache_dir",), abs_path),
    "build.allow_source_builds": (("build_allow_source_builds",), boolean),
    "build.npm_ignore_scripts": (("build_npm_ignore_scripts",), boolean),
    "build.uv": (("uv_path",), abs_path),
    "build.uid": (("build_uid",), integer(1, 2**31 - 1)),
    "build.gid": (("build_gid",), integer(1, 2**31 - 1)),
    "build.cache_max_bytes": (("build_cache_max_bytes",), integer(1 << 20, 1 << 50)),
    "settings.timeout_min_s": (("timeout_min_s",), integer(1, 86400)),
    "settings.timeout_max_s": (("timeout_max_s",), integer(1, 86400)),
    "settings.timeout_default_s": (("timeout_default_s",), integer(1, 86400)),
    "runtimes.discover": (("runtimes_discover",), boolean),
    "runtimes.python": (("runtimes_python",), paths),
    "runtimes.node": (("runtimes_node",), paths),
    "gateway.max_body_bytes": (("max_body_bytes",), integer(1024, GIB)),
    "gateway.trusted_proxies": (("trusted_proxies",), _networks),
    "gateway.header_timeout_s": (("gateway_header_timeout_s",), number(0.1, 3600.0)),
    "gateway.body_timeout_s": (("gateway_body_timeout_s",), number(0.1, 3600.0)),
    "gateway.idle_timeout_s": (("gateway_idle_timeout_s",), number(0.1, 86400.0)),
    "uploads.dir": (("account_uploads_dir",), abs_path),
    "uploads.max_file_bytes": (("max_upload_file_bytes",), integer(1, 64 * GIB)),
    "uploads.max_total_bytes": (("max_upload_total_bytes",), integer(1, 1 << 50)),
    "dispatch.max_queue": (("queue_max",), integer(0, 100_000)),
    "dispatch.max_wait_s": (("queue_max_wait_s",), number(0.0, 3600.0)),
    "dispatch.cancel_grace_s": (("cancel_grace_s",), number(0.1, 600.0)),
    "replicas.start_timeout_s": (("replica_start_timeout_s",), number(1.0, 3600.0)),
    "replicas.max_start_failures": (("replica_max_start_failures",), integer(1, 100)),
    "replicas.spare_sandbox": (("replica_spare_sandbox",), boolean),
    "replicas.ping_interval_s": (("replica_ping_interval_s",), number(0.1, 3600.0)),
    "replicas.ping_timeout_s": (("replica_ping_timeout_s",), number(0.1, 3600.0)),
    "replicas.uid_base": (("replica_uid_base",), integer(1000, 2**31 - 2**20)),
    "replicas.uid_count": (("replica_uid_count",), integer(2, 2**20)),
    "replicas.shutdown_drain_s": (("shutdown_drain_s",), number(0.0, 3600.0)),
    "sandbox.cgroup_name": (("cgroup_name",), _cgroup_name),
    "logs.file_bytes": (("log_file_bytes",), integer(256 << 10, 64 * GIB)),
    "logs.files": (("log_files",), integer(1, 100)),
    "logs.replicas_kept": (("log_replicas_kept",), integer(1, 10_000)),
    "logs.rate_bytes_per_s": (("log_rate_bytes_per_s",), integer(4096, GIB)),
    "logs.journal": (("log_journal",), _journal_mode),
    "executions.output_bytes": (("executions_output_bytes",), integer(0, 16 << 20)),
    "executions.inputs_bytes": (("executions_inputs_bytes",), integer(0, 16 << 20)),
    "executions.outputs_bytes": (("executions_outputs_bytes",), integer(0, 16 << 20)),
    "executions.buffer": (("executions_buffer",), integer(100, 10_000_000)),
    "executions.buffer_bytes": (("executions_buffer_bytes",), integer(1 << 20, 64 * GIB)),
    "executions.retention_days": (("executions_retention_days",), number(0.001, 36500.0)),
    "executions.max_per_script": (("executions_max_per_script",), integer(1, 1 << 40)),
    "executions.prune_interval_s": (("executions_prune_interval_s",), number(0.1, 86400.0)),
    "executions.prune_batch": (("executions_prune_batch",), integer(1, 1_000_000)),
    "metrics.listen": (("metrics_host", "metrics_port"), _optional_listen),
    "egress.default_policy": (("egress_default_policy",), policy),
    "egress.ports": (("egress_ports",), ports),
    "egress.allowed_networks": (("egress_allowed_networks",), _egress_networks),
    "egress.max_connections_per_replica": (
        ("egress_max_connections_per_replica",),
        integer(1, 100_000),
    ),
    "egress.upstream_ca_file": (("egress_upstream_ca_file",), abs_path),
    "console.enabled": (("console_enabled",), boolean),
    "console.listen": (("console_host", "console_port"), _listen),
    "console.link_ttl_s": (("console_link_ttl_s",), integer(1, 86400)),
    "console.tls_cert": (("console_tls_cert",), abs_path),
    "console.tls_key": (("console_tls_key",), abs_path),
    "steps.base_packages": (("steps_base_packages",), base_packages),
    "steps.timeout_s": (("steps_timeout_s",), integer(1, 86400)),
    "steps.memory_mib": (("steps_memory_mib",), integer(16, 1 << 24)),
    "async.max_worker_share": (("async_max_worker_share",), number(0.01, 1.0)),
    "async.max_concurrency": (("async_max_concurrency",), integer(0, 10_000)),
    "async.retry_backoff_s": (("async_retry_backoff_s",), number(0.0, 86400.0)),
    "async.idempotency_window_s": (("async_idempotency_window_s",), number(1.0, 30 * 86400.0)),
    "async.poll_s": (("async_poll_s",), number(0.05, 3600.0)),
    "async.callback_attempts": (("async_callback_attempts",), integer(1, 100)),
    "async.callback_backoff_s": (("async_callback_backoff_s",), number(0.0, 86400.0)),
    "async.callback_timeout_s": (("async_callback_timeout_s",), number(0.1, 3600.0)),
}


def config_from_mapping(doc: Mapping[str, Any], source: str = "<mapping>") -> Config:
    """Check a parsed TOML document and build the Config it describes."""
    doc = dict(doc)
    raw_profiles = doc.pop("profiles", None)
    values: dict[str, Any] = {"source": source}
    values["account"] = parse_sections({k: doc.pop(k) for k in ACCOUNT_SECTIONS if k in doc})
    for key, value in flatten(doc).items():
        if key not in KEYS:
            raise ConfigError(
                f"unknown config key {key!r}; allowed keys: {', '.join(sorted(KEYS))}, profiles"
            )
        fields, check = KEYS[key]
        checked = check(key, value)
        values.update(zip(fields, checked if len(fields) > 1 else (checked,), strict=True))
    if raw_profiles is not None:
        values["profiles"] = parse_profiles(raw_profiles)
    config = Config(**values)
    _check_relations(config)
    return config


def _check_relations(c: Config) -> None:
    if c.timeout_min_s > c.timeout_max_s:
        raise fail(
            "settings.timeout_min_s",
            c.timeout_min_s,
            f"at most settings.timeout_max_s ({c.timeout_max_s})",
        )
    if not c.timeout_min_s <= c.timeout_default_s <= c.timeout_max_s:
        raise fail(
            "settings.timeout_default_s",
            c.timeout_default_s,
            f"between timeout_min_s ({c.timeout_min_s}) and timeout_max_s ({c.timeout_max_s})",
        )
    replica_uids = range(c.replica_uid_base, c.replica_uid_base + c.replica_uid_count)
    if c.build_uid in replica_uids:
        raise fail(
            "build.uid",
            c.build_uid,
            f"a uid outside the replicas' range {replica_uids.start}-{replica_uids.stop - 1}",
        )
    if (c.console_tls_cert is None) != (c.console_tls_key is None):
        raise fail(
            "console.tls_cert",
            c.console_tls_cert,
            "set together with console.tls_key (both, or neither for plain HTTP)",
        )
    if c.replica_ping_timeout_s <= c.replica_ping_interval_s:
        raise fail(
            "replicas.ping_timeout_s",
            c.replica_ping_timeout_s,
            f"more than replicas.ping_interval_s ({c.replica_ping_interval_s:g})",
        )


def load_config(path: Path | None) -> Config:
    """Read `path` (None: the default path, which may be absent) into a Config."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return config_from_mapping(doc, source=str(path))
