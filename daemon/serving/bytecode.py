"""Bytecode for what replicas import read-only: the runtimes and a version's source.

Written on the host by a trusted host interpreter (never a script's venv python, which
a wheel could have replaced), with a compile-only script: nothing of the version runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from pathlib import Path

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
