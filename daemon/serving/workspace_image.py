"""Each script's WORKSPACE_DIR is a filesystem of its own, so the kernel bounds it.

    <state>/scripts/<id>/workspace.img   a sparse file holding an ext4 filesystem
    <state>/scripts/<id>/workspace       where it is mounted (through a loop device)

The image's size is the profile's `workspace_bytes`: a write past it fails inside
the script with ENOSPC, and the host's disk (which holds the store) is untouched.
It is mounted nodev,nosuid,noexec: the runtimes execute only what lies in /usr,
the version's venv and node_modules (read-only binds); the workspace is data.
The loop device is set up with autoclear, so unmounting also detaches it.

The image outlives undeploy (which unmounts it), redeploy and daemon restarts;
delete unmounts it and removes the script's folder with the image. Shutdown
unmounts every workspace (`unmount_all`). A mount left behind by a daemon
killed with SIGKILL is found again (`os.path.ismount`) and reused; mounts below
the state dir of scripts that no longer serve are unmounted at start
(`unmount_stale`), and a deploy that fails with nothing serving unmounts too.

A state dir from before images holds a plain `workspace` folder: the first mount
moves it aside (`workspace.migrating`), copies it into the new image, then
removes it; an interrupted migration is redone from the folder left aside.
Every function here blocks: call it off the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "WorkspaceError",
    "ensure_mounted",
    "mounts_below",
    "read_view",
    "release",
    "unmount",
    "unmount_all",
    "unmount_stale",
    "usage",
]

IMAGE_NAME = "workspace.img"
MIGRATING_NAME = "workspace.migrating"
MOUNT_OPTIONS = "loop,nodev,nosuid,noexec"
LOOP_RACE_ATTEMPTS = 5  # mount's loop-device pick racing another process's
READ_VIEW_NAME = "workspace.backup"  # where a backup mounts an unmounted image read-only
# linux/fs.h: _IOWR('X', 119, int) and _IOWR('X', 120, int)
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878
# lazy init: mkfs writes a few MB instead of zeroing inode tables (the kernel does it
# in the background); -m 0: no blocks reserved for root, the script gets them all.
MKFS_OPTIONS = ("-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class WorkspaceError(Exception):
    """A workspace could not be created, mounted, migrated or removed."""


def image_path(workspace: Path) -> Path:
    return workspace.with_name(IMAGE_NAME)


def ensure_mounted(workspace: Path, size_bytes: int) -> None:
    """The script's workspace mounted at `workspace`, created at `size_bytes` when new
    and grown to it when smaller (shrinking waits for an unmounted image).

    Without root (scriptd --dev-no-sandbox, which root may not use) nothing can be
    mounted: the workspace is a plain folder there, with no bound."""
    if os.geteuid() != 0:
        workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
        return
    with _lock_for(workspace):
        image = image_path(workspace)
        migrating = workspace.with_name(MIGRATING_NAME)
        if not image.exists():
            if _plain_folder(workspace):
                os.rename(workspace, migrating)
            _create_image(image, size_bytes)
        if os.path.ismount(workspace):
            _thaw(workspace)  # a backup cut short by a crash must not leave it frozen
            _grow(image, workspace, size_bytes)
        else:
            _resize_unmounted(image, size_bytes)
            workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
            _mount_loop(image, workspace, MOUNT_OPTIONS)
            with contextlib.suppress(OSError):
                (workspace / "lost+found").rmdir()  # e2fsck makes it again when it needs it
            os.chmod(workspace, 0o700)  # the launcher hands it to the script's uid
        if migrating.is_dir():
            _migrate(migrating, workspace)


@contextlib.contextmanager
def read_view(workspace: Path) -> Iterator[Path | None]:
    """A folder with the workspace's files as of now, unchanging while the block runs
    (a backup reads it): a mounted workspace is frozen (FIFREEZE: the script's writes
    wait until the block ends), an unmounted image is mounted read-only beside it, a
    plain folder (no root) is itself. None when the script has no workspace yet. The
    workspace's lock is held: no replica mounts or unmounts it meanwhile."""
    with _lock_for(workspace):
        image = image_path(workspace)
        if os.path.ismount(workspace):
            with _frozen(workspace):
                yield workspace
        elif image.exists():
            view = workspace.with_name(READ_VIEW_NAME)
            view.mkdir(mode=0o700, exist_ok=True)
            options = "loop,ro,noload,nodev,nosuid,noexec"
            _mount_loop(image, view, options)
            try:
                yield view
            finally:
                _unmount(view)
                view.rmdir()
        else:
            yield workspace if _plain_folder(workspace) else None


@contextlib.contextmanager
def _frozen(mountpoint: Path) -> Iterator[None]:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
        try:
            yield
        finally:
            fcntl.ioctl(fd, FITHAW, 0)
    finally:
        os.close(fd)


def _thaw(mountpoint: Path) -> None:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FITHAW, 0)
    except OSError:
        pass  # EINVAL: it was not frozen
    finally:
        os.close(fd)


def unmount(workspace: Path) -> None:
    """Unmount the workspace (and so detach its loop device); nothing if not mounted."""
    with _lock_for(workspace):
        _unmount(workspace)


def usage(workspace: Path) -> int | None:
    """Bytes used in a mounted workspace; None when it is not mounted."""
    if not os.path.ismount(workspace):
        return None
    st = os.statvfs(workspace)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def mounts_below(folder: Path) -> list[Path]:
    """Mount points strictly below `folder` (resolved), deepest first."""
    top = os.path.realpath(folder) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [_unescape(line.split()[4]) for line in f if len(line.split()) > 4]
    below = [Path(p) for p in points if p.startswith(top)]
    return sorted(set(below), key=lambda p: len(p.parts), reverse=True)


def unmount_stale(scripts_dir: Path, serving: set[Path]) -> list[Path]:
    """At start: unmount whatever is mounted below the state dir's scripts folder but
    is not the workspace of a script that serves (a crash during a delete, an
    undeploy or a failed deploy left it); the list."""
    keep = {Path(os.path.realpath(p)) for p in serving}
    stale = [p for p in mounts_below(scripts_dir) if p not in keep]
    for point in stale:
        log.warning("unmounting %s: no live script's workspace", point)
        unmount(point)
    return stale


def release(workspace: Path) -> None:
    """Unmount a workspace no replica uses any more (undeploy, a failed deploy); a
    failure is logged, not raised: it only stays mounted until the daemon stops."""
    try:
        unmount(workspace)
    except WorkspaceError as exc:
        log.warning("workspace %s stays mounted: %s", workspace, exc)


def unmount_all(scripts_dir: Path) -> None:
    """At shutdown, once no replica runs: every workspace of this state dir."""
    for point in mounts_below(scripts_dir):
        unmount(point)


# --- the steps ---------------------------------------------------------------------


def _lock_for(workspace: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(workspace), threading.Lock())


def _plain_folder(workspace: Path) -> bool:
    return workspace.is_dir() and not workspace.is_symlink() and not os.path.ismount(workspace)


def _create_image(image: Path, size_bytes: int) -> None:
    """A sparse file with an empty ext4 in it; renamed in only once complete."""
    tmp = image.with_name(image.name + ".tmp")
    image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size_bytes)
    finally:
        os.close(fd)
    try:
        _run(["mkfs.ext4", *MKFS_OPTIONS, str(tmp)])
    except WorkspaceError:
        tmp.unlink(missing_ok=True)
        raise
    os.rename(tmp, image)


def _grow(image: Path, workspace: Path, size_bytes: int) -> None:
    """Grow a mounted workspace online (the profile grew on a redeploy)."""
    if image.stat().st_size >= size_bytes:
        return
    device = _run(["losetup", "--noheadings", "-O", "NAME", "-j", str(image)]).split()
    if not device:
        raise WorkspaceError(f"no loop device holds {image}")
    old_size = image.stat().st_size
    os.truncate(image, size_bytes)
    try:
        _run(["losetup", "--set-capacity", device[0]])
        _run(["resize2fs", device[0]])
    except WorkspaceError as exc:
        # An online resize needs CAP_SYS_RESOURCE; without it the image grows at its
        # next mount (after an undeploy, or a daemon restart), unmounted.
        os.truncate(image, old_size)
        _run(["losetup", "--set-capacity", device[0]])
        log.warning("workspace %s grows at its next mount: %s", workspace, exc)
        return
    log.info("workspace %s grown to %d bytes", workspace, size_bytes)


def _resize_unmounted(image: Path, size_bytes: int) -> None:
    """Bring an unmounted image to `size_bytes`; a shrink that the data does not
    allow keeps the larger size (logged): nothing of the script's data is lost."""
    current = image.stat().st_size
    if current == size_bytes:
        return
    if current < size_bytes:
        os.truncate(image, size_bytes)
        _run(["e2fsck", "-f", "-p", str(image)], ok_codes=(0, 1))
        _run(["resize2fs", str(image)])
        return
    try:
        _run(["e2fsck", "-f", "-p", str(image)], ok_codes=(0, 1))
        _run(["resize2fs", str(image), f"{size_bytes // 1024}K"])
    except WorkspaceError as exc:
        log.warning("workspace %s keeps %d bytes (cannot shrink: %s)", image, current, exc)
        return
    os.truncate(image, size_bytes)


def _migrate(old: Path, workspace: Path) -> None:
    """Copy a plain workspace folder into the mounted image, then remove the folder.
    cp -a keeps owners, modes and symlinks (never followed) of the script's files."""
    try:
        _run(["cp", "-a", "--", f"{old}/.", f"{workspace}/"])
    except WorkspaceError as exc:
        raise WorkspaceError(
            f"the workspace folder {old} does not fit its image (workspace_bytes of the"
            f" profile): {exc}; raise workspace_bytes, or empty the folder"
        ) from None
    shutil.rmtree(old)
    log.info("workspace %s migrated into its image", workspace)


def _unmount(workspace: Path) -> None:
    if not os.path.ismount(workspace):
        return
    _thaw(workspace)  # a frozen filesystem would hang its unmount
    try:
        _run(["umount", str(workspace)])
    except WorkspaceError:
        # Busy: a process of a replica that is being killed. Detach now; the kernel
        # releases the filesystem (and autoclear the loop device) once it is gone.
        _run(["umount", "--lazy", str(workspace)])


def _mount_loop(image: Path, mountpoint: Path, options: str) -> None:
    """Mount `image` through a free loop device. mount(8) picks a device and then
    attaches it; once, with other processes mounting images at the same moment, it
    failed with "already mounted or mount point busy" while nothing was mounted here
    (a device taken, or not yet detached, between the pick and the attach). That
    answer is retried a few times; any other failure is not."""
    argv = ["mount", "-t", "ext4", "-o", options, str(image), str(mountpoint)]
    for attempt in range(LOOP_RACE_ATTEMPTS):
        try:
            _run(argv)
            return
        except WorkspaceError as exc:
            lost_race = "already mounted or mount point busy" in str(exc)
            if not lost_race or os.path.ismount(mountpoint) or attempt == LOOP_RACE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))  # let the other attach finish


def _run(argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> str:
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkspaceError(f"{argv[0]} failed: {exc}") from None
    if done.returncode not in ok_codes:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise WorkspaceError(f"{' '.join(argv)}: exit {done.returncode}: {' '.join(detail)}")
    return done.stdout


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field
