"""sandbox: start a process tree isolated by namespaces, cgroups, a fresh root,
dropped privileges, rlimits and seccomp. Knows nothing about scripts.

    root = CgroupRoot.create("scriptd")
    box = start(SandboxSpec(argv=("python3", "-c", "print(1)"), env={"PATH": "/usr/bin"},
                            name="demo"), root)
    exit = await box.wait(); box.cleanup()
"""

from .cgroups import CgroupRoot, Limits, MemoryProbe, SandboxCgroup
from .fsutil import remove_tree
from .handle import Exit, Sandbox, Usage
from .launcher import prepare, start
from .mounts import system_binds
from .parked import Parked, park
from .spec import Bind, Rlimits, SandboxError, SandboxSpec, Tmpfs

__all__ = [
    "Bind",
    "CgroupRoot",
    "Exit",
    "Limits",
    "MemoryProbe",
    "Parked",
    "Rlimits",
    "Sandbox",
    "SandboxCgroup",
    "SandboxError",
    "SandboxSpec",
    "Tmpfs",
    "Usage",
    "park",
    "prepare",
    "remove_tree",
    "start",
    "system_binds",
]
