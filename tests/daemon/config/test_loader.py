"""Config: every key optional, bad values refused naming key, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config.daemon_config import Config
from daemon.config.loader import config_from_mapping, load_config
from daemon.config.profiles import DEFAULT_PROFILES
from daemon.core.errors import ConfigError
from tests.helpers import REPO


def test_empty_config_is_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    config = load_config(path)
    assert config.state_dir == Path("/var/lib/scriptd")
    assert config.admin_socket == Path("/run/scriptd/admin.sock")
    assert config.admin_socket_mode == 0o660
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8080)
    assert config.max_archive_bytes == 1 << 30
    assert (config.timeout_min_s, config.timeout_max_s) == (30, 600)
    assert config.profiles == DEFAULT_PROFILES and config.default_profile.name == "1vcpu-2gb"
    limits = config.archive_limits()
    assert limits.max_archive_bytes == 1 << 30 and limits.max_entries == 10_000


def test_every_key_can_be_set() -> None:
    config = config_from_mapping(
        {
            "state_dir": "/srv/s",
            "admin": {"socket": "/tmp/a.sock", "mode": "0600", "group": "adm"},
            "gateway": {"listen": "0.0.0.0:9000"},
            "archive": {"max_bytes": 5000, "max_entries": 10, "max_unpacked_bytes": 9000,
                        "max_file_bytes": 4000, "upload_ttl_s": 120},
            "build": {"timeout_s": 5, "parallel": 1, "cache_dir": "/c", "uv": "/bin/uv",
                      "allow_source_builds": True, "npm_ignore_scripts": False,
                      "cache_max_bytes": 1 << 30},
            "settings": {"timeout_min_s": 1, "timeout_max_s": 5, "timeout_default_s": 2},
            "runtimes": {"discover": False, "python": ["/usr/bin/python3.11"], "node": []},
            "profiles": [{"name": "tiny", "nominal_vcpus": 1, "nominal_memory_gib": 1,
                          "vcpus": 0.5, "memory_gib": 0.5, "credits_per_hour": 0.01,
                          "default": True, "workspace_bytes": 64 << 20}],
        }
    )  # fmt: skip
    assert config.admin_socket_mode == 0o600 and config.admin_socket_group == "adm"
    assert config.listen_port == 9000 and config.build_timeout_s == 5
    assert config.cache_dir == Path("/c") and config.timeout_default_s == 2
    assert config.archive_limits().max_entries == 10
    assert [p.name for p in config.profiles] == ["tiny"]
    assert config.profiles[0].memory_bytes == 1 << 29
    assert config.profiles[0].workspace_bytes == 64 << 20
    assert config.profiles[0].to_json()["workspace_bytes"] == 64 << 20
    assert config.build_cache_max_bytes == 1 << 30


def test_the_spare_sandbox_can_be_turned_off() -> None:
    assert config_from_mapping({}).replica_spare_sandbox is True
    off = config_from_mapping({"replicas": {"spare_sandbox": False}})
    assert off.replica_spare_sandbox is False
    with pytest.raises(ConfigError, match=r"replicas\.spare_sandbox"):
        config_from_mapping({"replicas": {"spare_sandbox": 1}})


def test_a_profile_without_workspace_bytes_gets_one_gib() -> None:
    assert all(p.workspace_bytes == 1 << 30 for p in Config().profiles)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"stat_dir": "/x"}, ["unknown config key 'stat_dir'", "state_dir"]),
        ({"state_dir": "relative"}, ["state_dir", "'relative'", "absolute path"]),
        ({"admin": {"mode": "rw"}}, ["admin.mode", "'rw'", "octal"]),
        ({"gateway": {"listen": "localhost"}}, ["gateway.listen", "HOST:PORT"]),
        ({"archive": {"max_entries": 0}}, ["archive.max_entries", "= 0", "from 1"]),
        ({"build": {"timeout_s": "10"}}, ["build.timeout_s", "'10'", "integer"]),
        ({"settings": {"timeout_min_s": 50, "timeout_max_s": 40}}, ["timeout_min_s", "at most"]),
        ({"settings": {"timeout_default_s": 700}}, ["timeout_default_s", "between"]),
        ({"runtimes": {"discover": "yes"}}, ["runtimes.discover", "true or false"]),
        ({"gateway": {"trusted_proxies": "10.0.0.1"}}, ["gateway.trusted_proxies", "a list"]),
        ({"gateway": {"trusted_proxies": ["10.0.0.1", "10.0.0.0/33"]}},
         ["gateway.trusted_proxies[1]", "'10.0.0.0/33'", "CIDR"]),
        ({"gateway": {"trusted_proxies": ["10.0.0.1/8"]}}, ["trusted_proxies[0]", "host bits"]),
        ({"gateway": {"trusted_proxies": [3]}}, ["trusted_proxies[0]", "= 3", "string"]),
        ({"uploads": {"max_total_bytes": 0}}, ["uploads.max_total_bytes", "= 0", "from 1"]),
        ({"egress": {"default_policy": "open"}}, ["egress.default_policy", "off, public"]),
        ({"egress": {"ports": []}}, ["egress.ports", "non-empty list"]),
        ({"egress": {"ports": [80, 70000]}}, ["egress.ports[1]", "= 70000", "1 to 65535"]),
        ({"egress": {"allowed_networks": ["0.0.0.0/0"]}}, ["allowed_networks", "never all"]),
        ({"egress": {"allowed_networks": ["10.0.0.0/33"]}}, ["allowed_networks[0]", "CIDR"]),
        ({"egress": {"max_connections_per_replica": 0}}, ["max_connections_per_replica"]),
        ({"egress": {"upstream_ca_file": "ca.pem"}}, ["upstream_ca_file", "absolute path"]),
        ({"profiles": []}, ["profiles", "non-empty"]),
        ({"profiles": [{"name": "a", "nominal_vcpus": 1, "nominal_memory_gib": 1, "vcpus": 1,
                        "memory_gib": 1, "default": True, "workspace_bytes": 1024}]},
         ["profiles[0].workspace_bytes", "= 1024", "from 16777216"]),
        ({"build": {"cache_max_bytes": True}}, ["build.cache_max_bytes", "integer"]),
        ({"steps": {"base_packages": "numpy"}}, ["steps.base_packages", "a list"]),
        ({"steps": {"base_packages": ["numpy", "x @ https://e.test/x.whl"]}},
         ["steps.base_packages[1]", "not a URL"]),
        ({"steps": {"base_packages": ["--index-url=x"]}}, ["base_packages[0]", "option"]),
        ({"steps": {"base_packages": ["num py"]}}, ["base_packages[0]", "PEP 508"]),
        ({"steps": {"memory_mib": 0}}, ["steps.memory_mib", "from 16"]),
        ({"executions": {"inputs_bytes": -1}}, ["executions.inputs_bytes", "from 0"]),
        ({"dispatch": {"cancel_grace_s": 0}}, ["cancel_grace_s", "= 0", "from 0.1 to 600"]),
        ({"dispatch": {"cancel_grace_s": "2s"}}, ["dispatch.cancel_grace_s", "'2s'", "a number"]),
        ({"dispatch": {"cancel_grace_s": 601}}, ["dispatch.cancel_grace_s", "= 601"]),
        ({"profiles": [{"name": "a", "nominal_vcpus": 1, "nominal_memory_gib": 1, "vcpus": 2,
                        "memory_gib": 1, "default": True}]}, ["profiles[0].vcpus", "at most"]),
    ],
)  # fmt: skip
def test_bad_values_are_refused_with_key_value_and_rule(doc: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(doc)
    for word in words:
        assert word in str(exc.value)


def test_trusted_proxies_and_uploads_total() -> None:
    assert Config().trusted_proxies == () and Config().max_upload_total_bytes == 10 << 30
    config = config_from_mapping(
        {"gateway": {"trusted_proxies": ["10.0.0.1", "fd00::/8"]},
         "uploads": {"max_total_bytes": 5000}}
    )  # fmt: skip
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.1/32", "fd00::/8"]
    assert config.max_upload_total_bytes == 5000


def test_egress_keys() -> None:
    default = Config()
    assert default.egress_default_policy == "public" and default.egress_ports == (80, 443)
    assert default.egress_allowed_networks == () and default.egress_upstream_ca_file is None
    config = config_from_mapping(
        {"egress": {"default_policy": "off", "ports": [443, 8443, 443],
                    "allowed_networks": ["127.0.0.0/8", "10.20.0.0/16"],
                    "max_connections_per_replica": 8, "upstream_ca_file": "/etc/ca.pem"}}
    )  # fmt: skip
    assert config.egress_default_policy == "off" and config.egress_ports == (443, 8443)
    assert [str(n) for n in config.egress_allowed_networks] == ["127.0.0.0/8", "10.20.0.0/16"]
    assert config.egress_max_connections_per_replica == 8
    assert config.egress_upstream_ca_file == Path("/etc/ca.pem")


def test_async_keys() -> None:
    default = Config()
    assert default.async_max_worker_share == 0.5 and default.async_max_concurrency == 16
    assert default.async_idempotency_window_s == 86400
    config = config_from_mapping(
        {"async": {"max_worker_share": 0.25, "max_concurrency": 0, "retry_backoff_s": 1,
                   "idempotency_window_s": 3600, "poll_s": 0.5, "callback_attempts": 3,
                   "callback_backoff_s": 2, "callback_timeout_s": 5}}
    )  # fmt: skip
    assert config.async_max_worker_share == 0.25 and config.async_max_concurrency == 0
    assert config.async_retry_backoff_s == 1.0 and config.async_callback_attempts == 3
    for bad in ({"max_worker_share": 0}, {"max_worker_share": 1.5}, {"callback_attempts": 0}):
        with pytest.raises(ConfigError, match=r"async\."):
            config_from_mapping({"async": bad})


def test_daemon_refuses_a_bad_config_at_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[build]\ntimeout_s = -1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.main", "--config", str(path), "--dev-no-sandbox",
         "--state-dir", str(tmp_path / "s")],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "build.timeout_s = -1" in proc.stderr and "integer from 1" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("state_dir = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_overrides_keep_other_keys() -> None:
    config = Config().with_overrides(state_dir=Path("/a"), listen_port=None)
    assert config.state_dir == Path("/a") and config.listen_port == 8080


def test_refuses_to_start_without_root_unless_dev_flag(tmp_path: Path) -> None:
    from tests.conftest import require_root

    require_root()  # to drop to nobody
    tmp_path.chmod(0o777)
    base = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
            "-m", "daemon.main", "--state-dir", str(tmp_path / "s"),
            "--admin-socket", str(tmp_path / "a.sock"), "--listen", "127.0.0.1:1"]  # fmt: skip
    proc = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "not running as root" in proc.stderr and "--dev-no-sandbox" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_build_user_must_not_be_a_replica_uid() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"build": {"uid": 200_005}})
    assert "build.uid" in str(exc.value) and "replicas' range" in str(exc.value)
    assert config_from_mapping({"build": {"uid": 5000, "gid": 5000}}).build_uid == 5000


def test_metrics_and_retention_keys() -> None:
    default = Config()
    assert (default.metrics_host, default.metrics_port) == ("127.0.0.1", 9464)
    assert default.executions_retention_days == 30
    assert default.executions_max_per_script == 100_000
    config = config_from_mapping(
        {"metrics": {"listen": "0.0.0.0:9100"},
         "executions": {"retention_days": 7, "max_per_script": 50, "prune_interval_s": 60,
                        "prune_batch": 100}}
    )  # fmt: skip
    assert (config.metrics_host, config.metrics_port) == ("0.0.0.0", 9100)
    assert config.executions_retention_days == 7 and config.executions_max_per_script == 50
    assert config.executions_prune_interval_s == 60 and config.executions_prune_batch == 100
    assert config_from_mapping({"metrics": {"listen": ""}}).metrics_host is None
    for bad, words in (
        ({"metrics": {"listen": "9464"}}, ["metrics.listen", "HOST:PORT", '""']),
        ({"metrics": {"listen": 9464}}, ["metrics.listen"]),
        ({"executions": {"retention_days": 0}}, ["executions.retention_days"]),
        ({"executions": {"max_per_script": 0}}, ["executions.max_per_script"]),
    ):
        with pytest.raises(ConfigError) as err:
            config_from_mapping(bad)
        assert all(w in str(err.value) for w in words), err.value


def test_console_section() -> None:
    default = Config()
    assert (default.console_enabled, default.console_host, default.console_port) == (
        True,
        "127.0.0.1",
        8081,
    )
    assert default.console_link_ttl_s == 600
    c = config_from_mapping(
        {"console": {"enabled": False, "listen": "[::1]:9000", "link_ttl_s": 30}}
    )
    assert (c.console_enabled, c.console_host, c.console_port) == (False, "::1", 9000)
    assert c.console_link_ttl_s == 30


def test_console_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError, match=r"console\.tls_cert.*console\.tls_key"):
        config_from_mapping({"console": {"tls_cert": "/etc/scriptd/console.pem"}})
    both = {"tls_cert": "/etc/scriptd/console.pem", "tls_key": "/etc/scriptd/console.key"}
    assert config_from_mapping({"console": both}).console_tls_key == Path(both["tls_key"])


def test_steps_keys_and_the_step_timeout_within_the_allowed_range() -> None:
    config = config_from_mapping(
        {
            "steps": {
                "base_packages": ["numpy>=2", "requests[socks]"],
                "timeout_s": 900,
                "memory_mib": 512,
            },
            "executions": {"inputs_bytes": 10, "outputs_bytes": 20},
        }
    )
    assert config.steps_base_packages == ("numpy>=2", "requests[socks]")
    assert config.steps_memory_mib == 512 and config.step_timeout_s == 600  # timeout_max_s
    assert (config.executions_inputs_bytes, config.executions_outputs_bytes) == (10, 20)
    defaults = Config()
    assert len(defaults.steps_base_packages) == 11 and "numpy" in defaults.steps_base_packages
    assert (defaults.step_timeout_s, defaults.steps_memory_mib) == (30, 1024)
