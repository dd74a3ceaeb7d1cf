"""The supervisor under -S (as the daemon starts it): the venv's site-packages are on
sys.path without site, and site still runs when the venv needs more (a .pth file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtimes.client import Supervisor
from tests.runtimes.projects import write_project

UV = Path(sys.executable).parent / "uv"
MAIN = """
import sys

import fakepkg


def where():
    return [fakepkg.VALUE, sys.prefix, "site" in sys.modules]


def leave():
    exit(5)  # a builtin that site adds: it must be there under -S too
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("site") / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(path)], check=True)
    return path


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _call(venv: Path, tmp_path: Path, function: str) -> dict:
    source = write_project(tmp_path / "src", {"main.py": MAIN})
    python = str(venv / "bin" / "python")
    sup = Supervisor("python", source, python=python, flags=("-I", "-S"))
    try:
        sup.start()
        return sup.worker().call(function)
    finally:
        sup.close()


def test_site_packages_without_site(venv: Path, tmp_path: Path) -> None:
    (_site_packages(venv) / "fakepkg.py").write_text("VALUE = 42\n")
    value = _call(venv, tmp_path, "where")["value"]
    assert value == [42, str(venv), False]
    error = _call(venv, tmp_path, "leave")["error"]
    assert error["type"] == "SystemExit"


def test_a_pth_file_makes_site_run(venv: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "fakepkg.py").write_text("VALUE = 7\n")
    (_site_packages(venv) / "fakepkg.py").unlink(missing_ok=True)
    (_site_packages(venv) / "extra.pth").write_text(f"{extra}\n")
    value = _call(venv, tmp_path, "where")["value"]
    assert value == [7, str(venv), True]
