"""The answer slots of one front connection (daemon/gateway/front.py): one per
request, written strictly in the order of the requests, and the writer a bridged
request's server (daemon/gateway/bridge.py) streams its answer into."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from daemon.gateway.front_types import BodySink

__all__ = ["Owner", "Slot", "SlotWriter"]


class Slot:
    """The answer to one request, written when every earlier answer is."""

    __slots__ = ("data", "interim", "request_close", "streamed")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.interim = b""  # 100 Continue, written once this slot is next
        self.request_close = False
        self.streamed = bytearray()  # a bridged answer's bytes that wait their turn


class Owner(Protocol):
    """What a SlotWriter uses of its connection."""

    slots: deque[Slot]
    transport: asyncio.Transport | None
    sink: BodySink | None

    def flush(self) -> None: ...


class SlotWriter:
    """What a bridged request's server writes its answer to: its bytes go out in
    the order of the requests; `close` ends the answer and the connection."""

    def __init__(self, conn: Owner, slot: Slot) -> None:
        self._conn = conn
        self._slot = slot

    def write(self, data: bytes) -> None:
        conn, slot = self._conn, self._slot
        if slot.data is not None:
            return  # ended already
        if conn.slots and conn.slots[0] is slot and conn.transport is not None:
            conn.transport.write(data)
        else:
            slot.streamed += data

    def close(self) -> None:
        conn, slot = self._conn, self._slot
        conn.sink = None
        if slot.data is None:
            slot.data, slot.request_close = bytes(slot.streamed), True
            slot.streamed.clear()
            if conn.slots and conn.slots[0] is slot:
                conn.flush()

    def pause_reading(self) -> None:
        if self._conn.transport is not None:
            self._conn.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._conn.transport is not None:
            self._conn.transport.resume_reading()

    def get_extra_info(self, name: str, default: object = None) -> object:
        transport = self._conn.transport
        return default if transport is None else transport.get_extra_info(name, default)

    @property
    def closed(self) -> bool:
        return self._conn.transport is None or self._conn.transport.is_closing()
