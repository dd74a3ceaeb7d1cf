"""Folders for tool wrappers (config build.uv) that the build user can run.

Builds run as the unprivileged build user in a mount namespace that covers /tmp
(daemon/build_user.py), and pytest's tmp folders are 0700: a wrapper must live
elsewhere, in a folder anyone may enter.
"""

from __future__ import annotations

import shutil
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
