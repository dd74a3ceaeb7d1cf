"""Folders for tool wrappers (config build.uv) that the build user can run.

Builds run as the unprivileged build user in a mount namespace that covers /tmp
(daemon/build/build_user.py), and pytest's tmp folders are 0700: a wrapper must live
elsewhere, in a folder anyone may enter, and run an interpreter and a uv that lie
outside /tmp too (a checkout, and so its .venv, may be below /tmp).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tool_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="scriptd-test-tools-", dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_tool(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def build_python() -> str:
    """An interpreter the build user can run wherever the checkout lies (the venv's
    python may sit below /tmp, hidden from builds): the host's default Python."""
    from daemon.build.catalogue import discover_runtimes
    from daemon.config.daemon_config import Config

    runtime = discover_runtimes(Config()).pick("python", None)
    assert runtime is not None, "no Python the build user can run"
    return runtime.path


def copy_uv(folder: Path) -> str:
    """The real uv, copied where the build user can run it (see build_python)."""
    uv = folder / "uv-real"
    if not uv.exists():  # never overwrite a copy a build may be running
        shutil.copy2(Path(sys.executable).parent / "uv", uv)
    return str(uv)
