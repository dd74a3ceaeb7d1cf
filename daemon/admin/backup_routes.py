"""GET /v1/backup: an online backup of the daemon's state, streamed as a tar.gz.

The daemon owns the state dir, so it does the work (daemon/lifecycle/backup.py) and
the client only writes the stream where it wants it (`scriptctl backup -o FILE`):
the daemon never writes to a path a caller names. The database is copied before the
answer starts, so a failure there is a JSON error; a failure once the body streams
ends the connection early, which the client reports as an incomplete download. The
tar is written in a thread into a small queue the handler drains (backpressure: a
slow client slows the writer, not the daemon's memory).
"""

from __future__ import annotations

import asyncio
import io
import logging

from aiohttp import web

from daemon.admin.http import caller, lifecycle
from daemon.admin.openapi import Route
from daemon.core.errors import BadRequest, Conflict
from daemon.lifecycle.backup import BackupError, BackupOptions, daemon_version, write_backup

__all__ = ["ROUTES"]

log = logging.getLogger(__name__)
QUEUE_CHUNKS = 8
CHUNK = 1 << 20


class _QueueSink(io.RawIOBase):
    """The writer thread's file: each write waits for room in the handler's queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]):
        self.loop, self.queue = loop, queue
        self.reader_gone = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.reader_gone:
            raise BrokenPipeError("the client stopped reading the backup")
        chunk = bytes(data)
        asyncio.run_coroutine_threadsafe(self.queue.put(chunk), self.loop).result()
        return len(chunk)


def _flag(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} = {text!r}: true or false", field=name)
    return text in ("true", "1")


async def get_backup(request: web.Request) -> web.StreamResponse:
    options = BackupOptions(_flag(request, "workspaces"), _flag(request, "include_key"))
    lc, who = lifecycle(request), caller(request)
    ctx = lc.ctx
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_CHUNKS)
    sink = _QueueSink(asyncio.get_running_loop(), queue)

    def produce() -> None:
        buffered = io.BufferedWriter(sink, CHUNK)  # type: ignore[type-var]
        try:
            write_backup(ctx.store, ctx.state, ctx.config, buffered, options, who)
            buffered.flush()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), sink.loop).result()

    log.info("backup for %s: workspaces=%s, secrets key=%s", who, *vars(options).values())
    writer = asyncio.create_task(asyncio.to_thread(produce), name="backup")
    first = await queue.get()  # the database is copied by now, or the writer failed
    if first is None:
        await _result(writer)  # raises the reason as the JSON error
    resp = web.StreamResponse(headers={
        "Content-Type": "application/gzip",
        "Content-Disposition": 'attachment; filename="scriptd-backup.tar.gz"',
        "X-Scriptd-Version": daemon_version(),
    })  # fmt: skip
    try:
        await resp.prepare(request)
        chunk = first
        while chunk is not None:
            await resp.write(chunk)
            chunk = await queue.get()
    finally:
        sink.reader_gone = True
        while not queue.empty():  # a put the writer waits on completes, then it stops
            queue.get_nowait()
        await asyncio.wait([writer])
    failure = writer.exception()
    if failure is not None:  # the body is cut short: the client sees an incomplete download
        log.error("backup for %s failed while streaming: %s", who, failure)
        raise failure
    await resp.write_eof()
    return resp


async def _result(writer: asyncio.Task[None]) -> None:
    try:
        await writer
    except BackupError as exc:
        raise Conflict(f"backup failed: {exc}") from None


ROUTES = (
    Route("GET", "/v1/backup", get_backup,
          "An online backup (tar.gz): the store, archives, build logs, uploads; workspaces and "
          "the secrets key on request", None, "gzip", query=("workspaces", "include_key")),
)  # fmt: skip
