"""The workspace image on its own (real mkfs.ext4, loop devices and mounts; root only):
bounded writes, reuse of a mounted image, resizing, migration of a plain folder,
and unmounting what no live script owns."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daemon.serving.workspace_image import (
    FIFREEZE,
    ensure_mounted,
    mounts_below,
    read_view,
    unmount,
    unmount_all,
    unmount_stale,
    usage,
)
from tests.conftest import require_root

MIB = 1 << 20


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    require_root()
    return tmp_path / "scripts"


def fs_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def test_a_write_past_the_size_gets_enospc(scripts: Path) -> None:
    ws = scripts / "1" / "workspace"
    ensure_mounted(ws, 32 * MIB)
    assert os.path.ismount(ws) and os.listdir(ws) == []  # no lost+found for the script
    assert (os.stat(ws).st_mode & 0o777) == 0o700
    with pytest.raises(OSError) as exc, open(ws / "big", "wb") as f:
        for _ in range(64):
            f.write(b"x" * MIB)
        os.fsync(f.fileno())
    assert exc.value.errno == errno.ENOSPC
    assert (usage(ws) or 0) > 16 * MIB


def test_a_mounted_workspace_is_reused_and_data_survives_unmounting(scripts: Path) -> None:
    ws = scripts / "2" / "workspace"
    ensure_mounted(ws, 32 * MIB)
    (ws / "note").write_text("kept")
    ensure_mounted(ws, 32 * MIB)  # the launcher's call at every replica start
    assert mounts_below(scripts) == [ws]
    unmount(ws)
    assert not os.path.ismount(ws) and usage(ws) is None
    ensure_mounted(ws, 32 * MIB)
    assert (ws / "note").read_text() == "kept"


def test_resizing_applies_when_the_data_allows_it(scripts: Path) -> None:
    ws = scripts / "3" / "workspace"
    ensure_mounted(ws, 32 * MIB)
    (ws / "data").write_bytes(b"x" * (20 * MIB))
    unmount(ws)
    ensure_mounted(ws, 64 * MIB)  # grown while unmounted
    assert fs_bytes(ws) > 48 * MIB
    unmount(ws)
    ensure_mounted(ws, 16 * MIB)  # 20 MiB of data do not fit: the size is kept
    assert fs_bytes(ws) > 48 * MIB and (ws / "data").stat().st_size == 20 * MIB
    (ws / "data").unlink()
    unmount(ws)
    ensure_mounted(ws, 24 * MIB)  # now they do
    assert fs_bytes(ws) < 24 * MIB


def test_a_plain_folder_is_copied_into_the_image(scripts: Path) -> None:
    ws = scripts / "4" / "workspace"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "file").write_text("old")
    os.symlink("/etc/passwd", ws / "link")  # copied as a link, never followed
    os.chown(ws / "sub" / "file", 200_004, 200_004)
    ensure_mounted(ws, 32 * MIB)
    assert os.path.ismount(ws)
    assert (ws / "sub" / "file").read_text() == "old"
    assert (ws / "sub" / "file").stat().st_uid == 200_004
    assert os.readlink(ws / "link") == "/etc/passwd"
    assert not ws.with_name("workspace.migrating").exists()


def test_an_interrupted_migration_is_finished(scripts: Path) -> None:
    ws = scripts / "5" / "workspace"
    ensure_mounted(ws, 32 * MIB)
    unmount(ws)
    left = ws.with_name("workspace.migrating")  # a crash after the image was made
    left.mkdir()
    (left / "file").write_text("moved")
    ensure_mounted(ws, 32 * MIB)
    assert (ws / "file").read_text() == "moved" and not left.exists()


def test_only_mounts_of_scripts_that_are_gone_are_stale(scripts: Path) -> None:
    live, gone = scripts / "6" / "workspace", scripts / "7" / "workspace"
    ensure_mounted(live, 32 * MIB)
    ensure_mounted(gone, 32 * MIB)
    assert unmount_stale(scripts, {live}) == [gone]
    assert mounts_below(scripts) == [live]
    unmount_all(scripts)
    assert mounts_below(scripts) == []


def test_nothing_in_a_workspace_can_be_executed(scripts: Path) -> None:
    """noexec: the runtimes run from /usr, the venv and node_modules; the workspace
    holds data only."""
    ws = scripts / "8" / "workspace"
    ensure_mounted(ws, 32 * MIB)
    tool = ws / "tool"
    tool.write_text("#!/bin/sh\necho ran\n")
    tool.chmod(0o755)
    with pytest.raises(PermissionError):
        subprocess.run([str(tool)], check=False)


def test_a_backup_reads_a_frozen_or_read_only_view(scripts: Path) -> None:
    ws = scripts / "5" / "workspace"
    ensure_mounted(ws, 32 * MIB)
    (ws / "note").write_text("as of the backup")
    with read_view(ws) as view:  # mounted: frozen in place
        assert view == ws and (view / "note").read_text() == "as of the backup"
    (ws / "note").write_text("written after")  # thawed: writes go on
    unmount(ws)
    with read_view(ws) as view:  # not mounted: the image read-only beside it
        assert view is not None and view != ws and (view / "note").read_text() == "written after"
        with pytest.raises(OSError) as exc:
            (view / "new").write_text("refused")
        assert exc.value.errno == errno.EROFS
    assert mounts_below(scripts) == []


def test_a_workspace_left_frozen_is_thawed_on_reuse_and_unmount(scripts: Path) -> None:
    ws = scripts / "6" / "workspace"
    ensure_mounted(ws, 32 * MIB)
    freeze(ws)  # as a backup cut short by a crash leaves it
    ensure_mounted(ws, 32 * MIB)
    (ws / "note").write_text("writes work again")
    freeze(ws)
    unmount(ws)  # would hang on a frozen filesystem
    assert not os.path.ismount(ws)


def test_workspaces_mounted_at_the_same_moment_each_get_a_loop_device(scripts: Path) -> None:
    # Two daemons on one host may mount workspaces at the same moment: each mount
    # must get a loop device of its own (mount(8) picks one, then attaches it).
    workspaces = [scripts / f"r{n}" / "workspace" for n in range(6)]
    start = threading.Barrier(len(workspaces))

    def mount(ws: Path) -> None:
        start.wait(timeout=30)
        ensure_mounted(ws, 16 * MIB)

    with ThreadPoolExecutor(len(workspaces)) as pool:
        list(pool.map(mount, workspaces))
    try:
        assert all(os.path.ismount(ws) for ws in workspaces)
    finally:
        for ws in workspaces:
            unmount(ws)


def freeze(mountpoint: Path) -> None:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
    finally:
        os.close(fd)
