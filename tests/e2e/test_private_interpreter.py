"""A daemon running on an interpreter outside /usr (a venv below a private 0700 folder):
its sandboxes see nothing of that folder, nor of any other path of the daemon's own
environment; a Python script's supervisor runs on the script's venv python and a Node
script's on a Python of the runtime catalogue."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.helpers import TINY_PROFILES, AdminClient, DaemonProcess, create_key, make_zip

UV = Path(sys.executable).parent / "uv"
PY_MAIN = """\
import os


def seen(paths):
    return {p: os.path.exists(p) for p in paths}


def supervisor():
    with open("/proc/1/cmdline", "rb") as f:
        return f.read().split(b"\\0")[0].decode()


def top():
    return sorted(os.listdir("/"))
"""
JS_MAIN = """\
const fs = require("fs");
function seen(p) { return Object.fromEntries(p.paths.map((x) => [x, fs.existsSync(x)])); }
function supervisor() { return fs.readFileSync("/proc/1/cmdline", "latin1").split("\\0")[0]; }
module.exports = { seen, supervisor };
"""


def private_venv(root: Path) -> Path:
    """A venv below a 0700 folder whose python finds the test run's packages."""
    private = root / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    venv = private / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    lib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    ours = site.getsitepackages()[0]
    (lib / "site-packages" / "scriptd_test.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n"
    )
    return venv


def daemon_paths(python: Path) -> list[str]:
    """Every path of the daemon's own environment, as that interpreter reports them,
    but /usr and below (the sandboxes' system, where a distribution's Python lives)."""
    code = "import sys, site; print('\\n'.join({sys.prefix, sys.base_prefix, *sys.path}))"
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True,
                         cwd="/", check=True).stdout  # fmt: skip
    paths = {os.path.realpath(p) for p in out.split("\n") if p.startswith("/")}
    return sorted(
        p for p in paths if p != "/usr" and not p.startswith("/usr/") and os.path.exists(p)
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    root = tmp_path_factory.mktemp("private-interpreter")
    venv = private_venv(root)
    config = {**TINY_PROFILES, "build": {"uv": str(UV)}}
    (root / "scriptd").mkdir()
    daemon = DaemonProcess(root / "scriptd", config, build_cache)
    daemon.python = str(venv / "bin" / "python")
    daemon.start(timeout=60)
    try:
        yield daemon
    finally:
        daemon.stop()


def deploy(admin: AdminClient, name: str, language: str, files: dict[str, str]) -> None:
    admin.create(name, make_zip(files), language=language, deploy=True)
    assert admin.wait_status(name)["status"] == "Deployed"


def test_sandboxes_see_nothing_of_the_daemons_environment(daemon: DaemonProcess) -> None:
    private = Path(daemon.python).parents[2]
    hidden = [str(private), *daemon_paths(Path(daemon.python))]
    assert str(private) in hidden and len(hidden) > 1
    admin = daemon.client()
    deploy(admin, "py-private", "python", {"main.py": PY_MAIN})
    deploy(admin, "js-private", "javascript", {"main.js": JS_MAIN})
    for script in ("py-private", "js-private"):
        gw = daemon.gateway(create_key(admin, script))
        r = gw.call(script, "seen", {"paths": hidden})
        assert r.status == 200, r.body
        assert not any(r.json()["result"].values()), (script, r.json())
        first = gw.call(script, "supervisor").json()["result"]
        assert first != daemon.python and not first.startswith(str(private)), first
        if script == "py-private":
            assert first == "/venv/bin/python"
            assert "root" not in gw.call(script, "top").json()["result"]
        else:
            assert first.startswith("/usr/"), first  # the catalogue's Python
        gw.close()
