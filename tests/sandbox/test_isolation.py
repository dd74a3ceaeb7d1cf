"""What a sandbox can see and reach: filesystem, /proc, devices, network, ids, fds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from sandbox import Bind
from tests.sandbox.conftest import ENV, PY, run, run_py

pytestmark = pytest.mark.usefixtures("cgroot")


def test_host_files_are_not_there(cgroot, tmp_path):
    state = tmp_path / "state"  # stands for the daemon's state dir
    state.mkdir()
    (state / "db.sqlite").write_text("secret")
    other = tmp_path / "other-sandbox"
    other.mkdir()
    (other / "main.py").write_text("secret")
    r = run_py(
        cgroot,
        f"""
        import os, json
        paths = ["/etc/shadow", "/etc/passwd", "/home", "/run", "/var", "/sys", "/dev/mem",
                 "/boot", "/etc/ssl/private", {str(state)!r}, {str(other)!r}, {str(tmp_path)!r}]
        print(json.dumps({{p: os.path.exists(p) for p in paths}}))
        print(json.dumps(sorted(os.listdir("/root")) if os.path.exists("/root") else []))
        print(json.dumps(sorted(os.listdir("/"))))
    """,
    )
    assert r.exit.code == 0, r.err
    present, root_dir, top = (json.loads(line) for line in r.out.splitlines())
    assert not any(present.values()), present
    # /root exists only when the interpreter lives below it (pyenv): nothing else of it.
    if PY.startswith("/root/"):
        assert root_dir == [PY.split("/")[2]]
    else:
        assert root_dir == []
    assert set(top) <= {
        "bin",
        "dev",
        "etc",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "proc",
        "root",
        "sbin",
        "tmp",
        "usr",
    }


def test_read_only_binds_and_their_submounts(cgroot, tmp_path):
    src = tmp_path / "ro"
    (src / "sub").mkdir(parents=True)
    # A mount below the bind source on the host: read-only must reach it too.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src / "sub")], check=True)
    try:
        r = run_py(
            cgroot,
            """
            import os, errno
            for path in ["/data/x", "/data/sub/x", "/usr/x", "/x", "/etc/x", "/dev/x", "/proc/x"]:
                try:
                    open(path, "w")
                    print(path, "WRITABLE")
                except OSError as e:
                    print(path, errno.errorcode[e.errno])
        """,
            binds=(Bind(str(src), "/data"),),
        )
    finally:
        subprocess.run(["umount", str(src / "sub")], check=True)
    assert r.exit.code == 0, r.err
    results = dict(line.split() for line in r.out.splitlines())
    assert results["/data/x"] == "EROFS" and results["/data/sub/x"] == "EROFS"
    assert results["/usr/x"] == "EROFS" and results["/x"] == "EROFS"
    assert "WRITABLE" not in results.values()


def test_writable_bind_and_tmpfs(cgroot, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, 65534, 65534)
    r = run(
        cgroot,
        ("sh", "-c", "echo hi > /ws/f && echo ok > /scratch/g && cat /ws/f /scratch/g"),
        binds=(Bind(str(ws), "/ws", writable=True),),
        tmpfs=(__import__("sandbox").Tmpfs("/scratch", 1 << 20),),
    )
    assert r.exit.code == 0, r.err
    assert r.out.split() == ["hi", "ok"]
    assert (ws / "f").read_text() == "hi\n"


def test_proc_shows_only_the_sandbox(cgroot):
    host_pids = {p for p in os.listdir("/proc") if p.isdigit()}
    r = run_py(
        cgroot,
        """
        import os, json
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        env = open("/proc/1/environ", "rb").read().split(b"\\0")
        print(json.dumps({"me": os.getpid(), "pids": pids, "env": [e.decode() for e in env if e]}))
    """,
        env=ENV | {"MARK": "inside"},
    )
    assert r.exit.code == 0, r.err
    seen = json.loads(r.out)
    assert seen["me"] == 1 and seen["pids"] == [1]
    assert sorted(seen["env"]) == sorted(f"{k}={v}" for k, v in (ENV | {"MARK": "inside"}).items())
    assert len(host_pids) > 5  # the host has many; the sandbox saw only its own


def test_signals_do_not_leave_the_sandbox(cgroot):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        r = run_py(
            cgroot,
            f"""
            import os, signal
            for target in ({sleeper.pid}, {os.getpid()}, -1):
                try:
                    os.kill(target, signal.SIGKILL)
                    print(target, "sent")
                except OSError as e:
                    print(target, type(e).__name__)
        """,
        )
        assert r.exit.code == 0, r.err
        assert f"{sleeper.pid} ProcessLookupError" in r.out
        assert sleeper.poll() is None  # kill(-1) and the host pid reached nothing outside
    finally:
        sleeper.kill()
        sleeper.wait()


def test_identity_capabilities_and_environment(cgroot):
    r = run_py(
        cgroot,
        """
        import os, json, socket
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        keys = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"]
        print(json.dumps({"ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
                          "groups": os.getgroups(), "sid": os.getsid(0) == os.getpid(),
                          "status": {k: status[k].strip() for k in keys},
                          "host": socket.gethostname(), "cwd": os.getcwd(),
                          "env": dict(os.environ)}))
    """,
        cwd="/tmp",
    )
    assert r.exit.code == 0, r.err
    seen = json.loads(r.out)
    assert seen["ids"] == [65534] * 4 and seen["groups"] == [] and seen["sid"]
    caps = {k: v for k, v in seen["status"].items() if k.startswith("Cap")}
    assert set(caps.values()) == {"0000000000000000"}, caps
    assert seen["status"]["NoNewPrivs"] == "1" and seen["status"]["Seccomp"] == "2"
    assert seen["host"] == "sandbox" and seen["cwd"] == "/tmp"
    assert seen["env"] == ENV


def test_setuid_binary_gives_no_privilege(cgroot, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    idbin = bindir / "id"
    subprocess.run(["cp", "/usr/bin/id", str(idbin)], check=True)
    os.chown(idbin, 0, 0)
    os.chmod(idbin, 0o4755)
    r = run(cgroot, ("/opt/bin/id",), binds=(Bind(str(bindir), "/opt/bin"),))
    assert r.exit.code == 0, r.err
    assert "uid=65534" in r.out and "euid" not in r.out


def test_host_loopback_is_unreachable(cgroot):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        r = run_py(
            cgroot,
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("connected")
            except OSError as e:
                print(type(e).__name__)
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
            c = socket.create_connection(s.getsockname(), timeout=2)
            print("own loopback ok")
        """,
        )
        assert r.exit.code == 0, r.err
        assert "ConnectionRefusedError" in r.out and "own loopback ok" in r.out
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_host_network_when_asked(cgroot):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        r = run_py(
            cgroot,
            f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
            print("connected")
        """,
            network="host",
        )
        assert r.exit.code == 0, r.err
        assert r.out.strip() == "connected"


def test_only_passed_descriptors_are_inherited(cgroot):
    a_r, a_w = os.pipe()
    stray = os.open(
        "/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/hosts", os.O_RDONLY
    )
    os.set_inheritable(stray, True)
    os.set_inheritable(a_w, True)
    try:
        r = run_py(
            cgroot,
            """
            import os
            print(sorted(int(f) for f in os.listdir("/proc/self/fd")))
            os.write(3, b"via fd 3")
        """,
            pass_fds={3: a_w},
        )
        assert r.exit.code == 0, r.err
        fds = eval(r.out)
        assert set(fds) - {0, 1, 2, 3} <= {max(fds)}  # the listing's own directory fd
        assert max(fds) <= 4
        assert os.read(a_r, 100) == b"via fd 3"
    finally:
        for fd in (a_r, a_w, stray):
            os.close(fd)


def test_devices(cgroot):
    r = run_py(
        cgroot,
        """
        import os, stat
        print(sorted(os.listdir("/dev")))
        with open("/dev/null", "w") as f: f.write("x")
        print(len(open("/dev/urandom", "rb").read(16)), open("/dev/zero", "rb").read(2))
        nodes = {}
        for top in ("/", "/dev", "/tmp", "/etc"):
            for name in os.listdir(top):
                st = os.lstat(os.path.join(top, name))
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    nodes[os.path.join(top, name)] = st.st_rdev
        print(nodes)
    """,
    )
    assert r.exit.code == 0, r.err
    lines = r.out.splitlines()
    # The only device nodes are the five, with the host's numbers.
    host = {
        f"/dev/{n}": os.stat(f"/dev/{n}").st_rdev
        for n in ("null", "zero", "full", "random", "urandom")
    }
    assert eval(lines[2]) == host
    assert eval(lines[0]) == [
        "fd",
        "full",
        "null",
        "random",
        "stderr",
        "stdin",
        "stdout",
        "urandom",
        "zero",
    ]
    assert lines[1] == "16 b'\\x00\\x00'"


def test_python_of_the_daemon_and_node_run_inside(cgroot):
    r = run(cgroot, (PY, "-I", "-S", "-c", "import sys; print(sys.version_info[:2])"))
    assert r.exit.code == 0, r.err
    assert r.out.strip() == str(tuple(sys.version_info[:2]))
    from tests.sandbox.conftest import NODE

    r = run(cgroot, (NODE, "-e", "console.log(require('os').hostname(), 6 * 7)"), pids_max=64)
    assert r.exit.code == 0, r.err
    assert r.out.strip() == "sandbox 42"


def test_virtualenv_python_runs_inside(cgroot, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = run(
        cgroot,
        (str(venv / "bin" / "python"), "-c", "import sys, json; print(sys.prefix)"),
        binds=(Bind(str(venv), str(venv)),),
    )
    assert r.exit.code == 0, r.err
    assert r.out.strip() == str(venv)


def test_other_sandboxes_are_invisible(cgroot, tmp_path):
    ws = tmp_path / "ws-a"
    ws.mkdir()
    os.chown(ws, 65534, 65534)
    from sandbox import SandboxSpec, start
    from tests.sandbox.conftest import unique_name

    a = start(
        SandboxSpec(
            argv=("sh", "-c", "echo a > /tmp/secret-a; echo a > /ws/f; sleep 30"),
            env=ENV,
            name=unique_name(),
            binds=(Bind(str(ws), "/ws", writable=True),),
        ),
        cgroot,
    )
    try:
        while not (ws / "f").exists():
            assert a.wait_blocking(0.01) is None
        r = run_py(
            cgroot,
            f"""
            import os
            print(os.listdir("/tmp"), os.path.exists("/ws"), os.path.exists({str(ws)!r}))
            print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        """,
        )
    finally:
        a.cleanup()
    assert r.exit.code == 0, r.err
    assert r.out.splitlines() == ["[] False False", "[1]"]


def test_mount_table_has_no_host_root_and_every_mount_is_nosuid(cgroot):
    r = run_py(
        cgroot,
        """
        import json, resource
        mounts = []
        for line in open("/proc/self/mountinfo"):
            fields = line.split()
            mounts.append((fields[4], fields[5].split(",")))
        limits = {name: resource.getrlimit(getattr(resource, name))
                  for name in ("RLIMIT_CORE", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK")}
        print(json.dumps({"mounts": mounts, "limits": limits}))
    """,
    )
    assert r.exit.code == 0, r.err
    seen = json.loads(r.out)
    points = [point for point, _ in seen["mounts"]]
    assert points[0] == "/" and points.count("/") == 1  # the old root is detached
    for point, opts in seen["mounts"]:
        assert "nosuid" in opts, point
        if point != "/dev":  # the device nodes live on /dev: read-only, noexec (below)
            assert "nodev" in opts, point
        if point in ("/", "/usr", "/proc", "/dev", "/etc/hosts"):
            assert "ro" in opts, point
    assert {"ro", "noexec"} <= set(dict(seen["mounts"])["/dev"])
    assert seen["limits"]["RLIMIT_CORE"] == [0, 0]
    assert seen["limits"]["RLIMIT_NOFILE"] == [1024, 1024]
    assert seen["limits"]["RLIMIT_FSIZE"] == [1 << 30, 1 << 30]
