"""Replicas' output on the host: rotation, the per-script bound, drops when the writer
falls behind, tails for `logs`, followers, and the pipe pump's rate limit (real pipes,
real files, a real writer thread)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.serving.replica_logs import LogLimits, LogWriter, read_logs
from daemon.serving.replica_output import OutputPump

KiB = 1024
LIMITS = LogLimits(file_bytes=256 * KiB, files=3, replicas_kept=2, rate_bytes_per_s=1 << 30)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[LogWriter]:
    w = LogWriter(tmp_path / "logs", LIMITS)
    yield w
    w.close()


def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()}


def test_a_replica_keeps_files_of_at_most_file_bytes(tmp_path: Path, writer: LogWriter) -> None:
    log = writer.open(7, "s-v1-r1")
    chunk = b"x" * (64 * KiB - 1) + b"\n"
    for _ in range(40):  # 2.5 MiB through a 3 x 256 KiB log
        log.write(chunk)
        wait_until(lambda: log.pending == 0)
    log.write(b"the end\n")
    log.close()
    writer.close()
    folder = tmp_path / "logs" / "7"
    assert set(sizes(folder)) == {"s-v1-r1.log", "s-v1-r1.log.1", "s-v1-r1.log.2"}
    assert all(size <= LIMITS.file_bytes for size in sizes(folder).values())
    (out,) = read_logs(tmp_path / "logs", 7, None, 100)
    assert out.text.endswith("the end\n") and out.truncated
    assert out.size == sum(sizes(folder).values())


def test_a_script_keeps_the_logs_of_its_latest_replicas(tmp_path: Path, writer: LogWriter) -> None:
    for n in range(1, 5):
        log = writer.open(7, f"s-v1-r{n}")
        log.write(f"replica {n}\n".encode())
        log.close()
        path = tmp_path / "logs" / "7" / f"s-v1-r{n}.log"
        wait_until(path.exists)
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))  # r1 oldest, r4 newest
    running = writer.open(7, "s-v1-r5")  # a new replica: the oldest logs go
    running.write(b"replica 5\n")
    wait_until(lambda: (tmp_path / "logs" / "7" / "s-v1-r5.log").exists())
    names = [o.replica for o in read_logs(tmp_path / "logs", 7, None, 1000)]
    assert names == ["s-v1-r4", "s-v1-r5"]
    assert writer.running(7) == {"s-v1-r5"}
    assert [o.text for o in read_logs(tmp_path / "logs", 7, "s-v1-r4", 1000)] == ["replica 4\n"]


def test_a_writer_that_falls_behind_drops_and_counts(tmp_path: Path) -> None:
    limits = LogLimits(256 * KiB, 2, 2, 1 << 30, backlog_bytes=64 * KiB)
    writer = LogWriter(tmp_path / "logs", limits)
    folder = tmp_path / "logs" / "3"
    folder.mkdir(parents=True)
    # A disk that does not keep up: the writer thread blocks opening a fifo until we read.
    os.mkfifo(folder / "r1.log")
    log = writer.open(3, "r1")
    for _ in range(200):
        log.write(b"y" * 1024)
    assert log.dropped_total >= 200 * 1024 - 64 * KiB - 1024  # the loop never waited
    log.write(b"after\n")  # still dropped: the backlog is full
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append((folder / "r1.log").read_bytes()))
    reader.start()
    wait_until(lambda: log.pending == 0)
    log.write(b"caught up\n")
    log.close()
    writer.close()
    reader.join(10)
    text = b"".join(received).decode()
    assert f"{log.dropped_total} bytes of output dropped" in text
    assert text.endswith("caught up\n") and len(text) < 70 * KiB


async def test_the_pump_reads_a_flood_at_most_at_its_rate(tmp_path: Path) -> None:
    got: list[bytes] = []

    class Sink:
        closed = False

        def write(self, data: bytes) -> None:
            got.append(data)

        def close(self) -> None:
            Sink.closed = True

    pump = OutputPump(Sink(), 256 * KiB, "flood")
    write_fd = os.dup(pump.write_fd)
    pump.release_write_end()
    pump.start()
    os.set_blocking(write_fd, False)
    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < 2.0:  # write as fast as the pipe takes it
        try:
            sent += os.write(write_fd, b"z" * 65536)
        except BlockingIOError:
            await asyncio.sleep(0.005)
    os.close(write_fd)
    elapsed = time.monotonic() - began
    read_in_time = sum(map(len, got))
    # At most the rate per started second (plus one window), whatever was offered.
    assert read_in_time <= 256 * KiB * (int(elapsed) + 2), (read_in_time, sent)
    assert pump.throttled >= 1
    async with asyncio.timeout(15):
        while not Sink.closed:
            await asyncio.sleep(0.05)
    assert sum(map(len, got)) == sent  # nothing lost: the writer waited
