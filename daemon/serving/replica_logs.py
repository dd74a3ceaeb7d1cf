"""Replicas' output on the host: rotated files written by one thread, read for `logs`.

    <log_dir>/<script id>/<replica>.log, <replica>.log.1, ... <replica>.log.<files - 1>

A replica's stdout and stderr reach the daemon through a pipe (daemon/serving/replica_output.py
reads it); nothing inside a sandbox holds a descriptor of these files. `LogWriter`
takes the chunks on the event loop and one thread of its own writes them, so a slow
disk never stalls the loop. What a replica has waiting for that thread is bounded
(`backlog_bytes`): past it, chunks are dropped and counted, and the count is written
into the log as a line of its own once the thread catches up. A file is rotated
before it would pass `file_bytes`; a replica keeps `files` files; a script keeps the
logs of its `replicas_kept` most recent replicas (running ones always). Followers
(`scriptctl logs --follow`) get the chunks as they arrive, through a bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["Follower", "LogLimits", "LogWriter", "ReplicaLog", "ReplicaOutput", "read_logs"]

FOLLOW_QUEUE = 1024  # chunks a follower may lag behind before chunks are skipped for it


@dataclass(frozen=True)
class LogLimits:
    """How much output the host keeps (config keys `logs.*`; defaults in daemon/config.py)."""

    file_bytes: int  # a replica's log file is rotated before it passes this size
    files: int  # files kept per replica: the current one and files - 1 rotated ones
    replicas_kept: int  # per script: logs of this many most recent replicas (and running ones)
    rate_bytes_per_s: int  # read from a replica's pipe per second at most (the rest waits)
    backlog_bytes: int = 1 << 20  # per replica, waiting for the writer thread; past it: dropped


class Follower:
    """One `logs --follow`: the chunks of a script's replicas as they arrive."""

    def __init__(self, replica: str | None) -> None:
        self.replica = replica  # only this replica's chunks, or every replica's
        self.chunks: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(FOLLOW_QUEUE)
        self.skipped = 0  # bytes not delivered because the follower lagged behind
        self.ended = False

    def end(self) -> None:
        """No more chunks (the daemon stops): wake the reader up."""
        self.ended = True
        with contextlib.suppress(asyncio.QueueFull):
            self.chunks.put_nowait(("", b""))

    def offer(self, replica: str, data: bytes) -> None:
        if self.replica is not None and replica != self.replica:
            return
        try:
            self.chunks.put_nowait((replica, data))
        except asyncio.QueueFull:
            self.skipped += len(data)


class ReplicaLog:
    """The event loop's handle on one replica's log: `write` chunks, then `close`."""

    def __init__(self, writer: LogWriter, script_id: int, name: str) -> None:
        self.writer = writer
        self.script_id = script_id
        self.name = name
        self.pending = 0  # bytes queued for the writer thread (guarded by writer.lock)
        self.dropped = 0  # bytes dropped since the last marker (guarded by writer.lock)
        self.dropped_total = 0
        # The writer thread's own state:
        self.fd = -1
        self.size = 0

    def write(self, data: bytes) -> None:
        self.writer.submit(self, data)

    def close(self) -> None:
        self.writer.submit(self, None)


class LogWriter:
    """Every replica's output, written by one thread. `close()` drains and stops it."""

    def __init__(self, log_dir: Path, limits: LogLimits) -> None:
        self.log_dir = log_dir
        self.limits = limits
        self.lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[ReplicaLog, bytes | None] | None]
        self._queue = queue.SimpleQueue()
        self._open: dict[int, dict[str, ReplicaLog]] = {}  # script id -> name -> log
        self._followers: dict[int, set[Follower]] = {}
        self._thread = threading.Thread(target=self._run, name="replica-logs", daemon=True)
        self._thread.start()

    # --- the event loop's side ---------------------------------------------------
    def open(self, script_id: int, name: str) -> ReplicaLog:
        replica_log = ReplicaLog(self, script_id, name)
        with self.lock:
            self._open.setdefault(script_id, {})[name] = replica_log
        return replica_log

    def running(self, script_id: int) -> set[str]:
        """Names of the replicas whose output is still being read (any thread)."""
        with self.lock:
            return set(self._open.get(script_id, {}))

    def follow(self, script_id: int, replica: str | None) -> Follower:
        follower = Follower(replica)
        self._followers.setdefault(script_id, set()).add(follower)
        return follower

    def unfollow(self, script_id: int, follower: Follower) -> None:
        self._followers.get(script_id, set()).discard(follower)

    def end_follows(self) -> None:
        for followers in self._followers.values():
            for follower in followers:
                follower.end()

    def submit(self, replica_log: ReplicaLog, data: bytes | None) -> None:
        if data is None:
            with self.lock:
                self._open.get(replica_log.script_id, {}).pop(replica_log.name, None)
        else:
            for follower in self._followers.get(replica_log.script_id, ()):
                follower.offer(replica_log.name, data)
            with self.lock:
                if replica_log.pending + len(data) > self.limits.backlog_bytes:
                    replica_log.dropped += len(data)  # the writer fell behind: count, drop
                    replica_log.dropped_total += len(data)
                    return
                replica_log.pending += len(data)
        self._queue.put((replica_log, data))

    def close(self) -> None:
        """Blocking: write what is queued, close every file, stop the thread."""
        self._queue.put(None)
        self._thread.join()

    # --- the writer thread ----------------------------------------------------------
    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            replica_log, data = item
            try:
                if data is None:
                    _close_fd(replica_log)
                else:
                    self._write(replica_log, data)
            except OSError as exc:  # a full or broken disk: the output is lost, not the daemon
                log.warning("log of replica %s: %s", replica_log.name, exc)
                _close_fd(replica_log)

    def _write(self, replica_log: ReplicaLog, data: bytes) -> None:
        with self.lock:
            replica_log.pending -= len(data)
            dropped, replica_log.dropped = replica_log.dropped, 0
        if replica_log.fd < 0:
            self._open_file(replica_log)
        if dropped:
            data = _dropped_line(dropped) + data
        if replica_log.size and replica_log.size + len(data) > self.limits.file_bytes:
            self._rotate(replica_log)
        os.write(replica_log.fd, data[: self.limits.file_bytes])
        replica_log.size += min(len(data), self.limits.file_bytes)

    def _open_file(self, replica_log: ReplicaLog) -> None:
        folder = self.log_dir / str(replica_log.script_id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prune(folder, keep=replica_log.name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        replica_log.fd = os.open(folder / f"{replica_log.name}.log", flags, 0o640)
        replica_log.size = os.fstat(replica_log.fd).st_size

    def _rotate(self, replica_log: ReplicaLog) -> None:
        """<name>.log -> .log.1 -> ... ; the oldest beyond `files` is removed."""
        _close_fd(replica_log)
        base = self.log_dir / str(replica_log.script_id) / f"{replica_log.name}.log"
        names = [base, *(Path(f"{base}.{n}") for n in range(1, self.limits.files))]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{base}.{self.limits.files - 1}" if self.limits.files > 1 else base)
        for newer, older in reversed(list(itertools.pairwise(names))):
            with contextlib.suppress(FileNotFoundError):
                os.rename(newer, older)
        self._open_file(replica_log)

    def _prune(self, folder: Path, keep: str) -> None:
        """Remove the logs of the script's oldest replicas beyond `replicas_kept`."""
        running = self.running(int(folder.name)) | {keep}
        groups = _groups(folder)
        old = sorted((n for n in groups if n not in running), key=lambda n: groups[n][0])
        excess = len(set(groups) | running) - max(self.limits.replicas_kept, len(running))
        for name in old[: max(0, excess)]:
            for path in groups[name][1]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _close_fd(replica_log: ReplicaLog) -> None:
    if replica_log.fd >= 0:
        os.close(replica_log.fd)
        replica_log.fd = -1


def _dropped_line(count: int) -> bytes:
    return f"\n[scriptd: {count} bytes of output dropped: written faster than kept]\n".encode()


def _groups(folder: Path) -> dict[str, tuple[float, list[Path]]]:
    """Replica name -> (newest mtime, its files) of a script's log folder."""
    groups: dict[str, tuple[float, list[Path]]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            name, dot, rest = entry.name.partition(".log")
            if not dot or (rest and not rest[1:].isdigit()):
                continue
            with contextlib.suppress(FileNotFoundError):
                mtime = entry.stat(follow_symlinks=False).st_mtime
                newest, paths = groups.get(name, (0.0, []))
                groups[name] = (max(newest, mtime), [*paths, Path(entry.path)])
    return groups


@dataclass(frozen=True)
class ReplicaOutput:
    replica: str
    text: str  # the end of its output, oldest rotated file first
    size: int  # bytes of it the host keeps
    truncated: bool  # text is only the end of it

    def to_json(self, running: Callable[[str], bool]) -> dict[str, object]:
        return {"replica": self.replica, "running": running(self.replica), "bytes": self.size,
                "truncated": self.truncated, "text": self.text}  # fmt: skip


def read_logs(
    log_dir: Path, script_id: int, replica: str | None, tail_bytes: int
) -> list[ReplicaOutput]:
    """Blocking: the last `tail_bytes` of each replica's log (or one replica's), the
    replica whose output came last at the end."""
    groups = _groups(log_dir / str(script_id))
    names = sorted((n for n in groups if replica in (None, n)), key=lambda n: groups[n][0])
    return [_read_one(groups[name][1], name, tail_bytes) for name in names]


def _read_one(paths: list[Path], name: str, tail_bytes: int) -> ReplicaOutput:
    def age(path: Path) -> int:  # .log.2 is older than .log.1, older than .log
        suffix = path.name.rpartition(".log")[2]
        return int(suffix[1:]) if suffix else 0

    ordered = sorted(paths, key=age, reverse=True)
    sizes = [p.stat().st_size if p.exists() else 0 for p in ordered]
    total, skip, chunks = sum(sizes), max(0, sum(sizes) - tail_bytes), []
    for path, size in zip(ordered, sizes, strict=True):
        if skip >= size:
            skip -= size
            continue
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
            f.seek(skip)
            chunks.append(f.read(tail_bytes))
        skip = 0
    data = b"".join(chunks)[-tail_bytes:] if tail_bytes else b""
    return ReplicaOutput(name, data.decode("utf-8", errors="replace"), total, total > len(data))
