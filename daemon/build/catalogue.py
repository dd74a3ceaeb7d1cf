"""The runtime catalogue: which Python interpreters and Node binaries this host has.

`discover_runtimes(config)` probes candidates (pinned paths from the config, then
`python3.X` / `node` on PATH and in the usual install folders) by running each one
once and asking for its exact version, real executable path and install prefix
(`sys.base_prefix`: what a sandbox binds to run it). Candidates that fail to run
(pyenv shims of versions that are not selected, broken links) are skipped, and so are
those the unprivileged build user cannot run (a pyenv below /root, mode 0700), and
those whose prefix would expose the host (`/`, `/opt`, `/root`, `/home`: any top-level
folder but /usr), with a logged reason. Two names for one binary count once.
Blocking: call it off the event loop.

The default of a language is the newest major.minor; between equal ones, the one
under /usr wins (it is what a sandbox can bind without reaching into a home dir),
then the newest patch level.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from daemon.config.daemon_config import Config

log = logging.getLogger(__name__)

PYTHON_MINORS = range(8, 20)
MIN_PYTHON = (3, 8)
USUAL_BIN_DIRS = ("/usr/bin", "/usr/local/bin", "/opt/bin")
PROBE_TIMEOUT_S = 10
PY_PROBE = (
    "import sys, platform; print(platform.python_version()); print(sys.executable); "
    "print(sys.base_prefix); print(sys.base_exec_prefix)"
)
# Real executable -> real install prefix, for every runtime probed (see install_prefix).
_prefixes: dict[str, str] = {}


class UnsafeRuntime(ValueError):
    """A runtime whose install prefix a sandbox cannot bind without exposing the host."""


@dataclass(frozen=True)
class Runtime:
    language: str  # "python" | "javascript"
    version: str  # exact, e.g. "3.11.7" or "20.19.0"
    path: str  # the real executable
    default: bool = False
    prefix: str = ""  # its install prefix (real path): what a sandbox binds to run it

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", self.version)[:3])

    def to_json(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "version": self.version,
            "path": self.path,
            "default": self.default,
        }


@dataclass(frozen=True)
class Catalogue:
    runtimes: tuple[Runtime, ...]

    def for_language(self, language: str) -> list[Runtime]:
        return [r for r in self.runtimes if r.language == language]

    def pick(self, language: str, version: str | None) -> Runtime | None:
        """The runtime for `version` (exact, or a prefix like "3.11"); None: the default."""
        choices = self.for_language(language)
        if version is None:
            return next((r for r in choices if r.default), None)
        exact = [r for r in choices if r.version == version]
        if exact:
            return exact[0]
        prefixed = [r for r in choices if r.version.startswith(version + ".")]
        return max(prefixed, key=_rank) if prefixed else None

    def versions(self, language: str) -> list[str]:
        return [r.version for r in self.for_language(language)]


def _run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def prefix_problem(prefix: str, executable: str) -> str | None:
    """Why a sandbox must not bind `prefix` to run `executable`, or None."""
    real = os.path.realpath(prefix)
    parts = real.strip("/").split("/")
    if real == "/" or (len(parts) == 1 and parts[0] != "usr"):
        return f"its prefix {real} is a top-level folder: a sandbox would see all of it"
    exe = os.path.realpath(executable)
    if not exe.startswith(real + "/") and not exe.startswith("/usr/"):
        return f"its executable {exe} is outside its prefix {real}"
    return None


def reach_problem(executable: str) -> str | None:
    """Why the build user (no groups, not the owner) cannot run `executable`, or None:
    builds make a venv or run npm with it as that user."""
    path = os.path.realpath(executable)
    folder = os.path.dirname(path)
    while True:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return f"the build user cannot reach it: {folder} is not searchable by others"
        if folder == "/":
            break
        folder = os.path.dirname(folder)
    if not os.stat(path).st_mode & stat.S_IXOTH:
        return "the build user cannot run it: it is not executable by others"
    return None


def _reachable(exe: str) -> None:
    """Discovery offers only runtimes a build can use; raise UnsafeRuntime if not."""
    problem = reach_problem(exe)
    if problem is not None:
        raise UnsafeRuntime(f"{exe}: {problem}")


def _checked(exe: str, prefix: str) -> str:
    """Remember and return the real prefix of the real executable; raise if unsafe."""
    problem = prefix_problem(prefix, exe)
    if problem is not None:
        raise UnsafeRuntime(f"{exe}: {problem}")
    real = _prefixes[os.path.realpath(exe)] = os.path.realpath(prefix)
    return real


def _probe_python(path: str) -> tuple[str, str, str] | None:
    """(version, executable, real prefix) of a Python; raises UnsafeRuntime."""
    out = _run([path, "-I", "-c", PY_PROBE])
    lines = out.split("\n") if out else []
    if len(lines) < 4 or not re.fullmatch(r"3\.\d+\.\d+\S*", lines[0]):
        return None
    version, executable, base_prefix, base_exec_prefix = lines[:4]
    if os.path.realpath(base_exec_prefix) != os.path.realpath(base_prefix):
        raise UnsafeRuntime(f"{executable}: its exec prefix is not its prefix")
    return version, executable, _checked(executable, base_prefix)


def probe_python(path: str) -> Runtime | None:
    try:
        probed = _probe_python(path)
        if probed is not None:
            _reachable(probed[1])
    except UnsafeRuntime as exc:
        log.warning("python at %s skipped: %s", path, exc)
        return None
    if probed is None:
        return None
    version, executable, prefix = probed
    runtime = Runtime("python", version, executable, prefix=prefix)
    return runtime if runtime.version_tuple[:2] >= MIN_PYTHON else None


def node_prefix(path: str) -> str:
    """Node's install prefix: …/bin/node -> … (the folder of the binary if not in a bin/)."""
    folder = os.path.dirname(os.path.realpath(path))
    return os.path.dirname(folder) if os.path.basename(folder) == "bin" else folder


def probe_node(path: str) -> Runtime | None:
    out = _run([path, "--version"])
    if not out or not re.fullmatch(r"v\d+\.\d+\.\d+\S*", out.strip()):
        return None
    real = os.path.realpath(path)
    try:
        prefix = _checked(real, node_prefix(real))
        _reachable(real)
    except UnsafeRuntime as exc:
        log.warning("node at %s skipped: %s", path, exc)
        return None
    return Runtime("javascript", out.strip()[1:], real, prefix=prefix)


def install_prefix(executable: str, language: str) -> str:
    """The real install prefix of a host runtime (for the sandbox's binds): from its
    probe at discovery, else probed now. Raises UnsafeRuntime (a ValueError)."""
    known = _prefixes.get(os.path.realpath(executable))
    if known is not None:
        return known
    if language != "python":
        return _checked(executable, node_prefix(executable))
    probed = _probe_python(executable)
    if probed is None:
        raise UnsafeRuntime(f"{executable}: does not answer as a Python")
    return probed[2]


def _candidates(names: list[str]) -> list[str]:
    found: list[str] = []
    for name in names:
        on_path = shutil.which(name)
        if on_path:
            found.append(on_path)
        for folder in USUAL_BIN_DIRS:
            p = os.path.join(folder, name)
            if os.access(p, os.X_OK):
                found.append(p)
    return found


def _rank(r: Runtime) -> tuple[tuple[int, ...], bool, tuple[int, ...]]:
    return (r.version_tuple[:2], r.path.startswith("/usr/"), r.version_tuple)


def _dedupe(runtimes: list[Runtime]) -> list[Runtime]:
    seen: dict[str, Runtime] = {}
    for r in runtimes:
        seen.setdefault(os.path.realpath(r.path), r)
    return list(seen.values())


def _with_default(runtimes: list[Runtime]) -> list[Runtime]:
    if not runtimes:
        return []
    best = max(runtimes, key=_rank)
    ordered = sorted(runtimes, key=_rank, reverse=True)
    return [Runtime(r.language, r.version, r.path, r is best, r.prefix) for r in ordered]


def discover_runtimes(config: Config) -> Catalogue:
    """Probe the host (blocking, about 50 ms per candidate)."""
    py_paths = [str(p) for p in config.runtimes_python]
    node_paths = [str(p) for p in config.runtimes_node]
    if config.runtimes_discover:
        py_paths += _candidates([f"python3.{m}" for m in PYTHON_MINORS] + ["python3"])
        node_paths += _candidates(["node", "nodejs"])
    with ThreadPoolExecutor(8) as pool:  # each probe is a process start: overlap them
        pythons = [r for r in pool.map(probe_python, dict.fromkeys(py_paths)) if r]
        nodes = [r for r in pool.map(probe_node, dict.fromkeys(node_paths)) if r]
    return Catalogue(tuple(_with_default(_dedupe(pythons)) + _with_default(_dedupe(nodes))))
