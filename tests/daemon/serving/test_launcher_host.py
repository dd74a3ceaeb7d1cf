"""What SandboxLauncher does on the host, outside the sandbox: it never runs anything of a
version's venv or source (bytecode is written by the trusted host interpreter, which only
compiles), binds only the runtimes' install prefixes, keeps the workspace 0700 and owned
by the script's uid without following symlinks, and names replica logs by script id."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.build import catalogue
from daemon.build.catalogue import UnsafeRuntime
from daemon.serving.bytecode import compile_source
from daemon.serving.host_files import prepare_workspace, remove_script_logs, script_log_dir
from daemon.serving.launcher import LaunchSettings, SandboxLauncher, node_heap_mb
from daemon.serving.target import RunTarget
from sandbox import SandboxError
from tests.conftest import require, require_root
from tests.daemon.serving.test_replica_sandbox import make_target

UID = 200_000 + 4242
PY_TAG = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
STDLIB = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def cgroot() -> Iterator[object]:
    require_root()
    require(os.path.exists("/proc/self/ns/pid"), "needs namespaces")
    from sandbox import CgroupRoot

    root = CgroupRoot.create(f"scriptd-ltest-{os.getpid()}")
    yield root
    root.cleanup()


def own_venv(tmp_path: Path) -> Path:
    """A fresh venv like the builder's, that a test may then spoil."""
    path = tmp_path / "env"
    base = os.path.realpath(sys.executable)
    uv = Path(sys.executable).parent / "uv"
    argv = [str(uv), "venv", "--quiet", "--relocatable", "--python", base, str(path)]
    subprocess.run(argv, check=True)
    return path


def spoil_python(env: Path, marker: Path) -> None:
    """A wheel's .data/scripts replaced bin/python with a program of its own."""
    (env / "bin" / "python").unlink()
    (env / "bin" / "python").write_text(f"#!/bin/sh\necho escaped > {marker}\n")
    (env / "bin" / "python").chmod(0o755)


def spoil_pyvenv_cfg(env: Path, marker: Path) -> None:
    """pyvenv.cfg points at a "stdlib" inside the venv whose encodings runs at start-up."""
    lib = env / "evil" / "lib" / STDLIB
    (lib / "encodings").mkdir(parents=True)
    (env / "evil" / "bin").mkdir()
    (lib / "os.py").write_text("")
    code = f"import posix; posix.close(posix.open({str(marker)!r}, posix.O_CREAT | posix.O_WRONLY))"
    (lib / "encodings" / "__init__.py").write_text(code)
    (lib / "compileall.py").write_text(code)
    (env / "pyvenv.cfg").write_text(f"home = {env / 'evil' / 'bin'}\n")


def run_launch(launcher: SandboxLauncher) -> None:
    """launch() for real, then kill and clean up the sandbox at once."""
    ours, theirs = socket.socketpair()
    try:
        box = launcher.launch(f"ltest-{os.getpid()}-{id(launcher)}", theirs.fileno(), 2)
        box.kill()
        box.cleanup()
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("spoil", [spoil_python, spoil_pyvenv_cfg])
def test_nothing_of_the_venv_runs_on_the_host(
    tmp_path: Path, cgroot: object, spoil: Callable[[Path, Path], None]
) -> None:
    env = own_venv(tmp_path)
    marker = tmp_path / "marker"
    spoil(env, marker)
    target = make_target(tmp_path, env)
    # A bytecode of the project is written all the same, by the host's interpreter.
    run_launch(SandboxLauncher(target, LaunchSettings(), cgroot))  # type: ignore[arg-type]
    assert not marker.exists()
    assert list((target.source_dir / "__pycache__").glob(f"main.{PY_TAG}.pyc"))


def test_compiling_runs_none_of_the_project(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    marker = tmp_path / "marker"
    (src / "main.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (src / "pkg" / "helper.py").write_text("X = 1\n")
    outside = tmp_path / "outside.py"
    outside.write_text("Y = 2\n")
    (src / "linked.py").symlink_to(outside)
    compile_source(os.path.realpath(sys.executable), src)
    assert not marker.exists()
    assert list((src / "__pycache__").glob(f"main.{PY_TAG}.pyc"))
    assert list((src / "pkg" / "__pycache__").glob(f"helper.{PY_TAG}.pyc"))
    assert not list((src / "__pycache__").glob("linked.*"))  # never through a symlink


# --- binds of the runtimes ---------------------------------------------------------
def fake_python(folder: Path, prefix: str) -> str:
    """A "python" that answers the catalogue's probe with the given prefix."""
    exe = folder / "bin" / "python3.11"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!/bin/sh\nprintf '3.11.9\\n{exe}\\n{prefix}\\n{prefix}\\n'\n")
    exe.chmod(0o755)
    return str(exe)


SYSTEM_PYTHON = "/usr/bin/python3"  # a catalogue Python for Node supervisors


def host_binds(target: RunTarget) -> set[str]:
    settings = LaunchSettings(supervisor_python=SYSTEM_PYTHON)
    launcher = SandboxLauncher(target, settings, root=None)  # type: ignore[arg-type]
    binds = launcher.spec("x", control_fd=9).binds
    return {b.source for b in binds if b.source == b.target}


def test_only_the_install_prefix_is_bound(tmp_path: Path) -> None:
    t = make_target(tmp_path, tmp_path / "env")
    prefix = tmp_path / "pythons" / "3.11.9"
    t = replace(t, runtime_path=fake_python(prefix, str(prefix)))
    assert host_binds(t) == {str(prefix)}  # not its parent, not /tmp
    system = replace(t, runtime_path="/usr/bin/python3")
    if os.path.exists("/usr/bin/python3"):
        assert host_binds(system) == set()  # /usr is bound by the sandbox already


@pytest.mark.parametrize("prefix", ["/", "/opt", "/root", "/home", "/srv"])
def test_a_top_level_prefix_is_refused(tmp_path: Path, prefix: str) -> None:
    exe = fake_python(tmp_path / "fake", prefix)
    assert catalogue.probe_python(exe) is None
    t = replace(make_target(tmp_path, tmp_path / "env"), runtime_path=exe)
    with pytest.raises(UnsafeRuntime, match="is a top-level folder"):
        host_binds(t)


def test_node_binds_its_prefix_only(tmp_path: Path) -> None:
    require(os.path.exists(SYSTEM_PYTHON), f"needs {SYSTEM_PYTHON}")
    node = tmp_path / "node-v20" / "bin" / "node"
    node.parent.mkdir(parents=True)
    node.write_text("#!/bin/sh\necho v20.1.0\n")
    node.chmod(0o755)
    t = replace(
        make_target(tmp_path, tmp_path / "env"), language="javascript", runtime_path=str(node)
    )
    assert host_binds(t) == {str(tmp_path / "node-v20")}
    lone = tmp_path / "opt" / "node"  # not in a bin/: its own folder only
    lone.parent.mkdir()
    lone.write_text("")
    assert catalogue.node_prefix(str(lone)) == str(lone.parent)


def test_a_node_supervisor_runs_on_the_catalogue_python_never_the_daemons(
    tmp_path: Path,
) -> None:
    t = replace(make_target(tmp_path, tmp_path / "env"), language="javascript",
                runtime_path="/usr/bin/node")  # fmt: skip
    launcher = SandboxLauncher(t, LaunchSettings(supervisor_python="/usr/bin/python3.11"), None)  # type: ignore[arg-type]
    assert launcher.argv()[0] == os.path.realpath("/usr/bin/python3.11")
    assert sys.executable not in launcher.argv()
    argv = launcher.argv()
    assert argv[argv.index("--node-heap-mb") + 1] == str(node_heap_mb(t.profile.memory_bytes, 1))
    with pytest.raises(SandboxError, match="no Python to run the supervisor"):
        SandboxLauncher(t, LaunchSettings(), None).argv()  # type: ignore[arg-type]


def test_the_node_heap_is_sized_from_a_workers_share_of_the_memory() -> None:
    mib = 1 << 20
    assert node_heap_mb(256 * mib, 1) == 256 * 3 // 4 - 48
    assert node_heap_mb(6 * 1024 * mib, 3) == 2048 * 3 // 4 - 48
    assert node_heap_mb(64 * mib, 4) == 16  # never below a heap node can start with


# --- workspace ---------------------------------------------------------------------
def test_workspace_is_private_and_owned_throughout(tmp_path: Path) -> None:
    require_root()
    host_file = tmp_path / "host.txt"
    host_file.write_text("host")
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "inner").write_text("host")
    ws = tmp_path / "workspace"
    ws.mkdir(mode=0o755)  # as the deployer makes it
    os.chmod(ws, 0o755)
    (ws / "data").mkdir()
    (ws / "data" / "a.txt").write_text("a")
    (ws / "b.txt").write_text("b")
    (ws / "link").symlink_to(host_file)
    (ws / "data" / "dirlink").symlink_to(host_dir)
    os.link(host_file, ws / "hard")  # could alias any file of the same file system
    old = UID - 1
    for p in (ws / "data", ws / "data" / "a.txt", ws / "b.txt"):
        os.chown(p, old, old)
    for p in (ws / "link", ws / "data" / "dirlink"):
        os.lchown(p, old, old)

    prepare_workspace(ws, UID)

    assert (ws.stat().st_mode & 0o777) == 0o700
    for p in (ws, ws / "data", ws / "data" / "a.txt", ws / "b.txt"):
        assert (p.stat().st_uid, p.stat().st_gid) == (UID, UID), p
    assert os.lstat(ws / "link").st_uid == UID  # the link itself
    assert os.lstat(ws / "data" / "dirlink").st_uid == UID
    for p in (host_file, host_dir, host_dir / "inner"):
        assert (p.stat().st_uid, p.stat().st_gid) == (0, 0), p  # never followed
    prepare_workspace(ws, UID)  # nothing to do the second time
    assert (ws.stat().st_mode & 0o777) == 0o700


# --- logs ----------------------------------------------------------------------------
def test_the_sandbox_writes_its_output_to_a_pipe_never_to_a_file(tmp_path: Path) -> None:
    t = make_target(tmp_path, tmp_path / "env")
    launcher = SandboxLauncher(t, LaunchSettings(), root=None)  # type: ignore[arg-type]
    pump = launcher.output("sbx-v1-r1")
    try:
        spec = launcher.spec("sbx-v1-r1", control_fd=9, output_fd=pump.write_fd)
        assert spec.stdout == spec.stderr == pump.write_fd
        assert stat.S_ISFIFO(os.fstat(pump.write_fd).st_mode)
    finally:
        pump.close()


def test_logs_are_removed_by_script_id(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    mine, other = script_log_dir(logs, 7), script_log_dir(logs, 8)
    for folder in (mine, other):
        folder.mkdir(parents=True)
        (folder / "x-v1-r1.log").write_text("hello\n")
    remove_script_logs(logs, 7)
    assert not mine.exists() and other.exists()
    remove_script_logs(logs, 7)  # idempotent


def test_launch_refuses_an_unsafe_runtime(tmp_path: Path, cgroot: object) -> None:
    t = replace(
        make_target(tmp_path, tmp_path / "env"),
        runtime_path=fake_python(tmp_path / "fake", "/opt"),
    )
    launcher = SandboxLauncher(t, LaunchSettings(), cgroot)  # type: ignore[arg-type]
    with pytest.raises(UnsafeRuntime):
        run_launch(launcher)
