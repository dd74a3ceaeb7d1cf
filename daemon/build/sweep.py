"""Bounds on what builds leave on disk: built environments no version needs, temp
folders of builds a crash interrupted, and the tools' download caches.

    <cache>/envs/<key>            a built environment (daemon/build/builder.py)
    <cache>/envs/<key>.tmp-<pid>  a build in progress, or one a crash left
    <cache>/tools/uv, tools/npm   uv's and npm's caches (daemon/build/build_user.py)

An environment is kept while a version in the store refers to it, and for an
hour after it was last built or reused (its marker's mtime): a cache folder may
be shared by several daemons (build.cache_dir), and a build that just finished
is not in the store yet. The caches are emptied as a whole when they pass
`build.cache_max_bytes`; the next build downloads what it needs again.
Every function here blocks: call it off the event loop, with no build running.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["KEEP_UNUSED_S", "sweep_envs", "tree_bytes", "trim_caches"]

KEEP_UNUSED_S = 3600  # an environment no version needs stays this long after last use
CACHE_DIRS = ("uv", "npm", "tmp")


def sweep_envs(envs_dir: Path, in_use: set[str], marker: str, max_build_s: float) -> list[str]:
    """Remove environments that no version needs (and unused for KEEP_UNUSED_S), and
    temp folders older than the longest build; the names removed."""
    if not envs_dir.is_dir():
        return []
    now, removed = time.time(), []
    for path in envs_dir.iterdir():
        key, tmp, _ = path.name.partition(".tmp-")
        if tmp:
            stale = _age(path, now) > max_build_s
        else:
            stale = key not in in_use and _age(path / marker, now) > KEEP_UNUSED_S
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    if removed:
        log.info("removed %d unused built environment(s): %s", len(removed), ", ".join(removed))
    return removed


def trim_caches(tools: Path, max_bytes: int) -> int:
    """Empty the tools' caches when together they hold more than `max_bytes`; the
    bytes they held. The folders are made again by the next build (prepare_tools)."""
    held = sum(tree_bytes(tools / name) for name in CACHE_DIRS)
    if held > max_bytes:
        log.info("build caches hold %d bytes (build.cache_max_bytes %d): emptied", held, max_bytes)
        for name in CACHE_DIRS:
            shutil.rmtree(tools / name, ignore_errors=True)
    return held


def tree_bytes(root: Path) -> int:
    """Disk space used below `root` (allocated blocks; symlinks never followed)."""
    total = 0
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _age(path: Path, now: float) -> float:
    """Seconds since `path` changed; a missing path counts as old."""
    try:
        return now - path.lstat().st_mtime
    except OSError:
        return float("inf")
