"""What a call that returned gives back: its value, output, timings and where it ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallResult"]


@dataclass(slots=True)
class CallResult:
    id: str
    value: Any
    stdout: str
    stderr: str
    truncated: bool
    cpu_ms: float
    wall_ms: float  # inside the worker
    queue_ms: float  # waiting for a free worker
    run_ms: float  # from sending the call to its answer
    worker_pid: int
    replica: str
    frame: dict[str, Any] = field(default_factory=dict)  # the worker's whole result
    egress_lane: int | None = None  # the worker's socket to the egress proxy, if its own
    shared: bool = False  # other calls ran on the same worker meanwhile (its HTTP log too)
