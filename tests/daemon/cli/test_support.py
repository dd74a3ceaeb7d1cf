"""A fake admin API on a real unix socket, for scriptctl's tests (holds no tests).

Routes are `(method, path) -> handler(request) -> Reply`; every request is kept in
`server.requests` so that tests can check what the CLI sent.
"""

from __future__ import annotations

import io
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from daemon.cli.main import main


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"


Handler = Callable[[Request], Reply]


@dataclass
class FakeApi:
    socket_path: str
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def route(self, method: str, path: str, reply: Reply | Handler) -> None:
        self.routes[(method, path)] = reply if callable(reply) else (lambda _r: reply)

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]


def _handler_class(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
            api.requests.append(request)
            handler = api.routes.get((self.command, self.path))
            if handler is None:
                reply = Reply(404, {"error": {"type": "not_found", "message": "no such route"}})
            else:
                reply = handler(request)
            data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def fake_api(tmp: Path) -> Iterator[FakeApi]:
    api = FakeApi(str(tmp / "admin.sock"))
    server = _Server(api.socket_path, _handler_class(api))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(api: FakeApi, *argv: str) -> Run:
    """Run scriptctl in-process against the fake API, capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["--socket", api.socket_path, *argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Run(code, out.getvalue(), err.getvalue())


def error(status: int, kind: str, message: str, **extra: Any) -> Reply:
    return Reply(status, {"error": {"type": kind, "message": message, **extra}})
