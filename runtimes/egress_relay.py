"""The replica's way out: a listener on the sandbox's loopback that relays every
connection, byte for byte, to the daemon's egress proxy over the unix socket bound
into the sandbox. HTTP_PROXY / HTTPS_PROXY point at the listener; the proxy knows
the replica by the socket, so nothing the script sends can change who it is.

Worker lanes: when the daemon made lane sockets beside the replica's socket (`w0.sock`,
`w1.sock`, ...), lane N also has a listener of its own, on the port after the shared
one plus N, relayed to its socket. The supervisor points each worker at a lane's port,
so the proxy knows which worker sent what (for the call's HTTP log).

The supervisor runs it in a process of its own (forked before any worker exists),
so the relay never shares the supervisor's loop or its fork-time state:
`start(port, socket_path)` returns that process's pid. It dies with the sandbox
(pid 1, the supervisor, takes its pid namespace down with it).

Non-blocking, one `selectors` loop, backpressure per direction: a side whose peer
cannot take more is not read until the peer drains. Standard library only,
Python 3.8+.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

READ_SIZE = 64 * 1024
BACKLOG = 128
# How often an idle relay looks whether its supervisor is still there (a system call).
PARENT_CHECK_S = 1.0


class Direction:
    """Bytes flowing from one socket to the other."""

    def __init__(self, source: socket.socket, sink: socket.socket) -> None:
        self.source = source
        self.sink = sink
        self.pending = b""
        self.eof = False  # the source has closed its sending side
        self.done = False  # ... and everything was passed on, sink shut for writing


class Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.up = Direction(client, upstream)
        self.down = Direction(upstream, client)

    def sockets(self) -> tuple[socket.socket, socket.socket]:
        return self.up.source, self.up.sink


class Relay:
    def __init__(self, listener: socket.socket, socket_path: str) -> None:
        self.selector = selectors.DefaultSelector()
        self.pairs: dict[socket.socket, Pair] = {}
        self.listeners: dict[socket.socket, str] = {}  # listener -> the socket it leads to
        self.add_listener(listener, socket_path)

    def add_listener(self, listener: socket.socket, socket_path: str) -> None:
        listener.setblocking(False)
        self.listeners[listener] = socket_path
        self.selector.register(listener, selectors.EVENT_READ)

    def run_forever(self, parent: int) -> None:
        """Relay until the process that started it (the supervisor, `parent`) is gone.
        In a sandbox the supervisor is pid 1 and its end ends everything; run as a
        plain process (tests), a relay whose supervisor was SIGKILLed would run on."""
        while os.getppid() == parent:
            self.run_once(PARENT_CHECK_S)

    def run_once(self, timeout: float | None) -> None:
        for key, events in self.selector.select(timeout):
            sock = key.fileobj
            if sock in self.listeners:
                self._accept(sock)  # type: ignore[arg-type]
                continue
            pair = self.pairs.get(sock)  # type: ignore[arg-type]
            if pair is None:
                continue
            if events & selectors.EVENT_READ:
                self._read(pair, pair.up if sock is pair.up.source else pair.down)
            if events & selectors.EVENT_WRITE and sock in self.pairs:
                self._write(pair, pair.down if sock is pair.up.source else pair.up)
            if sock in self.pairs:
                self._update(pair)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.listeners[listener])  # a local socket: connects at once
        except OSError:
            client.close()
            upstream.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
        pair = Pair(client, upstream)
        for sock in pair.sockets():
            self.pairs[sock] = pair
            self.selector.register(sock, selectors.EVENT_READ)

    def _read(self, pair: Pair, direction: Direction) -> None:
        try:
            data = direction.source.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(pair)
            return
        if not data:
            direction.eof = True
        else:
            direction.pending += data
        self._write(pair, direction)

    def _write(self, pair: Pair, direction: Direction) -> None:
        if direction.pending:
            try:
                sent = direction.sink.send(direction.pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(pair)
                return
            direction.pending = direction.pending[sent:]
        if direction.eof and not direction.pending and not direction.done:
            direction.done = True
            with contextlib.suppress(OSError):
                direction.sink.shutdown(socket.SHUT_WR)

    def _update(self, pair: Pair) -> None:
        """Read a side only while its bytes can go on; watch a side for writing only
        while bytes wait for it; close when both directions are done."""
        if pair.up.done and pair.down.done:
            self._close(pair)
            return
        for sock in pair.sockets():
            incoming = pair.up if sock is pair.up.source else pair.down
            outgoing = pair.down if sock is pair.up.source else pair.up
            mask = 0
            if not incoming.eof and not incoming.pending:
                mask |= selectors.EVENT_READ
            if outgoing.pending:
                mask |= selectors.EVENT_WRITE
            self._watch(sock, mask)

    def _watch(self, sock: socket.socket, mask: int) -> None:
        registered = self.selector.get_map().get(sock)
        if registered is None and mask:
            self.selector.register(sock, mask)
        elif registered is not None and not mask:
            self.selector.unregister(sock)
        elif registered is not None and registered.events != mask:
            self.selector.modify(sock, mask)

    def _close(self, pair: Pair) -> None:
        for sock in pair.sockets():
            self.pairs.pop(sock, None)
            if sock in self.selector.get_map():
                self.selector.unregister(sock)
            sock.close()


def listen(port: int) -> socket.socket:
    """The loopback listener (port 0: any free port, for tests)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(BACKLOG)
    return listener


# Inside the sandbox only the sandbox itself is on loopback: never proxied.
NO_PROXY = "localhost,127.0.0.1,::1"


def proxy_env(port: int) -> dict[str, str]:
    """The variables every common client reads (both cases: curl and Python read the
    lower-case ones, others the upper-case)."""
    url = f"http://127.0.0.1:{port}"
    env = {"HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": NO_PROXY}
    return {**env, **{name.lower(): value for name, value in env.items()}}


def lane_sockets(socket_path: str) -> list[str]:
    """The worker lanes' sockets the daemon made beside the replica's (w0.sock, ...)."""
    folder = os.path.dirname(socket_path)
    lanes = []
    while os.path.exists(os.path.join(folder, f"w{len(lanes)}.sock")):
        lanes.append(os.path.join(folder, f"w{len(lanes)}.sock"))
    return lanes


def lane_port(port: int, lane: int) -> int:
    return port + 1 + lane


def setup(port: int, socket_path: str) -> int:
    """Start the relay and point this process's environment (inherited by every worker)
    at it; return the relay's pid. Call before anything else starts, so the relay
    process inherits no handlers or threads."""
    os.environ.update(proxy_env(port))
    return start(port, socket_path)


def start(port: int, socket_path: str) -> int:
    """Fork the relay process; return its pid once its listeners are bound (so a
    worker started after this finds its port open)."""
    listeners = {listen(port): socket_path}
    for lane, path in enumerate(lane_sockets(socket_path)):
        listeners[listen(lane_port(port, lane))] = path
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            relay = None
            for listener, path in listeners.items():
                if relay is None:
                    relay = Relay(listener, path)
                else:
                    relay.add_listener(listener, path)
            assert relay is not None
            relay.run_forever(parent)
        finally:
            os._exit(70)
    for listener in listeners:
        listener.close()
    return pid


def main(argv: list[str]) -> None:
    """`python egress_relay.py PORT SOCKET`: run in the foreground; prints the port it
    listens on (useful with port 0)."""
    if len(argv) != 2:
        raise SystemExit("usage: egress_relay.py PORT SOCKET")
    listener = listen(int(argv[0]))
    print(listener.getsockname()[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        Relay(listener, argv[1]).run_forever(os.getppid())


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
