"""Every module of daemon/ and sandbox/ imports alone in a fresh interpreter, so an
import cycle shows up whatever module a user (or a test) happens to import first.

A fresh interpreter per module cost minutes on a loaded 2-core host (each paid for
starting Python and importing aiohttp, cryptography and the like again), so one fresh
interpreter imports only the third-party dependencies, then forks a child per module:
each child starts with none of daemon/ or sandbox/ imported, which is all a cycle
among them depends on."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import daemon
import sandbox
from tests.helpers import REPO

# Top-level third-party packages only (never a submodule such as aiohttp.web, which a
# module might then use without importing it): what pyproject.toml depends on.
DEPENDENCIES = (
    "aiohttp", "httptools", "uvloop", "psutil", "prctl", "orjson", "argon2", "apsw",
    "packaging", "cryptography", "prometheus_client", "jinja2", "aiohttp_jinja2",
)  # fmt: skip

CHILDREN_AT_ONCE = 4
# Run with `python -c`: preload, then one forked child per module named on stdin; a
# JSON line per module on stdout: its name, the child's exit status, the traceback.
_FORK_PER_MODULE = """
import importlib, json, os, sys, tempfile, traceback
for dep in sys.argv[2:]:
    try:
        importlib.import_module(dep)
    except ImportError:
        pass  # the modules that need it fail in their child, with the reason
ours = [m for m in sys.modules if m.split(".")[0] in ("daemon", "sandbox", "runtimes")]
assert not ours, ours
running = {}  # pid: (module, the file its traceback goes to)

def reap():
    pid, status = os.wait()
    module, err = running.pop(pid)
    err.seek(0)
    text = err.read().decode(errors="replace")
    print(json.dumps({"module": module, "status": status, "err": text}), flush=True)

for module in sys.stdin.read().split():
    while len(running) >= int(sys.argv[1]):
        reap()
    err = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)  # stdout carries the results: what an import prints goes to stderr
        code = 0
        try:
            importlib.import_module(module)
        except BaseException:
            code = 1
            err.write(traceback.format_exc().encode())
            err.flush()
        os._exit(code)
    running[pid] = (module, err)
while running:
    reap()
"""


def _modules() -> list[str]:
    found = []
    for package in (daemon, sandbox):
        prefix = package.__name__ + "."
        for info in pkgutil.walk_packages(package.__path__, prefix):
            if not info.name.endswith("__main__"):
                found.append(info.name)
    return found


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    modules = _modules()
    assert len(modules) > 80, modules  # the walk found the packages
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_PER_MODULE, str(CHILDREN_AT_ONCE), *DEPENDENCIES],
        input="\n".join(modules), cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["module"] for r in results) == sorted(modules), proc.stderr
    failures = [r for r in results if r["status"] != 0]
    assert not failures, "\n\n".join(f"{r['module']}:\n{r['err']}" for r in failures)
