"""How a replica's process tree is started: in a sandbox (always, in production), or as
a plain process group (development and tests of the protocol only: no isolation).

`SandboxLauncher` turns a built version (`RunTarget`) into the `SandboxSpec` of one
replica: runtimes/supervisor.py on the version's interpreter, the version's source and
environment read-only, the script's workspace read-write, the uploads read-only, the
profile's actual vCPUs and memory, and a uid of the script's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sandbox
from daemon.build.catalogue import install_prefix
from daemon.serving.host_files import (
    open_replica_log,
    prepare_workspace,
)
from daemon.serving.target import RunTarget

__all__ = [
    "APP_DIR",
    "RUNTIMES_DIR",
    "LaunchSettings",
    "PlainExit",
    "PlainLauncher",
    "PlainProcess",
    "SandboxLauncher",
    "workers_for",
]

RUNTIMES_DIR = Path(__file__).resolve().parents[2] / "runtimes"
MiB = 1024 * 1024
# Where things appear inside the sandbox.
APP_DIR = "/app"  # the version's source (cwd)
RUNTIMES_IN = "/opt/scriptd/runtimes"  # supervisor, protocol, harnesses
VENV_IN = "/venv"  # python: the version's venv
NODE_MODULES_IN = "/node_modules"  # javascript: found by walking up from /app
WORKSPACE_IN = "/workspace"
UPLOADS_IN = "/uploads"
_SYSTEM_PREFIXES = ("/usr", "/bin", "/lib", "/lib64", "/sbin")


@dataclass(frozen=True)
class LaunchSettings:
    runtimes_dir: Path = RUNTIMES_DIR
    uploads_dir: Path | None = None  # the account's uploads (UPLOADS_DIR, read-only)
    log_dir: Path | None = None  # supervisor stdout/stderr: <log_dir>/<script id>/<replica>.log
    uid_base: int = 200_000  # script N runs as uid/gid uid_base + N
    uid_count: int = 100_000  # ids above uid_base + uid_count are refused
    host_python: str = field(default_factory=lambda: os.path.realpath(sys.executable))
    tmp_size_bytes: int = 64 * MiB  # /tmp of each replica
    pids_max: int = 256  # processes + threads per replica
    max_output_bytes: int = 1 * MiB  # per call, per stream
    max_frame_bytes: int = 16 * MiB  # largest call or result frame


def workers_for(vcpus: float) -> int:
    """K: one worker per whole vCPU of the profile, at least one."""
    return max(1, int(vcpus))


def install_root(executable: str, language: str) -> str | None:
    """The folder to bind for a host runtime: its install prefix (sys.base_prefix for a
    Python, found by daemon/build/catalogue.py), or None when the sandbox's system binds
    already cover it. Raises UnsafeRuntime for a prefix that would expose the host."""
    prefix = install_prefix(executable, language)
    covered = (*_SYSTEM_PREFIXES, os.path.realpath(sys.base_prefix))  # sandbox binds these
    if any(prefix == p or prefix.startswith(p + "/") for p in covered):
        return None
    return prefix


class SandboxLauncher:
    """Starts replicas of one built version, each in its own sandbox."""

    def __init__(self, target: RunTarget, settings: LaunchSettings, root: sandbox.CgroupRoot):
        self.target = target
        self.settings = settings
        self.root = root
        self.workers = workers_for(target.profile.vcpus)
        self.memory_bytes: int | None = target.profile.memory_bytes
        self.label = f"{target.script} v{target.version}"
        self.uid = settings.uid_base + target.script_id
        if not 0 < target.script_id < settings.uid_count:
            raise ValueError(f"script id {target.script_id} is outside the uid range")

    def launch(self, name: str, control_fd: int) -> sandbox.Sandbox:
        """Blocking: prepare the workspace, start the sandbox (a few ms)."""
        t = self.target
        # Nothing of env_dir or source_dir runs out here: both hold what the script's
        # author wrote (wheels can replace bin/python, pyvenv.cfg or the stdlib it
        # points at). Bytecode is written by the host interpreter the venv was built
        # from (same version, same magic number), which only compiles.
        if t.language == "python":
            python = os.path.realpath(t.runtime_path)
            compile_runtimes(python, self.settings.runtimes_dir)
            compile_source(python, t.source_dir)
        else:
            compile_runtimes(self.settings.host_python, self.settings.runtimes_dir)
        prepare_workspace(t.workspace_dir, self.uid)
        log_fd = self._open_log(name)
        try:
            return sandbox.start(self.spec(name, control_fd, log_fd), self.root)
        finally:
            if log_fd is not None:
                os.close(log_fd)

    def spec(self, name: str, control_fd: int, log_fd: int | None = None) -> sandbox.SandboxSpec:
        t, s = self.target, self.settings
        return sandbox.SandboxSpec(
            argv=self.argv(),
            env=self.env(),
            name=name,
            cwd=APP_DIR,
            uid=self.uid,
            gid=self.uid,
            binds=self.binds(),
            tmp_size_bytes=s.tmp_size_bytes,
            cpu_vcpus=t.profile.vcpus,
            memory_bytes=t.profile.memory_bytes,
            pids_max=s.pids_max,
            pass_fds={3: control_fd},
            stdout=log_fd,
            stderr=log_fd,
            hostname=t.script[:63],
        )

    def argv(self) -> tuple[str, ...]:
        t, s = self.target, self.settings
        python = f"{VENV_IN}/bin/python" if t.language == "python" else s.host_python
        # -S: the supervisor adds the venv's site-packages itself (runtimes/supervisor.py)
        argv = [python, "-I", "-S", f"{RUNTIMES_IN}/supervisor.py", "--language", t.language]
        argv += ["--workers", str(self.workers), "--source", APP_DIR]
        argv += ["--harness-dir", RUNTIMES_IN, "--max-output", str(s.max_output_bytes)]
        argv += ["--max-frame", str(s.max_frame_bytes)]
        if t.language == "javascript":
            argv += ["--node", os.path.realpath(t.runtime_path)]
        return tuple(argv)

    def binds(self) -> tuple[sandbox.Bind, ...]:
        t, s = self.target, self.settings
        binds = [
            sandbox.Bind(str(s.runtimes_dir), RUNTIMES_IN),
            sandbox.Bind(str(t.source_dir), APP_DIR),
            sandbox.Bind(str(t.workspace_dir), WORKSPACE_IN, writable=True),
        ]
        if t.language == "python":
            binds.append(sandbox.Bind(str(t.env_dir), VENV_IN))
        elif _real_dir(t.env_dir / "node_modules"):
            binds.append(sandbox.Bind(str(t.env_dir / "node_modules"), NODE_MODULES_IN))
        for exe, language in ((t.runtime_path, t.language), (s.host_python, "python")):
            root = install_root(exe, language)
            if root is not None:
                binds.append(sandbox.Bind(root, root))
        if s.uploads_dir is not None and s.uploads_dir.is_dir():
            binds.append(sandbox.Bind(str(s.uploads_dir), UPLOADS_IN))
        return tuple(dict.fromkeys(binds))

    def env(self) -> dict[str, str]:
        base = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
        }
        return {**base, **self.target.env, "WORKSPACE_DIR": WORKSPACE_IN, "UPLOADS_DIR": UPLOADS_IN}

    def _open_log(self, name: str) -> int | None:
        if self.settings.log_dir is None:
            return None
        return open_replica_log(self.settings.log_dir, self.target.script_id, name)


def _real_dir(path: Path) -> bool:
    """A directory that is not a symlink (a bind source must not lead elsewhere)."""
    with contextlib.suppress(OSError):
        return stat.S_ISDIR(path.lstat().st_mode)
    return False


_compiled: set[tuple[str, str]] = set()
_compiled_lock = threading.Lock()
# Compiles only (py_compile never runs the code); regular .py files only, never through a
# symlink; folders are walked without following links.
_COMPILE = """\
import os, py_compile, stat, sys
def one(p):
    if p.endswith(".py") and stat.S_ISREG(os.lstat(p).st_mode):
        try:
            py_compile.compile(p, doraise=True)
        except Exception:
            pass
for top in sys.argv[1:]:
    if not os.path.isdir(top):
        one(top)
        continue
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for f in files:
            one(os.path.join(d, f))
"""


def compile_runtimes(python: str, runtimes_dir: Path) -> None:
    """Write the runtimes' bytecode for this interpreter, once per daemon process.

    Inside the sandbox the runtimes are read-only to the script's uid, so a missing or
    stale __pycache__ would be compiled again at every replica start (about 10 ms of
    the supervisor's start-up). Failures only cost that time: nothing is raised.
    `python` must be a trusted host interpreter, never one of a script's venv."""
    files = [str(p) for d in (runtimes_dir, runtimes_dir / "python") for p in d.glob("*.py")]
    _compile_once(python, str(runtimes_dir), files)


def compile_source(python: str, source_dir: Path) -> None:
    """The same for a version's own files (its source is read-only in the sandbox
    too): main.py and what it imports are otherwise compiled at every replica start.
    Files that do not compile are left alone (their import reports the error)."""
    _compile_once(python, str(source_dir), [str(source_dir)])


def _compile_once(python: str, what: str, paths: list[str]) -> None:
    key = (os.path.realpath(python), what)
    with _compiled_lock:
        if key in _compiled:
            return
        _compiled.add(key)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [python, "-I", "-S", "-c", _COMPILE, *paths],
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )


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
        self.node = node
        self.extra_env = dict(env or {})
        self.label = label
        self.runtimes_dir = runtimes_dir
        self.memory_bytes: int | None = None

    @classmethod
    def for_target(cls, target: RunTarget, settings: LaunchSettings) -> PlainLauncher:
        """A built version run without a sandbox (scriptd --dev-no-sandbox only)."""
        python = str(target.env_dir / "bin" / "python")
        node = None
        if target.language == "javascript":
            python, node = settings.host_python, target.runtime_path
        target.workspace_dir.mkdir(parents=True, exist_ok=True)
        uploads = str(settings.uploads_dir or "/nonexistent")
        env = {**target.env, "WORKSPACE_DIR": str(target.workspace_dir), "UPLOADS_DIR": uploads}
        launcher = cls(
            target.language,
            python,
            target.source_dir,
            workers=workers_for(target.profile.vcpus),
            node=node,
            env=env,
            label=f"{target.script} v{target.version}",
            runtimes_dir=settings.runtimes_dir,
        )
        launcher.memory_bytes = target.profile.memory_bytes
        return launcher

    def launch(self, name: str, control_fd: int) -> PlainProcess:
        rt = str(self.runtimes_dir)
        argv = [self.python, "-I", f"{rt}/supervisor.py", "--language", self.language]
        argv += ["--workers", str(self.workers), "--source", str(self.source_dir)]
        argv += ["--harness-dir", rt, "--control-fd", str(control_fd)]
        if self.node:
            argv += ["--node", self.node]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.extra_env}
        popen = subprocess.Popen(
            argv,
            pass_fds=(control_fd,),
            env=env,
            cwd=self.source_dir,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        return PlainProcess(popen)
