"""How a replica's process tree is started: in a sandbox (always, in production), or as
a plain process group (development and tests of the protocol only: no isolation).

`SandboxLauncher` turns a built version (`RunTarget`) into the `SandboxSpec` of one
replica: runtimes/supervisor.py on an interpreter of the runtime catalogue (the version's
own venv python for a Python script, the catalogue's default Python for a Node script;
never the daemon's own interpreter, whose folders are never bound in), the version's
source and environment read-only, the script's workspace read-write, the uploads read-only, the
profile's actual vCPUs and memory, and a uid of the script's own.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import sandbox
from daemon.build.catalogue import install_prefix
from daemon.config.daemon_config import Config
from daemon.serving.bytecode import compile_runtimes, compile_source
from daemon.serving.egress_gate import EgressAccess, EgressGate
from daemon.serving.host_files import prepare_workspace
from daemon.serving.replica_logs import LogWriter
from daemon.serving.replica_output import OutputPump, StderrSink
from daemon.serving.target import RunTarget
from daemon.serving.workspace_image import ensure_mounted

__all__ = [
    "APP_DIR",
    "RUNTIMES_DIR",
    "LaunchSettings",
    "ParkedSandbox",
    "SandboxLauncher",
    "SupervisorCommand",
    "concurrency_of",
    "node_heap_mb",
    "output_pump",
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
    uid_base: int = Config.replica_uid_base  # script N runs as uid/gid uid_base + N
    uid_count: int = Config.replica_uid_count  # ids above uid_base + uid_count are refused
    # A catalogue Python that runs the supervisor of Node scripts (main.py: the default).
    supervisor_python: str | None = None
    tmp_size_bytes: int = 64 * MiB  # /tmp of each replica
    pids_max: int = 256  # processes + threads per replica
    max_output_bytes: int = 1 * MiB  # per call, per stream
    max_frame_bytes: int = 16 * MiB  # largest call or result frame
    egress: EgressGate | None = None  # None: replicas have no network at all


@dataclass(frozen=True)
class SupervisorCommand:
    """runtimes/supervisor.py's command line: built here only, for both launchers."""

    language: str
    workers: int
    source: str  # the project's folder, as the supervisor sees it
    runtimes: str  # runtimes/, as the supervisor sees it
    node: str | None = None  # the node binary (javascript)
    step_spec: str | None = None  # a code step: --kind step with this --step-spec
    concurrency: int = 1  # calls in flight per worker

    def argv(self, python: str, *extra: str) -> tuple[str, ...]:
        """`extra`: interpreter flags first (each starting with one "-", such as -S),
        then supervisor options."""
        flags = [x for x in extra if x.startswith("-") and not x.startswith("--")]
        options = list(extra[len(flags) :])
        argv = [python, "-I", *flags, f"{self.runtimes}/supervisor.py"]
        argv += ["--language", self.language, "--workers", str(self.workers)]
        argv += ["--source", self.source, "--harness-dir", self.runtimes, *options]
        if self.node:
            argv += ["--node", self.node]
        if self.step_spec is not None:
            argv += ["--kind", "step", "--step-spec", self.step_spec]
        if self.concurrency > 1:
            argv += ["--concurrency", str(self.concurrency)]
        return tuple(argv)


def workers_for(vcpus: float, per_replica: int | None = None) -> int:
    """K: the script's workers_per_replica, else one worker per whole vCPU of the
    profile, at least one."""
    return per_replica if per_replica is not None else max(1, int(vcpus))


def concurrency_of(target: RunTarget) -> int:
    """Calls in flight per worker: the script's setting; a code step's workers run one
    execution at a time."""
    return 1 if target.step_spec is not None else target.concurrency


NODE_YOUNG_MB = 48  # V8's young generation (3 semi-spaces of 16 MiB) beside the old space


def node_heap_mb(memory_bytes: int, workers: int) -> int:
    """node's --max-old-space-size: three quarters of a worker's share of the replica's
    memory, less the young generation, so V8 gives up (and the call is reported as out
    of memory naming its heap limit) before the cgroup kills the whole worker."""
    share = memory_bytes // max(1, workers) // MiB
    return max(16, share * 3 // 4 - NODE_YOUNG_MB)


def output_pump(logs: LogWriter | None, script_id: int, name: str, label: str) -> OutputPump:
    """The pipe of a replica's stdout and stderr, to its rotated log (to the daemon's
    stderr when there is no log writer: development and tests)."""
    if logs is None:
        return OutputPump(StderrSink(), 1 << 40, label)
    return OutputPump(logs.open(script_id, name), logs.limits.rate_bytes_per_s, f"{label} {name}")


def install_root(executable: str, language: str) -> str | None:
    """The folder to bind for a host runtime: its install prefix (sys.base_prefix for a
    Python, found by daemon/build/catalogue.py), or None when the sandbox's system binds
    already cover it. Raises UnsafeRuntime for a prefix that would expose the host."""
    prefix = install_prefix(executable, language)
    if any(prefix == p or prefix.startswith(p + "/") for p in _SYSTEM_PREFIXES):
        return None
    return prefix


class SandboxLauncher:
    """Starts replicas of one built version, each in its own sandbox."""

    def __init__(
        self,
        target: RunTarget,
        settings: LaunchSettings,
        root: sandbox.CgroupRoot,
        logs: LogWriter | None = None,
    ) -> None:
        self.target = target
        self.settings = settings
        self.root = root
        self.logs = logs
        self.workers = workers_for(target.profile.vcpus, target.workers_per_replica)
        self.concurrency = concurrency_of(target)
        self.memory_bytes: int | None = target.profile.memory_bytes
        self.label = f"{target.script} v{target.version}"
        self.uid = settings.uid_base + target.script_id
        if not 0 < target.script_id < settings.uid_count:
            raise ValueError(f"script id {target.script_id} is outside the uid range")

    def output(self, name: str) -> OutputPump:
        return output_pump(self.logs, self.target.script_id, name, self.label)

    def launch(self, name: str, control_fd: int, output_fd: int) -> sandbox.Sandbox | _Released:
        """Blocking: prepare the workspace, start the sandbox (a few ms)."""
        access = self._prepare(name)
        try:
            box = sandbox.start(self.spec(name, control_fd, output_fd, access), self.root)
        except BaseException:
            self._release_egress(name)
            raise
        return self._started(box, name)

    def park(self, name: str, control_fd: int, output_fd: int) -> ParkedSandbox:
        """Blocking: what launch does, up to the sandbox's exec (sandbox.park). The
        environment is not sent yet (it holds secrets): `release` sends it."""
        access = self._prepare(name)
        try:
            spec = replace(self.spec(name, control_fd, output_fd, access), env={})
            return ParkedSandbox(sandbox.park(spec, self.root), access)
        except BaseException:
            self._release_egress(name)
            raise

    def release(self, spare: ParkedSandbox) -> sandbox.Sandbox | _Released:
        """Blocking: exec a parked sandbox's command with the environment of now."""
        name = spare.parked.name
        try:
            box = spare.parked.release(self.env(spare.egress))
        except BaseException:
            self._release_egress(name)
            raise
        return self._started(box, name)

    def discard(self, spare: ParkedSandbox) -> None:
        """Blocking: kill a parked sandbox and remove its cgroups and egress socket."""
        try:
            spare.parked.discard()
        finally:
            self._release_egress(spare.parked.name)

    def _prepare(self, name: str) -> EgressAccess | None:
        """The version's bytecode, the workspace, the replica's egress socket."""
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
            compile_runtimes(self.supervisor_python(), self.settings.runtimes_dir)
        ensure_mounted(t.workspace_dir, t.profile.workspace_bytes)  # reused when mounted
        prepare_workspace(t.workspace_dir, self.uid)
        egress = self.settings.egress
        if egress is None:
            return None
        return egress.open(name, t.egress, t.secrets, egress_lanes(self.workers), t.script)

    def _release_egress(self, name: str) -> None:
        if self.settings.egress is not None:
            self.settings.egress.release(name)

    def _started(self, box: sandbox.Sandbox, name: str) -> sandbox.Sandbox | _Released:
        egress = self.settings.egress
        return box if egress is None else _Released(box, lambda: egress.release(name))

    def spec(
        self,
        name: str,
        control_fd: int,
        output_fd: int | None = None,
        egress: EgressAccess | None = None,
    ) -> sandbox.SandboxSpec:
        """stdout and stderr: the write end of the replica's output pipe, never a file."""
        t, s = self.target, self.settings
        return sandbox.SandboxSpec(
            argv=self.argv(egress),
            env=self.env(egress),
            name=name,
            cwd=APP_DIR,
            uid=self.uid,
            gid=self.uid,
            binds=self.binds(egress),
            tmp_size_bytes=s.tmp_size_bytes,
            cpu_vcpus=t.profile.vcpus,
            memory_bytes=t.profile.memory_bytes,
            pids_max=s.pids_max,
            pass_fds={3: control_fd},
            stdout=output_fd,
            stderr=output_fd,
            hostname=t.script[:63],
        )

    def argv(self, egress: EgressAccess | None = None) -> tuple[str, ...]:
        t, s = self.target, self.settings
        python = f"{VENV_IN}/bin/python" if t.language == "python" else self.supervisor_python()
        node = os.path.realpath(t.runtime_path) if t.language == "javascript" else None
        command = SupervisorCommand(
            t.language, self.workers, APP_DIR, RUNTIMES_IN, node, t.step_spec, self.concurrency
        )
        extra = ("--egress-socket", egress.socket) if egress is not None else ()
        # -S: the supervisor adds the venv's site-packages itself (runtimes/supervisor.py)
        options = ["--max-output", str(s.max_output_bytes), "--max-frame", str(s.max_frame_bytes)]
        if t.language == "javascript":
            options += ["--node-heap-mb", str(node_heap_mb(t.profile.memory_bytes, self.workers))]
        return command.argv(python, "-S", *options, *extra)

    def binds(self, egress: EgressAccess | None = None) -> tuple[sandbox.Bind, ...]:
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
        runtimes = [(t.runtime_path, t.language)]
        if t.language == "javascript":
            runtimes.append((self.supervisor_python(), "python"))
        for exe, language in runtimes:
            root = install_root(exe, language)
            if root is not None:
                binds.append(sandbox.Bind(root, root))
        if s.uploads_dir is not None and s.uploads_dir.is_dir():
            binds.append(sandbox.Bind(str(s.uploads_dir), UPLOADS_IN))
        for host, inside in egress.binds if egress is not None else ():
            binds.append(sandbox.Bind(str(host), inside))
        return tuple(dict.fromkeys(binds))

    def supervisor_python(self) -> str:
        """The catalogue Python that runs a Node script's supervisor."""
        python = self.settings.supervisor_python
        if python is None:
            raise sandbox.SandboxError(
                f"{self.label}: the runtime catalogue has no Python to run the supervisor of "
                "a Node script; install python3 (or name one in runtimes.python)"
            )
        return os.path.realpath(python)

    def env(self, egress: EgressAccess | None = None) -> dict[str, str]:
        base = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
        }
        own = {"WORKSPACE_DIR": WORKSPACE_IN, "UPLOADS_DIR": UPLOADS_IN}
        trust = egress.env if egress is not None else {}
        return {**base, **self.target.env, **trust, **own}


@dataclass(frozen=True)
class ParkedSandbox:
    """A replica's sandbox parked before its exec (a pool's spare) and its egress."""

    parked: sandbox.Parked
    egress: EgressAccess | None


class _Released:
    """A started sandbox whose cleanup also releases its egress socket."""

    def __init__(self, box: sandbox.Sandbox, release: Callable[[], None]) -> None:
        self._box = box
        self._release = release
        self.pid = box.pid

    async def wait(self) -> sandbox.Exit:
        return await self._box.wait()

    def kill(self) -> None:
        self._box.kill()

    def usage(self) -> sandbox.Usage:
        return self._box.usage()

    def track_memory(self, name: str, ns_pid: int) -> sandbox.MemoryProbe | None:
        return self._box.track_memory(name, ns_pid)

    def expect_moves(self, count: int, seconds: float) -> None:
        self._box.expect_moves(count, seconds)

    def move_is_quick(self) -> bool:
        return self._box.move_is_quick()

    def cleanup(self) -> None:
        try:
            self._box.cleanup()
        finally:
            self._release()


def _real_dir(path: Path) -> bool:
    """A directory that is not a symlink (a bind source must not lead elsewhere)."""
    with contextlib.suppress(OSError):
        return stat.S_ISDIR(path.lstat().st_mode)
    return False


def egress_lanes(workers: int) -> int:
    """The egress lanes a replica of `workers` workers opens: two per worker (a killed
    worker keeps its lane until it is reaped, and its replacement is forked at the
    kill), and one for the spare a spawned pool boots ahead, so that no worker is ever
    left on the replica's shared port."""
    return 2 * workers + 1
