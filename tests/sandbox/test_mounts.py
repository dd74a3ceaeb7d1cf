"""The sandbox's /dev (sandbox/mounts.py): its device nodes are made with the host's
numbers, and bound from the host where a device policy refuses mknod."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sandbox import libc, mounts
from tests.conftest import require_root


def _populate_in_a_mount_namespace(root: Path, refuse_mknod: bool) -> dict[str, object]:
    """In a forked child with a mount namespace of its own: /dev populated below `root`;
    what each node is and whether it works, reported back through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            libc.unshare(libc.CLONE_NEWNS)
            libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
            libc.mount("tmpfs", str(root), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "size=1m")
            if refuse_mknod:

                def refused(*args: object) -> None:
                    raise PermissionError("mknod refused by a device policy")

                os.mknod = refused  # type: ignore[assignment]
            mounts._populate_dev(str(root), mounts.host_devices(), set())
            found = {}
            for name, _ in mounts.host_devices():
                path = root / "dev" / name
                if name == "null":
                    path.write_bytes(b"x")
                else:
                    with open(path, "rb") as f:
                        assert len(f.read(1)) == 1
                found[name] = os.stat(path).st_rdev
            table = Path("/proc/self/mountinfo").read_text().splitlines()
            inside = f"{root}/dev/"
            bound = sum(1 for line in table if line.split()[4].startswith(inside))
            os.write(w, repr({"rdev": found, "binds": bound}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as reader:
        report = reader.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return eval(report)


@pytest.mark.parametrize("refuse_mknod", [False, True], ids=["mknod", "binds"])
def test_dev_has_the_hosts_devices(tmp_path: Path, refuse_mknod: bool) -> None:
    require_root()
    report = _populate_in_a_mount_namespace(tmp_path, refuse_mknod)
    host = {name: os.stat(f"/dev/{name}").st_rdev for name, _ in mounts.host_devices()}
    assert report["rdev"] == host
    assert report["binds"] == (len(host) if refuse_mknod else 0)
    assert all(stat.S_ISCHR(os.stat(f"/dev/{n}").st_mode) for n in host)
