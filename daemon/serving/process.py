"""What a replica needs from the process tree that runs it (a sandbox, or a plain process
group in development) and from the launcher that starts it.
"""

from __future__ import annotations

from typing import Protocol

from daemon.serving.replica_output import OutputPump


class UsageInfo(Protocol):
    @property
    def cpu_seconds(self) -> float: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def memory_peak_bytes(self) -> int: ...
    @property
    def oom_kills(self) -> int: ...


class ExitInfo(Protocol):
    @property
    def code(self) -> int | None: ...
    @property
    def signal(self) -> int | None: ...
    @property
    def oom(self) -> bool: ...
    @property
    def killed(self) -> bool: ...
    @property
    def reason(self) -> str: ...


class MemoryProbe(Protocol):
    """The peak memory of one worker between reset() and peak() (sandbox.MemoryProbe)."""

    def reset(self) -> None: ...
    def peak(self) -> int | None: ...
    def close(self) -> None: ...


class Process(Protocol):
    """What a replica needs from its process tree; sandbox.Sandbox is one."""

    @property
    def pid(self) -> int: ...

    async def wait(self) -> ExitInfo: ...
    def kill(self) -> None: ...
    def usage(self) -> UsageInfo: ...
    def cleanup(self) -> None: ...
    def track_memory(self, name: str, ns_pid: int) -> MemoryProbe | None:
        """Measure one worker's memory per call (None: not measured here)."""

    def expect_moves(self, count: int, seconds: float) -> None:
        """`count` workers will be given to track_memory within about `seconds`: make
        that quick (sandbox.Sandbox.expect_moves); nothing to do where it is not."""

    def move_is_quick(self) -> bool:
        """track_memory would return in microseconds now (sandbox.Sandbox.move_is_quick):
        the event loop may call it; else it belongs in a thread."""


class Launcher(Protocol):
    """Starts replicas of one version. `launch` blocks (run it in a thread)."""

    workers: int  # K: worker processes per replica
    concurrency: int  # calls in flight per worker
    memory_bytes: int | None  # the memory limit of one replica, for error messages
    label: str  # "<script> v<N>", for logs and errors

    def launch(self, name: str, control_fd: int, output_fd: int) -> Process:
        """Start the tree with control_fd as its fd 3 and output_fd as its fds 1 and 2."""

    def output(self, name: str) -> OutputPump:
        """The pipe replica `name`'s stdout and stderr go through, and where they go."""
