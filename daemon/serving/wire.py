"""The daemon's side of the runtime wire protocol (runtimes/protocol.py is the source of truth).

Frames are a 4-byte big-endian length followed by one UTF-8 JSON object. This module holds:

- `encode` / `FrameDecoder`: the codec (orjson, no per-frame copies beyond the slice);
- `FrameProtocol`: an asyncio protocol for a worker socket (uvloop reads it in C and we
  decode in `data_received`, so a call costs one write and one read callback);
- `ControlChannel`: the control socket to a supervisor, read with `socket.recv_fds` from a
  loop reader, because the supervisor attaches a worker's socket to its "worker" frame
  with SCM_RIGHTS and asyncio transports drop ancillary data.

The daemon never imports runtimes/: it launches them as files and speaks this codec.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import orjson

__all__ = [
    "MAX_FRAME_BYTES",
    "ControlChannel",
    "FrameDecoder",
    "FrameProtocol",
    "ProtocolError",
    "encode",
    "encode_call",
    "open_worker_channel",
]

MAX_FRAME_BYTES = 256 * 1024 * 1024  # a frame past this is a broken or hostile peer
_HEADER = struct.Struct(">I")
_RECV_BYTES = 256 * 1024
_MAX_FDS = 16  # per recvmsg; the supervisor attaches one fd per "worker" frame

Frame = dict[str, Any]
FrameHandler = Callable[[Frame], None]
CloseHandler = Callable[[BaseException | None], None]


class ProtocolError(Exception):
    """The peer sent something that is not a frame of the protocol."""


def encode(frame: Frame) -> bytes:
    """One frame: length prefix + orjson body."""
    body = orjson.dumps(frame)
    return _HEADER.pack(len(body)) + body


def encode_call(
    call_id: str,
    function: str,
    deadline: float,
    payload: Any = None,
    payload_json: bytes | None = None,
) -> bytes:
    """A call frame. `payload_json`, when given, is spliced in as it is: it must be the
    JSON text of one object, already checked by the caller (saves a parse and a dump)."""
    if payload_json is None:
        frame = {"t": "call", "id": call_id, "function": function, "deadline": deadline}
        frame["payload"] = payload
        return encode(frame)
    head = orjson.dumps({"t": "call", "id": call_id, "function": function, "deadline": deadline})
    body = b"".join((head[:-1], b',"payload":', payload_json, b"}"))
    return _HEADER.pack(len(body)) + body


def encode_run(call_id: str, deadline: float, inputs_json: bytes) -> bytes:
    """A code step's run frame. `inputs_json` is spliced in as it is: the JSON text of
    one object of typed values, already checked, whose numbers keep their digits."""
    head = orjson.dumps({"t": "run", "id": call_id, "deadline": deadline})
    body = b"".join((head[:-1], b',"inputs":', inputs_json, b"}"))
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Turns a byte stream into frames; feed() returns the frames completed by `data`."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        if not buf:  # the common case: frames read whole, decoded from `data` itself
            end = len(data)
            if end > 4 and _HEADER.unpack_from(data)[0] == end - 4 <= self._max:
                return [_loads(memoryview(data)[4:])]  # one frame, the whole read
            frames, pos = self._split(data)
            if pos < len(data):
                buf += memoryview(data)[pos:]
            return frames
        buf += data
        frames, pos = self._split(buf)
        if pos:
            del buf[:pos]
        return frames

    def _split(self, data: bytes | bytearray) -> tuple[list[Frame], int]:
        """The whole frames at the start of `data`, and where the rest begins."""
        frames: list[Frame] = []
        pos = 0
        end = len(data)
        while end - pos >= 4:
            (size,) = _HEADER.unpack_from(data, pos)
            if size > self._max:
                raise ProtocolError(f"frame of {size} bytes is over the {self._max} byte limit")
            if end - pos - 4 < size:
                break
            frames.append(_loads(memoryview(data)[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        return frames, pos

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)


def _loads(body: memoryview) -> Frame:
    try:
        frame = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    finally:
        body.release()
    if not isinstance(frame, dict):
        raise ProtocolError("frame is not a JSON object")
    return frame


class FrameProtocol(asyncio.Protocol):
    """A worker socket: frames in through `on_frame`, out through `send`.

    Any decode error closes the transport; `on_close` then runs once with the reason.
    """

    def __init__(self, on_frame: FrameHandler, on_close: CloseHandler) -> None:
        self._on_frame = on_frame
        self._on_close = on_close
        self._decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self._abort(exc)
            return
        for frame in frames:
            self._on_frame(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_close(exc)

    def send(self, frame: Frame) -> None:
        self.send_bytes(encode(frame))

    def send_bytes(self, data: bytes) -> None:
        if self.transport is None:
            raise ConnectionResetError("worker socket is closed")
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _abort(self, exc: BaseException) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._on_close(exc)
        self._on_close = _ignore_close


def _ignore_close(exc: BaseException | None) -> None:
    pass


async def open_worker_channel(
    sock: socket.socket, on_frame: FrameHandler, on_close: CloseHandler
) -> FrameProtocol:
    """Wrap a received worker socket in a FrameProtocol on the running loop."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_unix_connection(
        lambda: FrameProtocol(on_frame, on_close), sock=sock
    )
    return proto


class ControlChannel:
    """The control socket to one supervisor.

    Received fds are queued in arrival order; a frame that carries one (a "worker" frame)
    takes it with `take_fd()` from inside `on_frame`. The kernel delivers an fd with the
    first byte of the sendmsg that carried it, so it is always queued before the frame it
    belongs to is complete. Fds nobody took are closed when the channel closes.
    """

    def __init__(self, sock: socket.socket, on_frame: FrameHandler, on_close: CloseHandler) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._on_frame = on_frame
        self._on_close: CloseHandler = on_close
        self._decoder = FrameDecoder()
        self._fds: deque[int] = deque()
        self._out = bytearray()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._on_readable)

    @property
    def closed(self) -> bool:
        return self._closed

    def take_fd(self) -> int | None:
        """The oldest received fd not yet taken (the caller owns it now)."""
        return self._fds.popleft() if self._fds else None

    def send(self, frame: Frame) -> None:
        """Queue a frame; written now if the socket takes it, else when it is writable."""
        if self._closed:
            raise ConnectionResetError("control socket is closed")
        pending = bool(self._out)
        self._out += encode(frame)
        if not pending:
            self._flush()

    def close(self, exc: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._loop.remove_writer(self._sock.fileno())
        self._sock.close()
        while self._fds:
            os.close(self._fds.popleft())
        self._on_close(exc)

    def _on_readable(self) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(
                self._sock, _RECV_BYTES, _MAX_FDS, socket.MSG_CMSG_CLOEXEC
            )
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(exc)
            return
        self._fds.extend(fds)
        if flags & socket.MSG_CTRUNC:
            self.close(ProtocolError("control message truncated: too many fds in one message"))
            return
        if not data:
            self.close(None)
            return
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self.close(exc)
            return
        for frame in frames:
            if self._closed:
                return
            self._on_frame(frame)

    def _flush(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.close(exc)
            return
        del self._out[:sent]
        if self._out:
            self._loop.add_writer(self._sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._sock.fileno())
        if not self._closed:
            self._flush()
