"""Moves into a cgroup without waiting for an RCU grace period: the kernel's attach lock
kept warm while a sandbox expects one.

Writing another process's pid to a cgroup's cgroup.procs or tasks file takes the
kernel's global cgroup_threadgroup_rwsem for writing (kernel/cgroup/cgroup.c,
cgroup_procs_write_start: only a thread moving itself, "0" written to a v1 tasks file,
skips it). That percpu rwsem's rcu_sync makes a writer who finds it idle wait a whole
RCU grace period, 8-10 ms on this 2-core host (HZ=250), up to 20 under load: a third of
a new replica's first answer. A writer coming less than a grace period after the last
one left finds it still entered and passes in microseconds. The favordynmods mount
option keeps it entered for good, but the host's cgroup trees are the host's: they are
never remounted here.

So while a sandbox expects a process of its own to be moved (a replica starting, a
worker killed to be replaced: Sandbox.expect_moves), one thread of this process makes,
every few milliseconds, a move that changes nothing: that sandbox's pid 1 into the v1
cgroup it joined at birth, through its tasks file. The real move then takes about
0.06 ms (bench/cold_start.py). While warm, forks and exits anywhere on the host take
the rwsem's reader slow path (a few atomic operations) and wait out each write's
microseconds; warmth ends with the expected moves or after a few seconds at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PERIOD_S = 0.003  # well under a grace period (measured: 12 ms still kept it mostly warm)
# A move this soon after the warmer's last write surely finds the lock warm (a grace
# period lasts 8-20 ms here), so it can be made where it is needed, without a thread.
QUICK_S = PERIOD_S + 0.001

# A move that changes nothing; False when it can no longer be made (the sandbox is gone).
Rejoin = Callable[[], bool]


class MoveWarmer:
    """One thread for the whole process: the lock is the kernel's, global, so one write
    keeps it warm for every sandbox that asked."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self._cond = threading.Condition()
        self._wanted: dict[object, tuple[float, Rejoin]] = {}  # key -> (deadline, rejoin)
        self._thread: threading.Thread | None = None
        self._last_write = float("-inf")  # monotonic end of the last move that changed nothing

    def want(self, key: object, seconds: float, rejoin: Rejoin) -> None:
        """Keep warm for `seconds` (a later call for the same key replaces it)."""
        with self._cond:
            self._wanted[key] = (time.monotonic() + seconds, rejoin)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cgroup-move-warmer", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def done(self, key: object) -> None:
        with self._cond:
            self._wanted.pop(key, None)

    @property
    def warming(self) -> bool:
        with self._cond:
            return bool(self._wanted)

    def quick(self) -> bool:
        """A move made now takes microseconds: the warmer wrote less than QUICK_S ago."""
        return time.monotonic() - self._last_write < QUICK_S

    def wants(self, key: object) -> bool:
        """`key` still wants warmth (its deadline may have passed unnoticed)."""
        with self._cond:
            return key in self._wanted

    def _next(self) -> tuple[object, Rejoin]:
        """The next move to make; waits while nobody wants warmth."""
        with self._cond:
            while True:
                now = time.monotonic()
                for key in [k for k, (deadline, _) in self._wanted.items() if deadline <= now]:
                    del self._wanted[key]
                if self._wanted:
                    key, (_, rejoin) = next(iter(self._wanted.items()))
                    return key, rejoin
                self._cond.wait()

    def _run(self) -> None:
        while True:
            key, rejoin = self._next()
            if not rejoin():
                with self._cond:
                    if self._wanted.get(key, (0.0, None))[1] is rejoin:
                        del self._wanted[key]
                continue
            self._last_write = time.monotonic()
            time.sleep(self.period_s)


WARMER = MoveWarmer()
