"""The sandbox's filesystem: a fresh tmpfs root, read-only binds, /proc, /dev, /tmp.

`plan_mounts` runs in the parent and turns a spec into a list of steps;
`build_root` runs in the child (already in its own mount and pid namespaces) and
ends with pivot_root and the old root detached. Nothing of the host is visible
except what the plan names:

- system paths, read-only: /usr, /bin, /sbin, /lib, /lib64, /lib32, /libx32
  (recreated as symlinks where the host has merged-/usr symlinks);
- /etc pieces that libc, the dynamic loader and TLS need: ld.so.cache,
  ld.so.conf(.d), nsswitch.conf, hosts, localtime, alternatives, ssl/certs,
  ssl/openssl.cnf; resolv.conf only with network="host";
- nothing of the calling process's own environment: an interpreter installed
  outside these paths is bound by the caller (`SandboxSpec.binds`) when it wants it;
- /proc of the sandbox's pid namespace (read-only), a read-only /dev tmpfs with
  null, zero, full, random and urandom (the host's device numbers), and /tmp (a tmpfs
  of tmp_size_bytes).
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
from dataclasses import dataclass

from . import libc
from .spec import Bind, SandboxSpec

STAGING = "/tmp"  # where the new root is assembled, inside the private mount namespace
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
)
_DEVICES = ("null", "zero", "full", "random", "urandom")
_DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}


@dataclass(frozen=True)
class Symlink:
    """A symlink created in the new root (mirrors merged-/usr links such as /lib)."""

    target: str
    points_to: str


@dataclass(frozen=True)
class TmpfsMount:
    """A tmpfs with its mount options, as planned."""

    target: str
    options: str


@dataclass(frozen=True)
class MountPlan:
    """What build_root does, computed in the parent."""

    mounts: tuple[Bind | TmpfsMount, ...]  # parents before children
    symlinks: tuple[Symlink, ...]
    devices: tuple[tuple[str, int], ...] = ()  # /dev/<name> and the host's device number


@functools.lru_cache(maxsize=1)
def host_devices() -> tuple[tuple[str, int], ...]:
    """The devices of the sandbox's /dev with their numbers on this host."""
    return tuple((name, os.stat(f"/dev/{name}").st_rdev) for name in _DEVICES)


@functools.lru_cache(maxsize=2)
def system_binds(network: str = "none") -> tuple[tuple[Bind, ...], tuple[Symlink, ...]]:
    """The read-only host paths every sandbox gets (see the module docstring)."""
    binds: list[Bind] = []
    links: list[Symlink] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            links.append(Symlink(path, os.readlink(path)))
        elif os.path.isdir(path):
            binds.append(Bind(path, path))
    etc = _ETC_FILES + (("/etc/resolv.conf",) if network == "host" else ())
    binds += [Bind(p, p) for p in etc if os.path.exists(p)]
    return tuple(binds), tuple(links)


def plan_mounts(spec: SandboxSpec) -> MountPlan:
    binds, links = system_binds(spec.network) if spec.system_binds else ((), ())
    for bind in spec.binds:
        if not os.path.exists(bind.source):
            raise ValueError(f"bind source does not exist: {bind.source}")
    owner = f"uid={spec.uid},gid={spec.gid}"
    tmpfs = [TmpfsMount("/tmp", f"size={spec.tmp_size_bytes},mode=1777")]
    tmpfs += [TmpfsMount(t.target, f"size={t.size_bytes},mode=0755,{owner}") for t in spec.tmpfs]
    # Parents before children: /usr before /usr/lib/foo, /tmp before a bind below /tmp.
    entries: list[Bind | TmpfsMount] = [*binds, *tmpfs, *spec.binds]
    entries.sort(key=lambda m: m.target.rstrip("/").count("/"))
    return MountPlan(tuple(entries), links, host_devices())


def _make_mountpoint(root: str, target: str, is_dir: bool, bound: set[str]) -> str:
    """Create target's missing path components inside our tmpfs, never inside a bind.

    A missing component below a bind would be created on the host, and a symlink
    component could lead anywhere, so both are refused.
    """
    path = root
    parts = [p for p in target.split("/") if p]
    inner = ""
    for i, part in enumerate(parts):
        path = f"{path}/{part}"
        inner = f"{inner}/{part}"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if any(inner.startswith(b + "/") for b in bound):
                raise OSError(
                    f"mount point {target} does not exist inside the bind above it"
                ) from None
            if i == len(parts) - 1 and not is_dir:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            else:
                os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise OSError(f"mount point {target} goes through a symlink at {inner}")
    return path


def _bind(root: str, fd: int, target: str, flags: int, bound: set[str]) -> None:
    is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    dst = _make_mountpoint(root, target, is_dir, bound)
    libc.mount(f"/proc/self/fd/{fd}", dst, None, libc.MS_BIND | libc.MS_REC)
    libc.mount_setattr(dst, flags, recursive=True)
    bound.add(target.rstrip("/") or "/")


def _tmpfs(root: str, target: str, options: str, flags: int, bound: set[str]) -> str:
    dst = _make_mountpoint(root, target, True, bound)
    libc.mount("tmpfs", dst, "tmpfs", flags, options)
    return dst


def _populate_dev(root: str, devices: tuple[tuple[str, int], ...], bound: set[str]) -> None:
    """A /dev tmpfs holding the host's five devices. They are made here (mknod: one call
    each) rather than bound from the host (nine calls each, 0.5 ms of every start), so
    /dev keeps dev access; it is nosuid and noexec, and read-only once the root is built.
    Where a device policy refuses mknod, the host's nodes are bound instead."""
    dev = _tmpfs(root, "/dev", "size=64k,mode=0755", libc.MS_NOSUID | libc.MS_NOEXEC, bound)
    umask = os.umask(0)
    try:
        for name, rdev in devices:
            os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, rdev)
    except PermissionError:
        _bind_devices(root, devices, bound)
    finally:
        os.umask(umask)
    for name, points_to in _DEV_LINKS.items():
        os.symlink(points_to, f"{dev}/{name}")
    bound.add("/dev")


def _bind_devices(root: str, devices: tuple[tuple[str, int], ...], bound: set[str]) -> None:
    for name, _ in devices:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{root}/dev/{name}")  # one made before mknod was refused
        fd = os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC)
        try:
            _bind(root, fd, f"/dev/{name}", libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC, bound)
        finally:
            os.close(fd)


def build_root(plan: MountPlan) -> None:
    """In the child: assemble the new root, pivot into it and detach the host's root."""
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    # Open every source before the staging tmpfs hides anything; binding from
    # /proc/self/fd/N also pins what was checked, not what a path says later.
    fds = {
        i: os.open(m.source, os.O_PATH | os.O_CLOEXEC)
        for i, m in enumerate(plan.mounts)
        if isinstance(m, Bind)
    }
    root = STAGING
    libc.mount("tmpfs", root, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "size=1m,mode=0755")
    bound: set[str] = set()
    for link in plan.symlinks:
        os.symlink(link.points_to, root + link.target)
    proc = _make_mountpoint(root, "/proc", True, bound)
    libc.mount("proc", proc, "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
    libc.mount_setattr(proc, libc.MOUNT_ATTR_RDONLY, recursive=True)
    bound.add("/proc")
    _populate_dev(root, plan.devices, bound)
    base = libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV
    for i, m in enumerate(plan.mounts):
        if isinstance(m, Bind):
            flags = base | (0 if m.writable else libc.MOUNT_ATTR_RDONLY)
            _bind(root, fds[i], m.target, flags, bound)
            os.close(fds[i])
        else:
            # Our own tmpfs: mount points may be created inside it, so it is not "bound".
            _tmpfs(root, m.target, m.options, libc.MS_NOSUID | libc.MS_NODEV, bound)
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root under the new one; detaching it
    # leaves no path back to the host.
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")
    libc.mount_setattr("/", libc.MOUNT_ATTR_RDONLY | base, recursive=False)
    # /dev holds the device nodes: read-only, nosuid and noexec, but not nodev.
    dev = libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC
    libc.mount_setattr("/dev", dev, recursive=False)
