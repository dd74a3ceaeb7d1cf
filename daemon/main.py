"""The scriptd process: `scriptd [--config FILE] [--state-dir DIR] [--admin-socket PATH]
[--listen HOST:PORT] [--dev-no-sandbox]`.

Start-up, in order: read the config (a bad one stops here with the key, the
value and what is allowed), check the host can sandbox (root, namespaces,
cgroups) unless the loudly logged development flag says not to, lock the state
dir (one daemon per state dir), open the store, discover the runtimes,
create the daemon's cgroup root (sandbox.CgroupRoot: leftovers of a previous run
are killed), start autoscaling, metering, the email outbox and retention
(daemon/account/services.py), reconcile what a crash left behind (Deployed scripts
get their replicas started again, or their failure recorded), then serve the admin
socket, the gateway and the metrics (`metrics.listen`), and only then tell systemd
READY=1.
SIGTERM or SIGINT (handled from the first step on: one that comes while starting
takes effect once started): stop serving, cancel deploys (recorded as "interrupted"),
stop the replicas (running calls get `replicas.shutdown_drain_s`), unmount the
workspaces, remove the cgroup root, write the last execution records, close the
store, remove the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import signal
import sys
from pathlib import Path
from typing import IO

from aiohttp import web

import sandbox
from daemon.account.async_loop import AsyncLoop
from daemon.account.metrics_wiring import metric_readings, serve_metrics
from daemon.account.services import AccountServices
from daemon.admin.app import make_app, serve_unix
from daemon.admin.console_routes import LinkIssuer
from daemon.build.builder import Builder
from daemon.build.catalogue import Catalogue, discover_runtimes
from daemon.config.daemon_config import Config
from daemon.config.loader import load_config, parse_listen
from daemon.console.app import ConsoleLinks, make_console, serve_console
from daemon.console.signin import SignIn
from daemon.core import compiled
from daemon.core.errors import ConfigError
from daemon.core.journal_log import log_to_journal
from daemon.core.memory import freeze_startup_heap, return_large_blocks
from daemon.core.sdnotify import notify
from daemon.core.teardown import Teardown
from daemon.egress.callback import CallbackSender
from daemon.egress.gate import ReplicaEgress, make_gate
from daemon.gateway.app import Gateway, make_gateway
from daemon.gateway.async_intake import AsyncIntake
from daemon.gateway.async_routes import AsyncRoutes
from daemon.gateway.front_serve import serve_front
from daemon.gateway.recorder import ExecutionRecorder
from daemon.gateway.serving_table import Routes, ServingRunner
from daemon.gateway.step_route import StepRoute
from daemon.gateway.tryout import Tryout
from daemon.gateway.uploads_route import Uploads
from daemon.lifecycle.actions import Lifecycle
from daemon.lifecycle.context import Context
from daemon.lifecycle.restore import run_restore
from daemon.serving.egress_gate import EgressGate
from daemon.serving.replica_logs import LogWriter
from daemon.serving.replica_runner import FailureHook, ReplicaRunner
from daemon.serving.runner_setup import log_writer, runner_settings
from daemon.serving.workspace_image import unmount_all
from daemon.store import uploads_folder
from daemon.store.database import Store
from daemon.store.state_dir import StateDir, StateDirBusy

log = logging.getLogger("scriptd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scriptd", description="Run the scriptd daemon.")
    p.add_argument("--config", type=Path, help="TOML config (default /etc/scriptd/scriptd.toml)")
    p.add_argument("--state-dir", type=Path, help="override state_dir")
    p.add_argument("--admin-socket", type=Path, help="override admin.socket")
    p.add_argument("--listen", help="override gateway.listen (HOST:PORT)")
    p.add_argument(
        "--dev-no-sandbox",
        action="store_true",
        help="development only: start without root, namespaces or cgroups",
    )
    p.add_argument(
        "--restore",
        type=Path,
        metavar="FILE",
        help="restore a backup (scriptctl backup) into the state dir, then exit; the "
        "daemon must be stopped",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --restore: replace the data a state dir holds already",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    host, port = parse_listen(args.listen) if args.listen else (None, None)
    return config.with_overrides(
        state_dir=args.state_dir and args.state_dir.resolve(),
        admin_socket=args.admin_socket and args.admin_socket.resolve(),
        listen_host=host,
        listen_port=port,
    )


def sandbox_problems() -> list[str]:
    """What this host lacks to run sandboxes (empty: all there)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root")
    for ns in ("mnt", "pid", "net", "ipc", "uts"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            problems.append(f"no {ns} namespace support (/proc/self/ns/{ns})")
    if not os.path.exists("/sys/fs/cgroup") or not os.listdir("/sys/fs/cgroup"):
        problems.append("no cgroup file system at /sys/fs/cgroup")
    return problems


def lock_state_dir(state: StateDir) -> IO[str]:
    try:
        return state.lock()
    except StateDirBusy as exc:
        raise SystemExit(f"scriptd: {exc}") from None


def prepare_uploads_dir(path: Path) -> None:
    """The account's files: readable by every script's uid (read-only bind in replicas)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    uploads_folder.sweep_temporaries(path)


async def make_runner(
    config: Config,
    catalogue: Catalogue,
    sandboxed: bool,
    on_failing: FailureHook,
    logs: LogWriter,
    egress: EgressGate | None = None,
) -> tuple[ServingRunner, sandbox.CgroupRoot | None]:
    settings = runner_settings(config, catalogue, egress)
    if not sandboxed:
        return ReplicaRunner.without_sandbox(settings, on_failing, logs), None
    root = await asyncio.to_thread(
        sandbox.CgroupRoot.create, config.cgroup_root_name, exclusive=True
    )
    await asyncio.to_thread(sandbox.prepare)  # the first replica need not boot the zygote
    return ReplicaRunner(settings, root, on_failing=on_failing, logs=logs), root


async def serve(
    config: Config, runner: ServingRunner | None = None, sandboxed: bool = True
) -> None:
    teardown = Teardown()
    try:
        await _serve(config, runner, sandboxed, teardown)
    finally:
        log.info("shutting down")
        notify("STOPPING=1")
        failures = await teardown.run()
    if failures:
        names = ", ".join(name for name, _ in failures)
        raise RuntimeError(f"shutdown: {len(failures)} step(s) failed: {names}")
    log.info("stopped")


# Shutdown order (Teardown ranks): stop taking admin requests, cancel deploys,
# drain and stop replicas (running calls answer through the still-open gateway),
# write their last output, charge their last seconds, close the gateway, unmount the
# workspaces, remove cgroups, write the last execution records, then close the store
# and release the state dir.
SWEEPER, ADMIN, ASYNC, DEPLOYS, REPLICAS, EGRESS, LOGS = 10, 20, 25, 30, 40, 45, 47
ACCOUNT, GATEWAY = 50, 60
WORKSPACES, CGROUPS, RECORDS, KEYS, STORE, SOCKET, LOCK = 65, 70, 80, 90, 100, 110, 120


async def _serve(
    config: Config, runner: ServingRunner | None, sandboxed: bool, teardown: Teardown
) -> None:
    stop = _stop_on_signals()
    state = StateDir(config.state_dir)
    await asyncio.to_thread(state.prepare)
    lock = await asyncio.to_thread(lock_state_dir, state)
    teardown.add(LOCK, "state dir lock", lock.close)
    await asyncio.to_thread(prepare_uploads_dir, config.uploads_dir)
    store = await asyncio.to_thread(Store, state.db)
    teardown.add(STORE, "store", lambda: asyncio.to_thread(store.close))
    catalogue = await asyncio.to_thread(discover_runtimes, config)
    for r in catalogue.runtimes:
        log.info("runtime %s %s at %s%s", r.language, r.version, r.path, " (default)" * r.default)
    lc: Lifecycle | None = None

    def failing(script: str, reason: str) -> object:
        return lc.replicas_failing(script, reason) if lc is not None else None

    logs = log_writer(config)
    teardown.add(LOGS, "replica logs", lambda: asyncio.to_thread(logs.close))
    egress: ReplicaEgress | None = None
    root: sandbox.CgroupRoot | None = None
    if runner is None:
        if sandboxed:  # without a sandbox a replica shares the host's network anyway
            loop = asyncio.get_running_loop()
            egress, proxy = await asyncio.to_thread(make_gate, config, loop)
            teardown.add(EGRESS, "egress proxy", proxy.close)
        runner, root = await make_runner(config, catalogue, sandboxed, failing, logs, egress)
        if root is not None:
            teardown.add(CGROUPS, "cgroups", lambda: asyncio.to_thread(root.cleanup))
    teardown.add(WORKSPACES, "workspaces", lambda: asyncio.to_thread(unmount_all, state.scripts))
    ctx = Context(config, store, state, catalogue, Builder(config, root), runner)
    ctx.egress_counters = egress.counters if egress is not None else None
    teardown.add(KEYS, "key checker", ctx.keys.close)
    recorder = ExecutionRecorder(
        store,
        ctx.keys,
        max_buffer=config.executions_buffer,
        max_buffer_bytes=config.executions_buffer_bytes,
        output_bytes=config.executions_output_bytes,
        inputs_bytes=config.executions_inputs_bytes,
        outputs_bytes=config.executions_outputs_bytes,
    )
    recorder.start()
    ctx.flush_records = recorder.flush
    teardown.add(RECORDS, "execution records", recorder.close)
    routes = Routes(runner, ctx.keys)
    # Autoscaling, credits and emails around the runner, and the lifecycle's hooks.
    replicas = runner if isinstance(runner, ReplicaRunner) else None
    account = AccountServices(config, store, routes, replicas)
    ctx.runner, ctx.hooks = account.runner, account
    teardown.add(ACCOUNT, "credits and mail", account.close)
    teardown.add(REPLICAS, "replicas", ctx.runner.close)
    lc = Lifecycle(ctx)
    teardown.add(DEPLOYS, "deploys", lc.shutdown)
    await account.start(lc.undeploy)
    await lc.reconcile()
    sweeper = asyncio.create_task(lc.housekeeping(), name="housekeeping")
    teardown.add(SWEEPER, "housekeeping", sweeper.cancel)
    http_logs = egress.take_log if egress is not None else None
    closer = egress.close_connections if egress is not None else None
    gw = Gateway(routes, ctx.keys, store, recorder, config.max_body_bytes,
                 config.trusted_proxies, http_logs, closer)  # fmt: skip
    steps = StepRoute(gw)
    tryout = Tryout(gw, steps)
    links = await _serve_console(config, lc, tryout, teardown) if config.console_enabled else None
    admin = await serve_unix(
        make_app(lc, config, catalogue, logs, tryout, links),
        config.admin_socket,
        config.admin_socket_mode,
        config.admin_socket_group,
    )
    teardown.add(ADMIN, "admin API", admin.cleanup)
    teardown.add(SOCKET, "admin socket", lambda: config.admin_socket.unlink(missing_ok=True))
    uploads = Uploads(
        gw, config.uploads_dir, config.max_upload_file_bytes, config.max_upload_total_bytes
    )
    intake = AsyncIntake(gw, config)
    app = make_gateway(gw, uploads, steps, AsyncRoutes(gw, steps, intake))
    gateway = web.AppRunner(app, access_log=None, handle_signals=False)
    await gateway.setup()
    front = serve_front(gw, gateway, config, intake)
    teardown.add(GATEWAY, "gateway", front.close)  # first: no new request reaches either
    teardown.add(GATEWAY, "gateway's other routes", gateway.cleanup)
    await front.start(config.listen_host, config.listen_port)
    # Gauges read at each scrape; the async calls' queue adds `readings.async_queue`.
    readings = metric_readings(store, replicas, recorder)
    metrics = await serve_metrics(config, readings)
    if metrics is not None:
        teardown.add(GATEWAY, "metrics", metrics.close)
    async_calls = AsyncLoop(config, gw, intake, CallbackSender(config))
    readings.async_queue = async_calls.queue_reading
    await async_calls.start()
    teardown.add(ASYNC, "async calls", async_calls.close)  # before the replicas drain
    log.info("admin API on %s, gateway on %s:%d", config.admin_socket, config.listen_host,
             config.listen_port)  # fmt: skip
    log.info("start-up heap frozen: %d objects", freeze_startup_heap())  # core/memory.py
    notify("READY=1")
    await stop.wait()


async def _serve_console(
    config: Config, lc: Lifecycle, tryout: Tryout, teardown: Teardown
) -> LinkIssuer:
    """The web console on its own listener; the admin API issues its sign-in links."""
    signin = SignIn(config.console_link_ttl_s)
    console = await serve_console(make_console(lc, signin, tryout), config)
    teardown.add(ADMIN, "web console", console.cleanup)
    log.info("web console on %s:%d", config.console_host, config.console_port)
    return ConsoleLinks(signin, config).link


def _stop_on_signals() -> asyncio.Event:
    """Set on SIGTERM or SIGINT. Installed first thing: a signal that comes while the
    daemon starts (or just after READY) stops it cleanly once it has started."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = build_config(args)
    except (ConfigError, ValueError) as exc:
        print(f"scriptd: {exc}", file=sys.stderr)
        return 2
    if args.restore:
        return run_restore(config, args.restore, args.force)
    log_to_journal(config.log_journal, args.log_level)
    if args.force:
        print("scriptd: --force goes with --restore only", file=sys.stderr)
        return 2
    return_large_blocks()  # argon2's 19 MiB per hash must not stay in every thread's arena
    if args.dev_no_sandbox and os.geteuid() == 0:
        # Without a sandbox a script runs as the daemon's user: as root, that is root.
        print(
            "scriptd: --dev-no-sandbox is refused as root: scripts would run as root with "
            "no isolation. Start it as an ordinary user, or without the flag.",
            file=sys.stderr,
        )
        return 1
    problems = sandbox_problems()
    if problems and not args.dev_no_sandbox:
        print(
            "scriptd: this host cannot run sandboxes: " + "; ".join(problems) + ". "
            "Run as root on a Linux host with namespaces and cgroups, or pass "
            "--dev-no-sandbox for development.",
            file=sys.stderr,
        )
        return 1
    if args.dev_no_sandbox:
        log.warning("!" * 72)
        log.warning("DEVELOPMENT MODE (--dev-no-sandbox): scripts are NOT isolated")
        log.warning("!" * 72)
    # (which interpreter runs the daemon matters to its CPU per call: README, systemd)
    log.info("config: %s; state dir %s; on Python %s at %s; egress relay %s", config.source,
             config.state_dir, platform.python_version(), sys.executable,
             compiled.status())  # fmt: skip
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(config, sandboxed=not args.dev_no_sandbox))
    except (OSError, RuntimeError, sandbox.SandboxError) as exc:
        print(f"scriptd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
