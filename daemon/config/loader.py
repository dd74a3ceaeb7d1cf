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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config.account import SECTIONS as ACCOUNT_SECTIONS
from daemon.config.account import AccountConfig, parse_sections
from daemon.config.checks import Checker, abs_path, boolean, fail, flatten, integer, number, paths
from daemon.core.errors import ConfigError

if TYPE_CHECKING:
    from daemon.archive.intake import ArchiveLimits

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_CONFIG_PATH = Path("/etc/scriptd/scriptd.toml")
GIB = 1 << 30


@dataclass(frozen=True)
class Profile:
    """A hardware profile: what the user picks (nominal) and what a replica gets."""

    name: str
    label: str
    nominal_vcpus: float
    nominal_memory_bytes: int
    vcpus: float
    memory_bytes: int
    credits_per_hour: float
    default: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "nominal_vcpus": self.nominal_vcpus,
            "nominal_memory_bytes": self.nominal_memory_bytes,
            "vcpus": self.vcpus,
            "memory_bytes": self.memory_bytes,
            "credits_per_hour": self.credits_per_hour,
            "default": self.default,
        }


def _profile(nv: int, ngb: int, v: float, gb: float, credits: float, default: bool) -> Profile:
    unit = "vCPU" if nv == 1 else "vCPUs"
    return Profile(
        name=f"{nv}vcpu-{ngb}gb",
        label=f"{nv} {unit}, {ngb} GB memory",
        nominal_vcpus=nv,
        nominal_memory_bytes=ngb * GIB,
        vcpus=v,
        memory_bytes=int(gb * GIB),
        credits_per_hour=credits,
        default=default,
    )


# The seed's five profiles: nominal -> actual vCPU and memory, credits per hour.
DEFAULT_PROFILES: tuple[Profile, ...] = (
    _profile(1, 2, 0.7, 1.1, 0.07698, True),
    _profile(2, 4, 1.5, 2.5, 0.15396, False),
    _profile(2, 8, 1.5, 6.5, 0.144, False),
    _profile(4, 8, 3.5, 6.0, 0.30792, False),
    _profile(4, 16, 3.5, 13.5, 0.288, False),
)


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/scriptd")
    admin_socket: Path = Path("/run/scriptd/admin.sock")
    admin_socket_mode: int = 0o660
    admin_socket_group: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    max_archive_bytes: int = GIB
    max_entries: int = 10_000
    max_unpacked_bytes: int = 2 * GIB
    max_file_bytes: int = GIB
    upload_ttl_s: int = 3600
    build_timeout_s: int = 600
    build_parallel: int = 2
    build_cache_dir: Path | None = None  # None: <state_dir>/cache
    build_allow_source_builds: bool = False
    build_npm_ignore_scripts: bool = True
    uv_path: Path | None = None  # None: the uv beside the daemon's python, else PATH
    build_uid: int = 199_999  # builds run as this uid/gid, never as root
    build_gid: int = 199_999
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
    queue_max: int = 64  # calls waiting for a free worker, per script; more is 429
    queue_max_wait_s: float = 10.0  # longest a call waits for a free worker; then 429
    replica_start_timeout_s: float = 30.0  # launch to hello and every worker connected
    replica_max_start_failures: int = 3  # failed starts in a row before "failing"
    replica_ping_interval_s: float = 5.0
    replica_ping_timeout_s: float = 10.0
    replica_uid_base: int = 200_000  # script id N runs as uid/gid uid_base + N
    replica_uid_count: int = 100_000  # script ids from 1 to uid_count - 1
    shutdown_drain_s: float = 10.0  # running calls may finish this long at shutdown
    cgroup_name: str = "scriptd"  # the daemon's cgroup below its own, in every hierarchy
    executions_output_bytes: int = 64 << 10  # stdout/stderr kept per record and stream
    executions_buffer: int = 20_000  # records waiting for the store; past it the oldest drop
    executions_buffer_bytes: int = 64 << 20  # and their outputs and results, at most
    # [autoscale], [credits], [notify]: daemon/config/account.py
    account: AccountConfig = field(default_factory=AccountConfig)
    source: str = "built-in defaults"

    @property
    def cache_dir(self) -> Path:
        return self.build_cache_dir or self.state_dir / "cache"

    @property
    def uploads_dir(self) -> Path:
        """The account's uploaded files, UPLOADS_DIR (read-only) in every replica; not
        StateDir.uploads, which holds project archives waiting to be used."""
        return self.account_uploads_dir or self.state_dir / "files"

    @property
    def default_profile(self) -> Profile:
        return next(p for p in self.profiles if p.default)

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def archive_limits(self) -> ArchiveLimits:
        from daemon.archive.intake import ArchiveLimits

        return ArchiveLimits(
            max_archive_bytes=self.max_archive_bytes,
            max_entries=self.max_entries,
            max_unpacked_bytes=self.max_unpacked_bytes,
            max_file_bytes=self.max_file_bytes,
        )

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


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


def _listen(key: str, value: object) -> tuple[str, int]:
    try:
        return parse_listen(str(value)) if isinstance(value, str) else parse_listen("")
    except ValueError:
        allowed = 'HOST:PORT with a port from 1 to 65535, e.g. "127.0.0.1:8080"'
        raise fail(key, value, allowed) from None


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
    "archive.upload_ttl_s": (("upload_ttl_s",), integer(60, 7 * 86400)),
    "build.timeout_s": (("build_timeout_s",), integer(1, 86400)),
    "build.parallel": (("build_parallel",), integer(1, 64)),
    "build.cache_dir": (("build_cache_dir",), abs_path),
    "build.allow_source_builds": (("build_allow_source_builds",), boolean),
    "build.npm_ignore_scripts": (("build_npm_ignore_scripts",), boolean),
    "build.uv": (("uv_path",), abs_path),
    "build.uid": (("build_uid",), integer(1, 2**31 - 1)),
    "build.gid": (("build_gid",), integer(1, 2**31 - 1)),
    "settings.timeout_min_s": (("timeout_min_s",), integer(1, 86400)),
    "settings.timeout_max_s": (("timeout_max_s",), integer(1, 86400)),
    "settings.timeout_default_s": (("timeout_default_s",), integer(1, 86400)),
    "runtimes.discover": (("runtimes_discover",), boolean),
    "runtimes.python": (("runtimes_python",), paths),
    "runtimes.node": (("runtimes_node",), paths),
    "gateway.max_body_bytes": (("max_body_bytes",), integer(1024, GIB)),
    "gateway.trusted_proxies": (("trusted_proxies",), _networks),
    "uploads.dir": (("account_uploads_dir",), abs_path),
    "uploads.max_file_bytes": (("max_upload_file_bytes",), integer(1, 64 * GIB)),
    "uploads.max_total_bytes": (("max_upload_total_bytes",), integer(1, 1 << 50)),
    "dispatch.max_queue": (("queue_max",), integer(0, 100_000)),
    "dispatch.max_wait_s": (("queue_max_wait_s",), number(0.0, 3600.0)),
    "replicas.start_timeout_s": (("replica_start_timeout_s",), number(1.0, 3600.0)),
    "replicas.max_start_failures": (("replica_max_start_failures",), integer(1, 100)),
    "replicas.ping_interval_s": (("replica_ping_interval_s",), number(0.1, 3600.0)),
    "replicas.ping_timeout_s": (("replica_ping_timeout_s",), number(0.1, 3600.0)),
    "replicas.uid_base": (("replica_uid_base",), integer(1000, 2**31 - 2**20)),
    "replicas.uid_count": (("replica_uid_count",), integer(2, 2**20)),
    "replicas.shutdown_drain_s": (("shutdown_drain_s",), number(0.0, 3600.0)),
    "sandbox.cgroup_name": (("cgroup_name",), _cgroup_name),
    "executions.output_bytes": (("executions_output_bytes",), integer(0, 16 << 20)),
    "executions.buffer": (("executions_buffer",), integer(100, 10_000_000)),
    "executions.buffer_bytes": (("executions_buffer_bytes",), integer(1 << 20, 64 * GIB)),
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
    if c.replica_ping_timeout_s <= c.replica_ping_interval_s:
        raise fail(
            "replicas.ping_timeout_s",
            c.replica_ping_timeout_s,
            f"more than replicas.ping_interval_s ({c.replica_ping_interval_s:g})",
        )


PROFILE_KEYS = {
    "name": "a name like 2vcpu-4gb: ^[a-z0-9][a-z0-9.-]{0,39}$",
    "label": "a string",
    "nominal_vcpus": "a number above 0",
    "nominal_memory_gib": "a number above 0",
    "vcpus": "a number above 0, at most nominal_vcpus",
    "memory_gib": "a number above 0, at most nominal_memory_gib",
    "credits_per_hour": "a number, 0 or more",
    "default": "true or false (exactly one profile is the default)",
}


def _number(key: str, value: object, lo_exclusive: int = 1) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or (value <= 0 if lo_exclusive else value < 0):  # type: ignore[operator]
        raise fail(key, value, "a number above 0" if lo_exclusive else "a number, 0 or more")
    return float(value)  # type: ignore[arg-type]


def _one_profile(i: int, raw: object) -> Profile:
    where = f"profiles[{i}]"
    if not isinstance(raw, dict):
        raise fail(where, raw, "a table with keys " + ", ".join(PROFILE_KEYS))
    unknown = set(raw) - set(PROFILE_KEYS)
    if unknown:
        raise fail(f"{where}.{sorted(unknown)[0]}", "...", "keys " + ", ".join(PROFILE_KEYS))
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,39}", name):
        raise fail(f"{where}.name", name, PROFILE_KEYS["name"])
    nv = _number(f"{where}.nominal_vcpus", raw.get("nominal_vcpus"))
    ngib = _number(f"{where}.nominal_memory_gib", raw.get("nominal_memory_gib"))
    v = _number(f"{where}.vcpus", raw.get("vcpus"))
    gib = _number(f"{where}.memory_gib", raw.get("memory_gib"))
    if v > nv:
        raise fail(f"{where}.vcpus", v, f"at most nominal_vcpus ({nv})")
    if gib > ngib:
        raise fail(f"{where}.memory_gib", gib, f"at most nominal_memory_gib ({ngib})")
    default = raw.get("default", False)
    label = raw.get("label", f"{nv:g} vCPU, {ngib:g} GB memory")
    if not isinstance(default, bool) or not isinstance(label, str):
        raise fail(f"{where}.default/label", (default, label), "a boolean and a string")
    return Profile(
        name=name,
        label=label,
        nominal_vcpus=nv,
        nominal_memory_bytes=int(ngib * GIB),
        vcpus=v,
        memory_bytes=int(gib * GIB),
        credits_per_hour=_number(
            f"{where}.credits_per_hour", raw.get("credits_per_hour", 0), False
        ),
        default=default,
    )


def parse_profiles(raw: object) -> tuple[Profile, ...]:
    """The `[[profiles]]` array of tables: replaces the whole built-in table."""
    if not isinstance(raw, list) or not raw:
        raise fail("profiles", raw, "a non-empty array of tables ([[profiles]])")
    profiles = tuple(_one_profile(i, p) for i, p in enumerate(raw))
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise fail("profiles", names, "names that are all different")
    if sum(p.default for p in profiles) != 1:
        raise fail("profiles.default", [p.default for p in profiles], "exactly one true")
    return profiles


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


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_PROFILES",
    "KEYS",
    "Config",
    "Profile",
    "config_from_mapping",
    "load_config",
    "parse_listen",
]
