"""What the console's charts read: the timings of a script's recent calls (from the
execution records) and the samples of its replicas and CPU (`usage_samples`)."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.store.parts import StoreParts

__all__ = ["CallTiming", "UsageSample", "UsageStore"]


@dataclass(frozen=True, slots=True)
class CallTiming:
    """One recorded call: when it came (ISO, as recorded), its status, its run time."""

    received_at: str
    status: str
    wall_ms: float | None


@dataclass(frozen=True, slots=True)
class UsageSample:
    """A serving script's replicas and CPU at one moment (unix milliseconds)."""

    script_id: int
    at_ms: int
    version: int
    replicas: int
    ready: int
    cpu_pct: float | None  # average over the ready replicas, % of the profile's quota


class UsageStore(StoreParts):
    def call_timings(self, script_id: int, since: str, limit: int) -> list[CallTiming]:
        """The script's calls received from `since` (ISO) on, oldest first, at most
        `limit` of the newest."""
        with self._lock:
            rows = self._rows(
                "SELECT received_at, status, wall_ms FROM (SELECT received_at, status, "
                "wall_ms, rowid AS r FROM executions WHERE script_id = ? AND received_at >= ? "
                "ORDER BY received_at DESC, rowid DESC LIMIT ?) ORDER BY received_at, r",
                (script_id, since, limit),
            )
        return [CallTiming(r["received_at"], r["status"], r["wall_ms"]) for r in rows]

    def add_usage_samples(self, samples: list[UsageSample], prune_before_ms: int) -> None:
        """Store samples (one per script and moment) and drop those older than
        `prune_before_ms`, in one transaction."""
        with self._tx():
            self._db.cursor().executemany(
                "INSERT OR REPLACE INTO usage_samples "
                "(script_id, at_ms, version, replicas, ready, cpu_pct) VALUES (?, ?, ?, ?, ?, ?)",
                [(s.script_id, s.at_ms, s.version, s.replicas, s.ready, s.cpu_pct)
                 for s in samples],
            )  # fmt: skip
            self._db.cursor().execute(
                "DELETE FROM usage_samples WHERE at_ms < ?", (prune_before_ms,)
            )

    def usage_samples(self, script_id: int, since_ms: int) -> list[UsageSample]:
        """The script's samples from `since_ms` on, oldest first."""
        with self._lock:
            rows = self._rows(
                "SELECT * FROM usage_samples WHERE script_id = ? AND at_ms >= ? ORDER BY at_ms",
                (script_id, since_ms),
            )
        return [UsageSample(**r) for r in rows]
