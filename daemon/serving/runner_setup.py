"""The replica runner's settings and its log writer, made from the daemon's Config."""

from __future__ import annotations

from daemon.build.catalogue import Catalogue
from daemon.config.daemon_config import Config
from daemon.serving.dispatcher import DispatchSettings
from daemon.serving.egress_gate import EgressGate
from daemon.serving.launcher import LaunchSettings
from daemon.serving.pool import PoolSettings
from daemon.serving.replica_logs import LogLimits, LogWriter
from daemon.serving.replica_runner import RunnerSettings
from daemon.store.state_dir import StateDir


def runner_settings(
    config: Config, catalogue: Catalogue, egress: EgressGate | None = None
) -> RunnerSettings:
    python = catalogue.pick("python", None)  # runs the supervisor of Node scripts
    return RunnerSettings(
        launch=LaunchSettings(
            supervisor_python=python.path if python is not None else None,
            uploads_dir=config.uploads_dir,
            uid_base=config.replica_uid_base,
            uid_count=config.replica_uid_count,
            egress=egress,
        ),
        pool=PoolSettings(
            start_timeout_s=config.replica_start_timeout_s,
            max_start_failures=config.replica_max_start_failures,
            spare_sandbox=config.replica_spare_sandbox,
            ping_interval_s=config.replica_ping_interval_s,
            ping_timeout_s=config.replica_ping_timeout_s,
        ),
        dispatch=DispatchSettings(
            max_queue=config.queue_max,
            max_wait_s=config.queue_max_wait_s,
            cancel_grace_s=config.cancel_grace_s,
        ),
        shutdown_drain_s=config.shutdown_drain_s,
    )


def log_writer(config: Config) -> LogWriter:
    """The replicas' output: <state_dir>/logs/<script id>/<replica>.log, rotated."""
    limits = LogLimits(
        file_bytes=config.log_file_bytes,
        files=config.log_files,
        replicas_kept=config.log_replicas_kept,
        rate_bytes_per_s=config.log_rate_bytes_per_s,
    )
    return LogWriter(StateDir(config.state_dir).root / "logs", limits)
