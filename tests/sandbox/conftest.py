"""Fixtures for the sandbox battery: a cgroup root per test session and a `run` helper."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox import Bind, CgroupRoot, Exit, SandboxSpec, start
from tests.conftest import require, require_root

# The interpreter running the tests. The sandbox binds nothing of its caller's own
# environment, so a test that runs it inside binds its install prefix (when outside /usr).
PY = os.path.realpath(sys.executable)
PY_PREFIX = os.path.realpath(sys.base_prefix)
PY_BINDS = () if PY_PREFIX.startswith("/usr/") else (Bind(PY_PREFIX, PY_PREFIX),)
NODE = shutil.which("node") or "/usr/bin/node"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
_names = itertools.count()


@dataclass
class Result:
    exit: Exit
    out: str
    err: str
    timed_out: bool


def unique_name() -> str:
    return f"t{os.getpid()}-{next(_names)}"


@pytest.fixture(scope="session")
def cgroot() -> Iterator[CgroupRoot]:
    require_root()
    require(os.path.exists("/proc/self/ns/pid"), "needs namespaces")
    # Not "scriptd-test-<number>": the daemons of tests/helpers.py name theirs after a port.
    root = CgroupRoot.create(f"scriptd-test-sandbox-{os.getpid()}")
    yield root
    root.cleanup()


def run(
    root: CgroupRoot, argv: tuple[str, ...] | list[str], timeout: float = 30, **fields: Any
) -> Result:
    """Run argv in a sandbox and wait, killing it after `timeout` seconds."""
    fields.setdefault("env", ENV)
    fields.setdefault("name", unique_name())
    fields["binds"] = (*PY_BINDS, *fields.get("binds", ()))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        spec = SandboxSpec(argv=tuple(argv), stdout=out.fileno(), stderr=err.fileno(), **fields)
        box = start(spec, root)
        timed_out = False
        try:
            ex = box.wait_blocking(timeout)
            if ex is None:
                timed_out = True
                box.kill()
                ex = box.wait_blocking()
        finally:
            box.cleanup()
        assert ex is not None
        out.seek(0)
        err.seek(0)
        return Result(
            ex, out.read().decode(errors="replace"), err.read().decode(errors="replace"), timed_out
        )


def run_py(root: CgroupRoot, code: str, **fields: Any) -> Result:
    return run(root, (PY, "-I", "-c", textwrap.dedent(code)), **fields)
