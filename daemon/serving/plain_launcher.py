"""Development only (`scriptd --dev-no-sandbox`, protocol tests): a replica's supervisor
as a plain process group on the host, with no isolation at all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.serving.launcher import (
    RUNTIMES_DIR,
    LaunchSettings,
    SupervisorCommand,
    concurrency_of,
    output_pump,
    workers_for,
)
from daemon.serving.replica_logs import LogWriter
from daemon.serving.replica_output import OutputPump
from daemon.serving.target import RunTarget


@dataclass(frozen=True)
class PlainExit:
    code: int | None
    signal: int | None
    oom: bool
    killed: bool
    reason: str


@dataclass(frozen=True)
class PlainUsage:
    cpu_seconds: float = 0.0
    memory_bytes: int = 0
    memory_peak_bytes: int = 0
    oom_kills: int = 0


class PlainProcess:
    """A supervisor in its own process group, without any isolation."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._pidfd = os.pidfd_open(popen.pid)
        self._killed = False

    async def wait(self) -> PlainExit:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self._pidfd, _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(self._pidfd)
        status = self.popen.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # workers die with their supervisor
        code, sig = (None, -status) if status < 0 else (status, None)
        reason = f"killed by signal {sig}" if sig else f"exit code {code}"
        if self._killed:
            reason = "killed on request"
        return PlainExit(code, sig, False, self._killed, reason)

    def kill(self) -> None:
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def usage(self) -> PlainUsage:
        return PlainUsage()

    def track_memory(self, name: str, ns_pid: int) -> None:
        return None  # no cgroup of its own: a call's peak memory is not measured

    def expect_moves(self, count: int, seconds: float) -> None:
        return None  # nothing is moved

    def move_is_quick(self) -> bool:
        return True  # track_memory does nothing

    def cleanup(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class PlainLauncher:
    """Development only: the supervisor as a plain child process group, no sandbox."""

    def __init__(
        self,
        language: str,
        python: str,
        source_dir: Path,
        *,
        workers: int = 1,
        node: str | None = None,
        env: Mapping[str, str] | None = None,
        label: str = "plain",
        runtimes_dir: Path = RUNTIMES_DIR,
    ) -> None:
        self.language = language
        self.python = python
        self.source_dir = source_dir
        self.workers = workers
        self.concurrency = 1  # calls in flight per worker
        self.node = node
        self.extra_env = dict(env or {})
        self.label = label
        self.runtimes_dir = runtimes_dir
        self.memory_bytes: int | None = None
        self.step_spec: str | None = None  # a code step's --step-spec (None: functions)
        self.logs: LogWriter | None = None  # where output goes (None: the daemon's stderr)
        self.script_id = 0

    @classmethod
    def for_target(
        cls, target: RunTarget, settings: LaunchSettings, logs: LogWriter | None = None
    ) -> PlainLauncher:
        """A built version run without a sandbox (scriptd --dev-no-sandbox only)."""
        python = str(target.env_dir / "bin" / "python")
        node = None
        if target.language == "javascript":
            python, node = settings.supervisor_python or sys.executable, target.runtime_path
        target.workspace_dir.mkdir(parents=True, exist_ok=True)
        uploads = str(settings.uploads_dir or "/nonexistent")
        env = {**target.env, "WORKSPACE_DIR": str(target.workspace_dir), "UPLOADS_DIR": uploads}
        launcher = cls(
            target.language,
            python,
            target.source_dir,
            workers=workers_for(target.profile.vcpus, target.workers_per_replica),
            node=node,
            env=env,
            label=f"{target.script} v{target.version}",
            runtimes_dir=settings.runtimes_dir,
        )
        launcher.memory_bytes = target.profile.memory_bytes
        launcher.step_spec = target.step_spec
        launcher.concurrency = concurrency_of(target)
        launcher.logs, launcher.script_id = logs, target.script_id
        return launcher

    def output(self, name: str) -> OutputPump:
        return output_pump(self.logs, self.script_id, name, self.label)

    def launch(self, name: str, control_fd: int, output_fd: int) -> PlainProcess:
        rt = str(self.runtimes_dir)
        command = SupervisorCommand(
            self.language,
            self.workers,
            str(self.source_dir),
            rt,
            self.node,
            self.step_spec,
            self.concurrency,
        )
        argv = command.argv(self.python, "--control-fd", str(control_fd))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.extra_env}
        popen = subprocess.Popen(
            argv,
            pass_fds=(control_fd,),
            env=env,
            cwd=self.source_dir,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=output_fd,
            stderr=output_fd,
        )
        return PlainProcess(popen)
