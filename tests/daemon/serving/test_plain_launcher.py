"""The development launcher (scriptd --dev-no-sandbox): a code step's target starts
its supervisor with --kind step and the step's spec, as the sandbox launcher does."""

from __future__ import annotations

import json
import socket
import struct
import sys
from pathlib import Path

from daemon.config.daemon_config import Config
from daemon.serving.launcher import LaunchSettings
from daemon.serving.plain_launcher import PlainLauncher
from daemon.serving.target import RunTarget

SPEC = '{"inputs":{"name":"s"},"outputs":{"greeting":"s"}}'


def step_target(root: Path) -> RunTarget:
    src, env = root / "src", root / "env"
    src.mkdir()
    (src / "main.py").write_text("outputs.greeting = 'Hi ' + inputs.name\n")
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    return RunTarget(
        script_id=1, script="demo", version=1, language="python", runtime_version="3.11",
        runtime_path=sys.executable, source_dir=src, env_dir=env, workspace_dir=root / "ws",
        env={}, timeout_s=30, functions=(), min_replicas=1, max_replicas=1, cpu_target=75,
        profile=Config().default_profile, step_spec=SPEC,
    )  # fmt: skip


def read_frame(sock: socket.socket) -> dict[str, object]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the supervisor closed its control socket"
            data += chunk
        return data

    (size,) = struct.unpack(">I", exactly(4))
    frame: dict[str, object] = json.loads(exactly(size))
    return frame


def test_a_step_target_starts_a_step_supervisor(tmp_path: Path) -> None:
    launcher = PlainLauncher.for_target(step_target(tmp_path), LaunchSettings())
    ours, theirs = socket.socketpair()
    ours.settimeout(30)
    with open(tmp_path / "out.log", "wb") as out:
        process = launcher.launch("r1", theirs.fileno(), out.fileno())
    theirs.close()
    try:
        hello = read_frame(ours)
        assert hello["t"] == "hello", (hello, (tmp_path / "out.log").read_text())
        assert hello["kind"] == "step" and hello["outputs"] == {"greeting": "s"}
    finally:
        process.kill()
        process.popen.wait(10)
        process.cleanup()
        ours.close()
