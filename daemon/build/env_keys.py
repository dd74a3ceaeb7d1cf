"""The cache keys of built environments, and what a project's dependency files ask.

An environment is keyed by the interpreter (path and exact version), the dependency
files and the build options (daemon/build/builder.py keeps it under
`<cache>/envs/<key>`); the base environment of code steps by the interpreter and the
package list. Blocking: these read small files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from daemon.build.catalogue import Runtime
from daemon.config.daemon_config import Config

BUILD_FORMAT = 1  # bump when the layout of a built environment changes
NODE_DEP_FILES = ("package.json", "package-lock.json", "npm-shrinkwrap.json")


def dependency_files(language: str) -> tuple[str, ...]:
    return ("requirements.txt",) if language == "python" else NODE_DEP_FILES


def env_key(
    config: Config, language: str, runtime: Runtime, src: Path, base: tuple[str, ...] = ()
) -> str:
    """The cache key of the environment `src` needs, with the `base` packages installed
    beside its requirements (a code step's; blocking: reads small files)."""
    h = hashlib.sha256()
    options = [BUILD_FORMAT, config.build_allow_source_builds, config.build_npm_ignore_scripts]
    what: list[object] = [language, runtime.path, runtime.version, options]
    if base:  # only then: the keys of environments built before base packages stay valid
        what.append(sorted(base))
    h.update(json.dumps(what).encode())
    for name in dependency_files(language):
        path = src / name
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes() if path.is_file() else b"<absent>")
        h.update(b"\0")
    return h.hexdigest()[:32]


def base_env_key(config: Config, runtime: Runtime, base: tuple[str, ...]) -> str:
    """The key of the base environment of code steps for `runtime`: the interpreter,
    the package list (order aside) and the build options."""
    what = ["base", BUILD_FORMAT, config.build_allow_source_builds, runtime.path,
            runtime.version, sorted(base)]  # fmt: skip
    return "base-" + hashlib.sha256(json.dumps(what).encode()).hexdigest()[:27]


def has_requirements(src: Path) -> bool:
    req = src / "requirements.txt"
    if not req.is_file():
        return False
    lines = (ln.split("#", 1)[0].strip() for ln in req.read_text(errors="replace").splitlines())
    return any(lines)


def has_node_dependencies(src: Path) -> bool:
    try:
        doc = json.loads((src / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and bool(doc.get("dependencies"))
