"""The scriptd runtime wire protocol (source of truth) and its Python frame codec.

The supervisor and the Python harness load this file by path (they run with
`python -I` inside the sandbox, on the script's interpreter); the daemon has
its own codec in daemon/serving/wire.py that follows this text. Standard library only.

Frames
------
Every message is one frame: a 4-byte big-endian unsigned length N, then N
bytes of UTF-8 JSON encoding one object with a string field "t" (the type).
N must be >= 2 and <= the receiver's max frame size (default 16 MiB,
`--max-frame`); a bigger or malformed frame is a protocol error and the
receiver closes the connection. Numbers are JSON numbers; NaN and Infinity are
never sent. Unknown fields must be ignored (fields may be added later).

Supervisor command line
-----------------------
  python -I [-S] runtimes/supervisor.py --language python|javascript --source DIR
      [--workers K=1] [--harness-dir DIR=the runtimes dir] [--node PATH]
      [--main FILE=main.py|main.js (else main.mjs, main.cjs)]
      [--max-output BYTES=1048576] [--max-frame BYTES=16777216]
      [--mode auto|fork|spawn] [--spares N] [--control-fd N=3]
      [--egress-socket PATH] [--egress-port N=3128] [--node-heap-mb MB]
      [--kind functions|step=functions] [--step-spec JSON] [--concurrency N=1]
  python: run it on the script's venv python (with -S it puts the venv's
  site-packages on sys.path itself: faster than site). javascript: on the
  runtime catalogue's python3, with --node naming the node binary and
  --node-heap-mb its V8 heap size (node --max-old-space-size). --mode auto = fork unless
  importing main started threads. --spares: workers booted ahead in spawn
  mode so that a respawn does not wait for an interpreter to start (default
  1 in spawn mode, 0 in fork mode). --egress-socket: the replica's socket to the
  daemon's egress proxy; the supervisor then first forks runtimes/egress_relay.py
  on 127.0.0.1:--egress-port (restarted if it dies, killed when the supervisor
  ends) and sets HTTP_PROXY, HTTPS_PROXY, NO_PROXY (and their lower-case forms)
  for every worker. When the socket's folder also holds lane sockets (w0.sock,
  w1.sock, ...), the relay listens for lane L on --egress-port + 1 + L, and each
  worker takes the lowest lane no live worker holds: its proxy variables point at
  that lane's port, and its "worker" frames carry "lane":L. Exit status: 0 after shutdown, SIGTERM
  or EOF on the control socket; 3 after load_error; 2 after a protocol error
  on the control socket. --kind step: main is a code step's body (below),
  compiled (not run) at load; --step-spec declares its inputs and outputs as
  {"inputs": {name: type code}, "outputs": {name: type code}} (names are
  identifiers not starting with "_", an output is never "log"; type codes as
  in runtimes/python/typed.py). A bad spec is a load_error of type
  StepSpecError naming every problem. Worker exit codes: 0 the daemon closed the worker
  socket, 2 protocol error, 70 internal error, anything else the user's
  code (os._exit, process.exit); 1 for node also means an exception no
  promise of the running call caught (the call got it as its error first).

Control socket (fd 3 of the supervisor, pid 1 of the sandbox, <-> daemon)
------------------------------------------------------------------------
supervisor -> daemon:
  {"t":"hello","language":"python"|"javascript","runtime":"python 3.11.7",
   "version":"3.11.7","functions":["f",...],"load_ms":12.3,"pid":1,
   "workers":K,"mode":"fork"|"spawn"}
      Sent once, after main was loaded, before any "worker". "functions":
      python: the functions defined in main.py itself (def, async def, also
      behind decorators that set __wrapped__), not imported ones, not classes,
      not names starting with "_", in definition order; javascript: the
      exported functions (ESM: named exports but `default`, in the module
      namespace's alphabetical order; CommonJS: function-valued properties of
      module.exports in their order), never classes. "mode" is how workers are made:
      "fork" (from the loaded supervisor) or "spawn" (a fresh interpreter per
      worker: always for javascript; for python when main started threads).
      "kind": "functions" or "step"; a step also has "inputs" and "outputs",
      its declared spec with type codes written canonically (UUIDs in lower
      case, a[f] as a["f"]), and "functions": [].
  {"t":"load_error","language":..,"runtime":..,"load_ms":..,
   "error":{"type":"SyntaxError","message":"...","traceback":"..."}}
      main failed to load (syntax error, missing module, exception at import,
      no main file). The supervisor then exits with code 3 (LOAD_ERROR_EXIT).
      Also sent (then exit 3) when workers fail to boot 5 times in a row.
  {"t":"worker","worker":N,"slot":S,"pid":P}  + exactly one fd (SCM_RIGHTS)
      The fd is the daemon's end of a fresh unix stream socketpair connected
      to worker N, which is ready to take calls. N is unique for the life of
      the supervisor (1, 2, 3, ...: a respawn gets a new N); S in 0..K-1 is
      the pool slot it fills. Sent at start and after every respawn. With
      egress lanes it also carries "lane":L (its own socket to the proxy).
      Only "worker" frames carry fds. One recvmsg may return several frames
      (the fd arrives with the bytes of its frame, which may come after
      other frames in the same read): queue the fds received and give one to
      each "worker" frame as it is decoded, in order.
  {"t":"worker_exit","worker":N,"slot":S,"pid":P,"code":c|null,
   "signal":s|null,"killed":bool}
      Worker N died; code is the exit status or null, signal the number of
      the signal that killed it or null; killed is true when the supervisor
      killed it (kill_worker, shutdown). A node worker whose V8 heap was
      exhausted (it aborts: signal 6, and its fatal-error report says so) also
      has "oom":"heap" and "heap_limit": the heap's limit in bytes.
      A new "worker" for slot S follows
      (immediately; after a short backoff when the slot keeps dying at once).
      After kill_worker it may come first: a killed worker's slot is filled
      at the kill, without waiting for its death.
  {"t":"pong","id":X,"workers":[{"worker":N,"slot":S,"pid":P},...]}
  {"t":"error","message":"..."}      a frame the supervisor did not understand
daemon -> supervisor:
  {"t":"kill_worker","worker":N}   SIGKILL worker N (e.g. its call passed the
                                   deadline); ignored when N is already gone.
  {"t":"ping","id":X}              answered by pong with the same id
  {"t":"shutdown"}                 SIGTERM every worker, SIGKILL after 5 s,
                                   exit 0. SIGTERM to the supervisor does the
                                   same; EOF on the control socket kills the
                                   workers at once and exits 0.

Worker socket (one per worker, received in "worker"; a worker serves one
frame at a time, in order; it exits when the daemon closes its end)
----------------------------------------------------------------------
With --concurrency N > 1 (functions only, never a code step) a worker serves up to
N calls at once: the daemon may write N calls back to back without waiting, and
results come back as calls end, in any order, matched by "id". python: `async def`
functions run as tasks on the worker's loop, sync ones in a pool of N threads
(runtimes/python/concurrently.py); javascript: side by side on the event loop, the
function getting a second argument {signal, deadline}. Then also:
  {"t":"cancel","id":"..."}  daemon -> worker: the call passed its deadline. The
      worker ends it and answers its result with error.type "Cancelled" (python: the
      task is cancelled; a sync call's thread cannot be stopped, so no answer comes
      until it ends; javascript: answered at once, the signal aborted, a later value
      dropped). The daemon kills the worker when no answer comes within its grace.
  {"t":"started","ids":["...",...]}  worker -> daemon: the calls a read brought, sent
      as soon as they are read and before any of them runs: none runs before the
      frame is in the kernel (a worker whose socket is full holds them until then).
      When the daemon loses a worker, the calls it had sent that were never
      acknowledged so are sent to another worker: they did not start. (The daemon
      reads what the worker wrote until its socket closes, a worker it killed too.)
  A result may carry "crashed":true (javascript): an exception no call caught (a
      throwing timer, an unhandled rejection) ends the worker, exit code 1, and every
      call in flight is answered with it as error first: it may belong to any of them.
daemon -> worker:
  {"t":"call","id":"...","function":"f","payload":{...},"deadline":1700000000.5}
      payload: python: a JSON object passed as keyword arguments (missing
      payload = {}); javascript: any JSON value passed as the one argument.
      deadline: unix seconds (informational; the daemon enforces it with
      kill_worker, or first with "cancel" at concurrency > 1).
  {"t":"ping","id":X}               answered between calls, in order
worker -> daemon:
  {"t":"result","id":"...","ok":true,"value":<json>,"stdout":"...",
   "stderr":"...","truncated":bool,"cpu_ms":1.2,"wall_ms":3.4}
  {"t":"result","id":"...","ok":false,
   "error":{"type":"ValueError","message":"...","traceback":"..."},
   "stdout":..,"stderr":..,"truncated":..,"cpu_ms":..,"wall_ms":..}
      error.type is the exception class name (javascript: error.name) or one
      of the harness's own: FunctionNotFound, BadPayload,
      SerializationError (the value is not JSON: set, bytes, NaN, BigInt,
      a cycle, ...), ResultTooLarge (the frame would pass max frame).
      traceback holds only the user's frames (no harness/loader frames).
      javascript errors may add "code" (e.g. "MODULE_NOT_FOUND"). message and
      traceback are each cut to 64 KiB (the traceback keeps its end).
      stdout/stderr: what the call printed, each cut at the max output size
      (default 1 MiB, `--max-output`) followed by TRUNCATION_MARKER; then
      "truncated" is true. cpu_ms is user+system CPU of the worker during the
      call (python also counts children it waited for).
  {"t":"pong","id":X,"pid":P}
  A `call` to a step's worker, or a `run` to a functions worker, answers
  ok:false with error.type "WrongKind".

Code steps (--kind step)
------------------------
A step's main (main.py; main.js) is its body, compiled once per worker (python:
once in the supervisor, before the workers fork) and run for every `run`
frame with `inputs` (read-only, the declared inputs) and `outputs` (the
declared outputs, each value checked as it is written, and outputs.log) in
scope. python: run as the module _scriptd_project.main in fresh globals, so
relative imports work and nothing leaks between calls. javascript: the body of
an async function (top-level await works; require, module, exports,
__filename, __dirname as in CommonJS; no import statements).
daemon -> worker:
  {"t":"run","id":"...","inputs":{name: typed value, ...},"deadline":...}
      Typed values: {"<type code>": <JSON>} or null (see runtimes/python/typed.py
      for every code). Numbers are exact: a step worker parses its frames
      without binary floats (python: decimal.Decimal; javascript: the digits
      of any number that is not a safe integer are kept), so the daemon must
      forward the digits it received. A declared input that is missing is
      null; an undeclared one, or a value of another type, is an InputError
      and the body does not run.
worker -> daemon:
  {"t":"result","id":"...","ok":true,"outputs_json":"{name: typed value, ...}",
   "logs":[{"ts":"2026-12-04T17:00:00.123456Z","message":"..."},...],
   "logs_discarded":N,"stdout":..,"stderr":..,"truncated":..,"cpu_ms":..,
   "wall_ms":..}
      outputs_json: the JSON text of an object holding every declared output,
      null ({"s": null}) when not written; a string, so that its numbers keep
      their exact digits through a receiver that parses frames with binary
      floats (the daemon forwards it as it is). logs: outputs.log(message) in order,
      each with its UTC timestamp (python: microseconds, javascript:
      milliseconds); a message over LOG_MESSAGE_MAX bytes (8 KiB) of UTF-8 is
      cut on a character boundary and ends with LOG_MARKER, the whole staying
      within 8 KiB; once the messages kept would pass LOG_TOTAL_MAX (100 KiB)
      that message and every later one is discarded, and counted in
      logs_discarded. stdout/stderr: captured as for calls.
  {"t":"result","id":"...","ok":false,"error":{"type","message","traceback"},
   "outputs_json":"{...only those written before the error...}","logs":..,...}
      The step raised (type is the exception's class; the traceback holds the
      body's own frames only), or the harness refused: InputError (inputs),
      OutputError (an undeclared output, or a value of the wrong type: raised
      at the write, in the body, so its traceback points at the line; or found
      at the end when a written list was changed), ResultTooLarge (outputs
      and logs dropped). Type errors name the field, the type expected and
      the value received.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start-up: annotations only
    import socket
    from typing import Any

MAX_FRAME_DEFAULT = 16 * 1024 * 1024
MAX_OUTPUT_DEFAULT = 1024 * 1024
LOAD_ERROR_EXIT = 3
TRUNCATION_MARKER = "\n[output truncated: {dropped} more bytes not shown]\n"
LOG_MESSAGE_MAX = 8 * 1024  # bytes of one outputs.log message, marker included
LOG_TOTAL_MAX = 100 * 1024  # bytes of all messages kept per step execution
LOG_MARKER = " [truncated: {dropped} more bytes]"
SOL_SOCKET, SCM_RIGHTS = 1, 1  # Linux values; `import socket` alone costs ~7 ms (enum)

_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A peer sent something that is not a valid frame."""


def _sibling(file: str, name: str) -> Any:
    """Load one of our own files under a private name (this file is loaded by path too)."""
    import os
    import sys

    if name in sys.modules:
        return sys.modules[name]
    external = sys.modules["_frozen_importlib_external"]
    spec = external.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), file))
    module = sys.modules["_frozen_importlib"].module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_codec = _sibling("protocol_json.py", "_scriptd_protocol_json")
dumps, loads, loads_exact = _codec.dumps, _codec.loads, _codec.loads_exact


def encode(message: dict[str, Any]) -> bytes:
    """One frame: length header + compact UTF-8 JSON.

    Raises TypeError/ValueError when the message is not strict JSON.
    """
    return encode_text(dumps(message))


def encode_text(text: str) -> bytes:
    """One frame of JSON text already made (a step's result with exact numbers)."""
    data = text.encode("utf-8")
    return _HEADER.pack(len(data)) + data


def decode_body(body: bytes | memoryview, exact: bool = False) -> dict[str, Any]:
    try:
        message = (loads_exact if exact else loads)(str(body, "utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("frame is not a JSON object with a string 't'")
    return message


def send(sock: socket.socket, frame: bytes, fds: tuple[int, ...] = ()) -> None:
    """Send one encoded frame; fds ride on its first byte (SCM_RIGHTS)."""
    if not fds:
        sock.sendall(frame)
        return
    rights = [(SOL_SOCKET, SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    sent = sock.sendmsg([frame], rights)
    if sent < len(frame):
        sock.sendall(frame[sent:])


class FrameDecoder:
    """Incremental decoder: feed bytes as they come, get whole messages."""

    def __init__(self, max_frame: int = MAX_FRAME_DEFAULT) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes | memoryview) -> list[dict[str, Any]]:
        buf = self._buf
        buf += data
        out = []
        pos, end = 0, len(buf)
        try:  # the frames read are dropped from the buffer once, at the end
            while end - pos >= 4:
                (size,) = _HEADER.unpack_from(buf, pos)
                check_size(size, self.max_frame)
                if end - pos - 4 < size:
                    break
                body = bytes(buf[pos + 4 : pos + 4 + size])
                pos += 4 + size
                out.append(decode_body(body))
        finally:
            del buf[:pos]
        return out


def check_size(size: int, max_frame: int) -> None:
    if size < 2 or size > max_frame:
        raise ProtocolError(f"frame of {size} bytes (allowed 2..{max_frame})")


class FrameReader:
    """Blocking reads of whole messages from one socket (a worker's serving loop).

    Why buffered: one recv_into a buffer kept for the socket's life brings a frame's
    length and body together (and any frame after it, kept for the next read), where
    reading the length, then the body, took two system calls a frame.
    exact: non-integer numbers as decimal.Decimal (loads_exact)."""

    def __init__(
        self, sock: socket.socket, max_frame: int = MAX_FRAME_DEFAULT, exact: bool = False
    ) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self.exact = exact
        self._buffer(_READ_SIZE)

    def _buffer(self, size: int) -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # unread bytes: _buf[_start:_end]

    def read(self) -> dict[str, Any] | None:
        """The next message; None on a clean EOF between frames."""
        while True:
            have = self._end - self._start
            if have >= 4:
                (size,) = _HEADER.unpack_from(self._buf, self._start)
                check_size(size, self.max_frame)
                if have >= 4 + size:
                    return self._take(size)
                if self._start + 4 + size > len(self._buf):
                    self._make_room(4 + size)
            elif not have:
                self._reset()
            elif self._end == len(self._buf):
                self._make_room(4)
            received = self.sock.recv_into(self._view[self._end :])
            if not received:
                if have:
                    raise ProtocolError("connection closed inside a frame")
                return None
            self._end += received

    def _take(self, size: int) -> dict[str, Any]:
        begin = self._start + 4
        self._start = begin + size
        return decode_body(self._view[begin : self._start], self.exact)

    def _reset(self) -> None:
        """Empty: read from the start again, in a buffer of the usual size (a big frame's
        buffer is let go once it was read)."""
        if len(self._buf) > _READ_SIZE:
            self._buffer(_READ_SIZE)
        self._start = self._end = 0

    def _make_room(self, frame_size: int) -> None:
        """Unread bytes moved to the front of a buffer that holds `frame_size` bytes."""
        unread = self._buf[self._start : self._end]
        if len(self._buf) < frame_size:
            self._buffer(frame_size)
        self._buf[: len(unread)] = unread
        self._start, self._end = 0, len(unread)


_READ_SIZE = 64 * 1024
