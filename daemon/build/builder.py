"""Building a version's environment: a venv (Python) or node_modules (Node).

Environments are cached under `<cache>/envs/<key>`, where the key hashes the
interpreter (path and exact version), the dependency files and the build
options: an unchanged redeploy builds nothing. A build happens in a temp folder
beside its final place and is renamed in only once complete, so a crash never
leaves a half environment that looks finished.

Python code steps without a requirements.txt share one base environment per
interpreter (`<cache>/envs/base-<hash of interpreter and steps.base_packages>`),
built the first time a step needs it; a step with a requirements.txt gets its
own environment with the base packages resolved together with its requirements.
One build per key at a time, in this daemon and across daemons sharing the
cache (daemon/build/env_lock.py): the others wait, then reuse it.

Every tool runs as a subprocess (never on the event loop) in its own process
group, with a minimal environment, under one time limit for the whole build;
its output goes to the version's build log. The tools run as the unprivileged
build user, in a mount namespace that shows them only the build's temp folder
and their caches (daemon/build/build_user.py); the finished environment is then
root's and read-only. Untrusted code must not run here, outside any sandbox:
Python installs take wheels only (`uv pip install --no-build`) and npm runs with
`--ignore-scripts`, unless the config allows more. The dependency files reach
the tools only after validation refused every installer option, local path and
non-registry source (daemon/archive/requirements.py, daemon/archive/project.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import sandbox
from daemon.build.build_user import (
    TOOLS_MOUNT,
    WORK_MOUNT,
    build_ids,
    chown_tree,
    make_work_dir,
    prepare_tools,
    seal,
    tools_dir,
    wrap,
)
from daemon.build.catalogue import Runtime
from daemon.build.cgroup import BuildCgroup, BuildCgroups, guarded
from daemon.build.env_keys import (
    NODE_DEP_FILES,
    base_env_key,
    env_key,
    has_node_dependencies,
    has_requirements,
)
from daemon.build.env_lock import host_lock
from daemon.build.sweep import sweep_envs, trim_caches
from daemon.config.daemon_config import Config
from daemon.core.cancel import uncancellable
from daemon.core.errors import BuildError
from daemon.metrics.instruments import BUILD_CACHE_HITS, BUILD_CACHE_MISSES, BUILD_DURATION

DONE_MARKER = ".scriptd-built"
REQUIREMENTS_COPY = ".scriptd-requirements.txt"  # in the temp folder while uv reads it
# The daemon's own settings for reaching package indexes (proxies, CA bundles,
# mirrors) go through to the tools; nothing else of its environment does.
PASS_ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
    "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_SYSTEM_CERTS",
    "UV_NATIVE_TLS", "npm_config_registry", "npm_config_cafile",
)  # fmt: skip


# Fills a build's temp folder (its path, the build's monotonic deadline).
Make = Callable[[Path, float], Awaitable[None]]


@dataclass(frozen=True)
class BuildResult:
    env_key: str
    env_dir: Path
    cached: bool
    seconds: float


def find_uv(config: Config) -> str:
    if config.uv_path:
        return str(config.uv_path)
    import sys

    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else (shutil.which("uv") or "uv")


class Builder:
    def __init__(self, config: Config, cgroup_root: sandbox.CgroupRoot | None = None) -> None:
        self.config = config
        self.cgroups = BuildCgroups(cgroup_root)
        self.envs_dir = config.cache_dir / "envs"
        self._slots = asyncio.Semaphore(config.build_parallel)
        self._key_locks: dict[str, asyncio.Lock] = {}
        self.uid, self.gid = build_ids(config)
        self.tools = tools_dir(config)
        self._tools_ready = False
        self.building: set[str] = set()  # keys of the environments being built now

    def env_dir(self, key: str) -> Path:
        return self.envs_dir / key

    def is_built(self, key: str) -> bool:
        """Whether environment `key` is complete on this host (blocking)."""
        return (self.env_dir(key) / DONE_MARKER).is_file()

    async def build(
        self, language: str, runtime: Runtime, src: Path, log: Path, base: tuple[str, ...] = ()
    ) -> BuildResult:
        """Build (or reuse) the environment for the project unpacked at `src`. `base`:
        a Python code step's base packages; without a requirements.txt the step runs
        on the shared base environment, with one they are installed beside it."""
        base = base if language == "python" else ()
        if base and not await asyncio.to_thread(has_requirements, src):
            return await self.base_env(runtime, base, log)
        key = await asyncio.to_thread(env_key, self.config, language, runtime, src, base)
        what = f"environment {key} ({language} {runtime.version} at {runtime.path})"
        if base:
            what += f" with the base packages of steps: {', '.join(base)}"
        return await self._ensure(key, what, log, lambda tmp, deadline: self._install(
            language, runtime, src, tmp, log, deadline, base), language)  # fmt: skip

    async def base_env(self, runtime: Runtime, base: tuple[str, ...], log: Path) -> BuildResult:
        """The base environment of code steps on `runtime` (built once, shared)."""
        key = base_env_key(self.config, runtime, base)
        what = f"base environment {key} (python {runtime.version}: {', '.join(base)})"
        return await self._ensure(key, what, log, lambda tmp, deadline: self._python(
            runtime, None, tmp, log, deadline, base))  # fmt: skip

    def base_env_state(self, runtime: Runtime, base: tuple[str, ...]) -> dict[str, object]:
        """The base environment of `runtime`: key, packages, and its state (ready,
        building, or absent: it is built when a step first needs it). Blocking."""
        key = base_env_key(self.config, runtime, base)
        ready = (self.env_dir(key) / DONE_MARKER).is_file()
        state = "ready" if ready else "building" if key in self.building else "absent"
        return {"key": key, "packages": list(base), "state": state}

    async def _ensure(
        self, key: str, what: str, log: Path, make: Make, language: str = "python"
    ) -> BuildResult:
        """Reuse the environment `key` if it is built, else build it with `make` into a
        temp folder renamed into place: one build per key, in this daemon and across
        daemons sharing the cache; the others wait, then reuse it."""
        started = time.monotonic()
        final = self.env_dir(key)
        lock = self._key_locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            await _append(log, f"{what}: another deploy is building it, waiting\n")
        async with lock:
            if await asyncio.to_thread(_touch_if_built, final):
                BUILD_CACHE_HITS.labels(language).inc()
                await _append(log, f"{what} is already built: reused\n")
                return BuildResult(key, final, True, time.monotonic() - started)

            async def waiting() -> None:
                await _append(log, f"{what}: another daemon is building it, waiting\n")

            deadline = started + self.config.build_timeout_s
            async with host_lock(self.config.cache_dir / "locks" / key, deadline, waiting):
                if await asyncio.to_thread(_touch_if_built, final):
                    BUILD_CACHE_HITS.labels(language).inc()
                    await _append(log, f"{what} was built meanwhile: reused\n")
                    return BuildResult(key, final, True, time.monotonic() - started)
                BUILD_CACHE_MISSES.labels(language).inc()
                await _append(log, f"{what}: building\n")
                await self._build_counted(make, log, final, started, key, language)
        seconds = time.monotonic() - started
        await _append(log, f"{what}: built in {seconds:.1f} s\n")
        return BuildResult(key, final, False, seconds)

    async def _build_counted(
        self, make: Make, log: Path, final: Path, started: float, key: str, language: str
    ) -> None:
        """One build in a build slot, shown as building meanwhile, its time measured."""
        self.building.add(key)
        outcome = "failed"
        try:
            async with self._slots:
                await self._build_into(make, log, final, started)
                outcome = "ok"
        finally:
            self.building.discard(key)
            BUILD_DURATION.labels(language, outcome).observe(time.monotonic() - started)

    async def sweep(self, in_use: set[str]) -> None:
        """Remove environments no version needs and bound the tools' caches
        (daemon/build/sweep.py), once no build runs: it holds every build slot."""
        held = 0
        try:
            for _ in range(self.config.build_parallel):
                await self._slots.acquire()
                held += 1
            cfg = self.config
            await asyncio.to_thread(
                sweep_envs, self.envs_dir, in_use, DONE_MARKER, cfg.build_timeout_s
            )
            await asyncio.to_thread(trim_caches, self.tools, cfg.build_cache_max_bytes)
            self._tools_ready = False  # the next build makes the emptied folders again
        finally:
            for _ in range(held):
                self._slots.release()

    async def _build_into(self, make: Make, log: Path, final: Path, t0: float) -> None:
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        if not self._tools_ready:  # once per daemon: the caches may be root's from before
            await asyncio.to_thread(prepare_tools, self.tools, self.uid, self.gid)
            self._tools_ready = True
        await asyncio.to_thread(make_work_dir, tmp, self.uid, self.gid)
        try:
            await make(tmp, t0 + self.config.build_timeout_s)
            await asyncio.to_thread(seal, tmp)
            await asyncio.to_thread(_finish, tmp, final)
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)

    async def _install(
        self, language: str, runtime: Runtime, src: Path, tmp: Path, log: Path, deadline: float,
        base: tuple[str, ...],
    ) -> None:  # fmt: skip
        if language == "python":
            await self._python(runtime, src, tmp, log, deadline, base)
        else:
            await self._node(runtime, src, tmp, log, deadline)

    async def _python(
        self, rt: Runtime, src: Path | None, tmp: Path, log: Path, deadline: float,
        base: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """A venv of `rt` with the requirements of `src` (None: none) and `base`,
        resolved together."""
        uv = find_uv(self.config)
        venv = [uv, "venv", "--quiet", "--relocatable", "--python", rt.path, WORK_MOUNT]
        await self._run(venv, tmp, log, deadline)
        wanted: list[str] = list(base)
        if src is not None and await asyncio.to_thread(has_requirements, src):
            await asyncio.to_thread(
                self._hand_over, src / "requirements.txt", tmp / REQUIREMENTS_COPY
            )
            wanted += ["-r", f"{WORK_MOUNT}/{REQUIREMENTS_COPY}"]
        if not wanted:
            return
        argv = [uv, "pip", "install", "--python", f"{WORK_MOUNT}/bin/python"]
        if not self.config.build_allow_source_builds:
            argv.append("--no-build")
        await self._run([*argv, *wanted], tmp, log, deadline)
        await asyncio.to_thread((tmp / REQUIREMENTS_COPY).unlink, True)

    async def _node(self, rt: Runtime, src: Path, tmp: Path, log: Path, deadline: float) -> None:
        names = [n for n in NODE_DEP_FILES if (src / n).is_file()]
        for name in names:
            await asyncio.to_thread(self._hand_over, src / name, tmp / name)
        await asyncio.to_thread((tmp / "node_modules").mkdir, exist_ok=True)
        await asyncio.to_thread(chown_tree, tmp, self.uid, self.gid)
        if not await asyncio.to_thread(has_node_dependencies, src):
            await _append(log, "package.json lists no dependencies: nothing to install\n")
            return
        npm = str(Path(rt.path).parent / "npm")
        npm = npm if os.path.exists(npm) else (shutil.which("npm") or "npm")
        locked = "package-lock.json" in names or "npm-shrinkwrap.json" in names
        argv = [npm, "ci"] if locked else [npm, "install"]
        argv += ["--omit=dev", "--no-audit", "--no-fund", "--cache", f"{TOOLS_MOUNT}/npm"]
        if self.config.build_npm_ignore_scripts:
            argv.append("--ignore-scripts")
        await self._run(argv, tmp, log, deadline, node_dir=str(Path(rt.path).parent))

    def _hand_over(self, src: Path, dest: Path) -> None:
        """Copy a dependency file into the temp folder, readable by the build user."""
        shutil.copyfile(src, dest)
        os.chown(dest, self.uid, self.gid)

    def _env(self, node_dir: str | None) -> dict[str, str]:
        path = "/usr/local/bin:/usr/bin:/bin"
        passed = {k: v for k, v in os.environ.items() if k in PASS_ENV}
        return passed | {
            "PATH": f"{node_dir}:{path}" if node_dir else path,
            "HOME": f"{TOOLS_MOUNT}/home",
            "TMPDIR": f"{TOOLS_MOUNT}/tmp",
            "LANG": "C.UTF-8",
            "UV_CACHE_DIR": f"{TOOLS_MOUNT}/uv",
            # the cache and the temp folder are two mounts: hard links cannot cross them
            "UV_LINK_MODE": "copy",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_CONFIG": "1",
            "npm_config_update_notifier": "false",
        }

    async def _run(
        self, argv: list[str], cwd: Path, log: Path, deadline: float, node_dir: str | None = None
    ) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BuildError(self._too_long())
        await _append(log, f"$ {' '.join(argv)}  (as uid {self.uid}, gid {self.gid})\n")
        cgroup = await asyncio.to_thread(self.cgroups.new)
        try:
            await self._run_in(argv, cwd, log, left, node_dir, cgroup)
        finally:
            if cgroup is not None:  # whatever the tool left running dies here
                await uncancellable(asyncio.to_thread(cgroup.kill_and_remove))

    async def _run_in(
        self,
        argv: list[str],
        cwd: Path,
        log: Path,
        left: float,
        node_dir: str | None,
        cgroup: BuildCgroup | None,
    ) -> None:
        wrapped = wrap(argv, cwd, self.tools, self.uid, self.gid)
        fd = await asyncio.to_thread(os.open, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            proc = await asyncio.create_subprocess_exec(
                *guarded(wrapped, cgroup),
                cwd=cwd,
                env=self._env(node_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,  # its own group: a timeout kills the whole tree
            )
        except OSError as exc:
            raise BuildError(f"cannot run {argv[0]}: {exc.strerror}") from None
        finally:
            os.close(fd)
        try:
            code = await asyncio.wait_for(proc.wait(), left)
        except TimeoutError:
            raise BuildError(self._too_long()) from None
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
                await proc.wait()
        if code != 0:
            raise BuildError(
                f"{Path(argv[0]).name} {argv[1]} failed (exit {code}): see the build log"
            )

    def _too_long(self) -> str:
        return f"the build took longer than {self.config.build_timeout_s} s (build.timeout_s)"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _touch_if_built(env: Path) -> bool:
    """True when `env` is complete; its marker's mtime then says "used now" (unused
    environments are swept an hour after their last use)."""
    try:
        os.utime(env / DONE_MARKER)
    except FileNotFoundError:
        return False
    return True


def _finish(tmp: Path, final: Path) -> None:
    (tmp / DONE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
    shutil.rmtree(final, ignore_errors=True)  # a leftover without the marker
    os.rename(tmp, final)


async def _append(log: Path, text: str) -> None:
    def write() -> None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(text)

    await asyncio.to_thread(write)
