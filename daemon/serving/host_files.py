"""The files of a script that its replicas use on the host: the workspace (WORKSPACE_DIR,
prepared before every replica start) and the folder of its replica logs (written by
daemon/serving/replica_logs.py).

    <log_dir>/<script id>/<replica name>.log[.N]

Logs go by script id, so a new script of a deleted one's name starts afresh; ids may be
reused, so the lifecycle removes a script's logs when it deletes the script.
Every function here blocks: call it off the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["prepare_workspace", "remove_script_logs", "script_log_dir"]


def script_log_dir(log_dir: Path, script_id: int) -> Path:
    """A script's replica logs, by id: a new script of the same name starts afresh."""
    return log_dir / str(script_id)


def remove_script_logs(log_dir: Path, script_id: int) -> None:
    """Blocking: remove a deleted script's replica logs (ids may be reused)."""
    shutil.rmtree(script_log_dir(log_dir, script_id), ignore_errors=True)


def prepare_workspace(path: Path, uid: int) -> None:
    """Blocking: the script's workspace, mode 0700 and owned by its uid throughout.

    The sandboxed script writes in there (and may plant symlinks while we walk), so
    the walk goes by file descriptors and never follows a symlink."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
        if (st.st_uid, st.st_gid) != (uid, uid):
            _chown_tree(fd, uid)
            os.fchown(fd, uid, uid)  # last: an interrupted walk is redone next time
    finally:
        os.close(fd)


def _chown_tree(top_fd: int, uid: int) -> None:
    # fwalk with follow_symlinks=False enters a directory only if the one it opened is
    # the one it lstat'ed, so a name swapped for a symlink is never followed.
    for _, dirs, files, dir_fd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if (st.st_uid, st.st_gid) == (uid, uid):
                    continue
                if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                    # A hard link may alias a file outside the workspace: leave it.
                    log.warning("workspace: %s has %d links, owner kept", name, st.st_nlink)
                    continue
                os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)
