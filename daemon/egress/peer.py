"""One side of a relayed HTTP/1.1 connection: an h11 state machine over asyncio
streams, with byte counters and batched writes (a response head, a small body and its
end go out in one write instead of three)."""

from __future__ import annotations

import asyncio
from typing import Any

import h11

READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024


class HttpPeer:
    def __init__(
        self, role: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.conn = h11.Connection(role, max_incomplete_event_size=MAX_HEAD)
        self.reader = reader
        self.writer = writer
        self.sent = 0
        self.received = 0
        self._pending: list[bytes] = []

    async def next_event(self, flush_first: HttpPeer | None = None) -> Any:
        """The next h11 event, reading as needed. Before waiting on the network, the
        other side's batched writes are flushed, so nothing sits in a buffer while
        this side waits for an answer to it."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if flush_first is not None:
                await flush_first.flush()
            await self.flush()
            data = await self.reader.read(READ_SIZE)
            self.received += len(data)
            self.conn.receive_data(data)

    def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.sent += len(data)
            self._pending.append(data)

    async def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self.writer.write(data)
        await self.writer.drain()

    @property
    def reusable(self) -> bool:
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    def close(self) -> None:
        self.writer.close()
