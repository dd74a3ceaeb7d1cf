"""Every module of daemon/ and sandbox/ imports alone in a fresh interpreter, so an
import cycle shows up whatever module a user (or a test) happens to import first."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import daemon
import sandbox
from tests.helpers import REPO


def _modules() -> list[str]:
    found = []
    for package in (daemon, sandbox):
        prefix = package.__name__ + "."
        for info in pkgutil.walk_packages(package.__path__, prefix):
            if not info.name.endswith("__main__"):
                found.append(info.name)
    return found


def _import_alone(module: str) -> tuple[str, int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return module, proc.returncode, proc.stderr


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    modules = _modules()
    assert len(modules) > 80, modules  # the walk found the packages
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [r for r in pool.map(_import_alone, modules) if r[1] != 0]
    assert not failures, "\n\n".join(f"{m}:\n{err}" for m, _, err in failures)
