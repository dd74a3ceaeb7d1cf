"""The runtime catalogue: which Python interpreters and Node binaries this host has.

`discover_runtimes(config)` probes candidates (pinned paths from the config, then
`python3.X` / `node` on PATH and in the usual install folders) by running each one
once and asking for its exact version and real executable path. Candidates that
fail to run (pyenv shims of versions that are not selected, broken links) are
skipped. Two names for one binary count once. Blocking: call it off the event loop.

The default of a language is the newest major.minor; between equal ones, the one
under /usr wins (it is what a sandbox can bind without reaching into a home dir),
then the newest patch level.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from daemon.config import Config

PYTHON_MINORS = range(8, 20)
MIN_PYTHON = (3, 8)
USUAL_BIN_DIRS = ("/usr/bin", "/usr/local/bin", "/opt/bin")
PROBE_TIMEOUT_S = 10
PY_PROBE = "import sys, platform; print(platform.python_version()); print(sys.executable)"


@dataclass(frozen=True)
class Runtime:
    language: str  # "python" | "javascript"
    version: str  # exact, e.g. "3.11.7" or "20.19.0"
    path: str  # the real executable
    default: bool = False

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


def probe_python(path: str) -> Runtime | None:
    out = _run([path, "-I", "-c", PY_PROBE])
    if not out or len(out.split("\n")) < 2:
        return None
    version, executable = out.split("\n")[:2]
    if not re.fullmatch(r"3\.\d+\.\d+\S*", version):
        return None
    runtime = Runtime("python", version, executable)
    return runtime if runtime.version_tuple[:2] >= MIN_PYTHON else None


def probe_node(path: str) -> Runtime | None:
    out = _run([path, "--version"])
    if not out or not re.fullmatch(r"v\d+\.\d+\.\d+\S*", out.strip()):
        return None
    return Runtime("javascript", out.strip()[1:], os.path.realpath(path))


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
    return [Runtime(r.language, r.version, r.path, r is best) for r in ordered]


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
