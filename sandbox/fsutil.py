"""Removing what a sandbox wrote, without following what it planted.

A sandbox can leave symlinks in its read-write binds pointing anywhere on the
host; removing such a tree must delete the links, never what they point to.
"""

from __future__ import annotations

import os
import shutil

from .spec import SandboxError


def remove_tree(path: str) -> None:
    """Delete `path` and everything below it; symlinks are removed, not followed."""
    if not shutil.rmtree.avoids_symlink_attacks:
        raise SandboxError("this platform's rmtree can follow symlinks: refusing to clean up")
    if os.path.islink(path):
        os.unlink(path)
        return
    shutil.rmtree(path)
