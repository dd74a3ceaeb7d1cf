"""The scriptd process: `scriptd [--config FILE] [--state-dir DIR] [--admin-socket PATH]
[--listen HOST:PORT] [--dev-no-sandbox]`.

Start-up, in order: read the config (a bad one stops here with the key, the
value and what is allowed), check the host can sandbox (root, namespaces,
cgroups) unless the loudly logged development flag says not to, lock the state
dir (one daemon per state dir), open the store, discover the runtimes,
reconcile what a crash left behind, then serve the admin socket and the
gateway. SIGTERM or SIGINT: stop serving, cancel deploys (recorded as
"interrupted"), stop the runner, close the store, remove the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO

from aiohttp import web

from daemon.admin_api import make_app, serve_unix
from daemon.builder import Builder
from daemon.catalogue import discover_runtimes
from daemon.config import Config, load_config, parse_listen
from daemon.deployer import Context
from daemon.errors import ConfigError
from daemon.files import StateDir
from daemon.gateway import make_gateway
from daemon.lifecycle import Lifecycle
from daemon.runner import NoReplicas, Runner
from daemon.store import Store

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
    lock = open(state.root / "scriptd.lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"scriptd: another scriptd uses the state dir {state.root}") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


async def serve(config: Config, runner: Runner | None = None) -> None:
    state = StateDir(config.state_dir)
    await asyncio.to_thread(state.prepare)
    lock = await asyncio.to_thread(lock_state_dir, state)
    store = await asyncio.to_thread(Store, state.db)
    catalogue = await asyncio.to_thread(discover_runtimes, config)
    for r in catalogue.runtimes:
        log.info("runtime %s %s at %s%s", r.language, r.version, r.path, " (default)" * r.default)
    ctx = Context(config, store, state, catalogue, Builder(config), runner or NoReplicas())
    lc = Lifecycle(ctx)
    await lc.reconcile()
    sweeper = asyncio.create_task(lc.housekeeping(), name="housekeeping")
    admin = await serve_unix(
        make_app(lc, config, catalogue),
        config.admin_socket,
        config.admin_socket_mode,
        config.admin_socket_group,
    )
    gateway = web.AppRunner(make_gateway(lc), access_log=None, handle_signals=False)
    await gateway.setup()
    try:
        await web.TCPSite(gateway, config.listen_host, config.listen_port).start()
        log.info("admin API on %s, gateway on %s:%d", config.admin_socket, config.listen_host,
                 config.listen_port)  # fmt: skip
        await _until_signal()
    finally:
        log.info("shutting down")
        sweeper.cancel()
        await admin.cleanup()
        await gateway.cleanup()
        await lc.shutdown()
        await ctx.runner.close()
        await asyncio.to_thread(store.close)
        config.admin_socket.unlink(missing_ok=True)
        lock.close()
    log.info("stopped")


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


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
    log.info("config: %s; state dir %s", config.source, config.state_dir)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(config))
    except (OSError, RuntimeError) as exc:
        print(f"scriptd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
