"""The unprivileged user that builds run as, and the files it may touch.

uv and npm read a project's dependency files and download code from the
network: they never run as root. Each tool is started as

    unshare --pid --fork --kill-child --mount-proc --mount -- /bin/sh -c MOUNTS \
        setpriv --reuid U --regid G --clear-groups ... TOOL

in a pid namespace of its own (daemon/build/cgroup.py) and a private mount
namespace where a small tmpfs covers /tmp and two folders are bound below it:
the build's temp folder at WORK_MOUNT and the tools' caches (uv, npm, HOME,
TMPDIR) at TOOLS_MOUNT. The tool sees only those paths, so it
needs no search permission on the parents of the daemon's cache folder (often
0700), and it never sees the project's source: the builder copies the
dependency files into the temp folder. The host's /tmp is hidden: a tool whose
executable lies below it (uv inside a virtualenv cloned under /tmp) is bound, as
one file, at TOOL_MOUNT; npm and the interpreters must live elsewhere. Both folders
belong to the build user; the finished environment is handed back to root and
made read-only (`seal`).

The build user is uid/gid 199999 unless the config names another one
(`build.uid` / `build.gid`); it needs no entry in /etc/passwd and must not be a
uid that replicas use (those start at replicas.uid_base, 200000 by default).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from daemon.config.daemon_config import Config

WORK_MOUNT = "/tmp/scriptd-build/work"
TOOLS_MOUNT = "/tmp/scriptd-build/tools"
TOOL_MOUNT = "/tmp/scriptd-build/bin/tool"
TOOL_DIRS = ("uv", "npm", "home", "tmp")
TMPFS_BYTES = 1 << 20  # holds only the two mount points: the tools write in TOOLS_MOUNT/tmp

# $1 = the build's temp folder, $2 = the tools' folder, $3 = an executable to bind
# at TOOL_MOUNT (or ""), then the command to exec. All are opened before the tmpfs
# covers /tmp (they may lie below /tmp) and bound through their descriptors, so no
# path is looked up twice.
_MOUNTS = (
    'set -e; exec 3<"$1" 4<"$2"; if [ -n "$3" ]; then exec 5<"$3"; fi; '
    f"mount -t tmpfs -o mode=0755,nosuid,nodev,size={TMPFS_BYTES} scriptd-build /tmp; "
    f"mkdir -p {WORK_MOUNT} {TOOLS_MOUNT}; "
    f"mount --no-canonicalize --bind /proc/self/fd/3 {WORK_MOUNT}; "
    f"mount --no-canonicalize --bind /proc/self/fd/4 {TOOLS_MOUNT}; "
    f'if [ -n "$3" ]; then mkdir -p {os.path.dirname(TOOL_MOUNT)}; : > {TOOL_MOUNT}; '
    f"mount --no-canonicalize --bind -o ro /proc/self/fd/5 {TOOL_MOUNT}; exec 5<&-; fi; "
    f'exec 3<&- 4<&-; cd {WORK_MOUNT}; shift 3; "$@"'
)
# The shell stays pid 1 of the namespace and runs the tool as its child (no exec at
# the end): it keeps the parent-death signal unshare gave it for the tool's whole
# life. Exec'd, setpriv's change of uid would clear that signal, and a daemon dying
# between the change and setpriv's own --pdeathsig would leave the tool running.


def build_ids(config: Config) -> tuple[int, int]:
    """(uid, gid) of the build user (`build.uid`, `build.gid`)."""
    return config.build_uid, config.build_gid


def tools_dir(config: Config) -> Path:
    return config.cache_dir / "tools"


def wrap(argv: list[str], work: Path, tools: Path, uid: int, gid: int) -> list[str]:
    """`argv` run as uid/gid in the namespaces described above; dies with the daemon
    (daemon/build/cgroup.py: util-linux's tools exec in turn, so no preexec_fn runs
    in a threaded process)."""
    drop = [
        _tool("setpriv"), f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--pdeathsig", "KILL", "--",
    ]  # fmt: skip
    bound = ""
    if _below_tmp(argv[0]):
        bound, argv = os.path.realpath(argv[0]), [TOOL_MOUNT, *argv[1:]]
    shell = [_tool("sh"), "-c", _MOUNTS, "scriptd-build", str(work), str(tools), bound]
    # The shell is pid 1 of its own pid namespace: when unshare dies, the kernel kills
    # it and then every process of the namespace (daemon/build/cgroup.py makes unshare
    # die with the daemon).
    pid_ns = ["--pid", "--fork", "--kill-child", "--mount-proc"]
    unshare = [_tool("unshare"), *pid_ns, "--mount", "--propagation", "private", "--"]
    return [*unshare, *shell, *drop, *argv]


def _below_tmp(path: str) -> bool:
    real = os.path.realpath(path)
    return real == "/tmp" or real.startswith("/tmp/")


def _tool(name: str) -> str:
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin") or name


def prepare_tools(tools: Path, uid: int, gid: int) -> None:
    """Create the tools' cache folders, owned by the build user (a whole tree is
    handed over only when its top does not belong to it yet). Blocking."""
    tools.mkdir(parents=True, exist_ok=True)
    for name in TOOL_DIRS:
        (tools / name).mkdir(exist_ok=True)
    if os.lstat(tools).st_uid != uid or os.lstat(tools).st_gid != gid:
        chown_tree(tools, uid, gid)
    os.chmod(tools, 0o700)


def make_work_dir(path: Path, uid: int, gid: int) -> None:
    """A fresh, empty temp folder for one build, the build user's alone. Blocking."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.chown(path, uid, gid)
    os.chmod(path, 0o700)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(parent, name), uid, gid)


def seal(root: Path) -> None:
    """Give a finished environment to root and make it read-only for everyone:
    folders 0555, files 0444 (0555 when executable). The replicas (other uids)
    only read and execute it; the build user can no longer change it. Blocking."""
    chown_tree(root, 0, 0)
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            _read_only(os.path.join(parent, name))
    _read_only(str(root))


def _read_only(path: str) -> None:
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and mode & 0o111):
        os.chmod(path, 0o555)
    elif stat.S_ISREG(mode):
        os.chmod(path, 0o444)
