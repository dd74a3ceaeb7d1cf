"""Builds die with the daemon: every build tool runs in a cgroup below the daemon's
root and in a pid namespace of its own.

    <own cgroup>/<root name>/build-<random>     one per tool run (uv venv, npm ci, ...)

The tool is started through a small shell that writes its own pid into the
cgroup's `cgroup.procs` files before it execs the rest, so nothing the tool
forks can escape the cgroup (`guarded`). When the tool ends, times out or its build is
cancelled, the whole cgroup is killed and removed.

A daemon killed with SIGKILL runs no cleanup: then `setpriv --pdeathsig KILL`
kills `unshare`, whose forked child (a root shell that runs the tool as its
child) is pid 1 of the build's pid namespace and dies with it (`--kill-child`),
and the kernel kills every other process of that namespace. Whatever survives
even that (util-linux 2.38's unshare sets the child's signal a few instructions
after its fork, and does not check that it still has its parent) is still in
the cgroup, and the next start kills it with the other leftovers of the root
(sandbox.CgroupRoot.create).
"""

from __future__ import annotations

import os
import secrets
import shutil

import sandbox

__all__ = ["BuildCgroup", "BuildCgroups", "guarded"]

# $1 = the daemon's pid, then the procs files, "--", then the command. A write that
# fails stops the build (exit 125) instead of running it outside the cgroup. The
# parent check closes the window between fork and --pdeathsig: a daemon that died
# before it was set has left this shell to init (or a subreaper) already.
_GUARD = (
    'daemon=$1; shift; while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; '
    'shift; read -r _ _ _ parent _ < /proc/self/stat; [ "$parent" = "$daemon" ] || exit 125; '
    'exec "$@"'
)


def guarded(argv: list[str], cgroup: BuildCgroup | None) -> list[str]:
    """`argv` (which starts with unshare --pid --fork --kill-child) killed when the
    daemon dies, and started inside `cgroup` when there is one."""
    procs = cgroup.cgroup.procs_files() if cgroup is not None else []
    death = [_tool("setpriv"), "--pdeathsig", "KILL", "--"]
    return [*death, _tool("sh"), "-c", _GUARD, "scriptd-build", str(os.getpid()), *procs, "--",
            *argv]  # fmt: skip


class BuildCgroup:
    """The cgroup of one tool run (blocking methods)."""

    def __init__(self, cgroup: sandbox.SandboxCgroup) -> None:
        self.cgroup = cgroup

    def kill_and_remove(self) -> None:
        self.cgroup.kill()
        self.cgroup.remove()


class BuildCgroups:
    """Makes the cgroups of builds below the daemon's root (None: no cgroups, as in
    scriptd --dev-no-sandbox)."""

    def __init__(self, root: sandbox.CgroupRoot | None) -> None:
        self.root = root

    def new(self) -> BuildCgroup | None:
        """Blocking: a fresh, empty cgroup for one tool run."""
        if self.root is None:
            return None
        leaf = f"build-{secrets.token_hex(6)}"
        return BuildCgroup(self.root.new(leaf, sandbox.Limits(None, None, None)))


def _tool(name: str) -> str:
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin") or name
