"""A small HTTP/JSON client for the scriptd admin API over its unix socket.

Standard library only: `http.client` with a connection class that dials a unix
socket. Uploads and downloads are streamed in blocks, so a 1 GB archive never
sits in memory.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from daemon.cli.errors import ApiError, CliError, UnreachableError

DEFAULT_SOCKET = "/run/scriptd/admin.sock"
SOCKET_ENV = "SCRIPTD_SOCKET"
BLOCK_SIZE = 1 << 16
# Per socket operation, not per request: a slow upload keeps going as long as bytes move.
IO_TIMEOUT_S = 300.0

ProgressFn = Callable[[int, int | None], None]


def resolve_socket(flag: str | None) -> str:
    """--socket wins over $SCRIPTD_SOCKET, which wins over the default path."""
    return flag or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def path_of(*parts: str | int) -> str:
    """An API path with each part percent-encoded: path_of("v1", "scripts", name)."""
    return "/" + "/".join(quote(str(p), safe="") for p in parts)


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is a unix stream socket."""

    def __init__(self, socket_path: str, timeout: float | None = IO_TIMEOUT_S) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=BLOCK_SIZE)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AdminClient:
    """The admin API as Python calls; every failure becomes a CliError."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        if query:
            path += "?" + urlencode(query)
        return self.call("GET", path)

    def call(
        self, method: str, path: str, payload: Any = None, *, json_text: bytes | None = None,
        exact: bool = False,
    ) -> Any:  # fmt: skip
        """Send a JSON request (body only when payload is not None), return its JSON.
        `json_text`: a body already written as JSON (numbers with all their digits).
        `exact`: the answer's non-integer numbers are Decimals (all their digits)."""
        body = json_text if json_text is not None else None
        if body is None and payload is not None:
            body = json.dumps(payload).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        with self._exchange(method, path, body, headers) as response:
            return _decode_json(response.read(), exact)

    def lines(self, path: str) -> Iterator[Any]:
        """The JSON objects of a stream of JSON lines (`logs --follow`), as they come;
        empty lines (the daemon's heartbeats) are skipped. Never times out."""
        with self._exchange("GET", path, None, {}, timeout=None) as response:
            while line := response.readline():
                if line.strip():
                    yield _decode_json(line)

    def text(self, path: str) -> str:
        with self._exchange("GET", path, None, {}) as response:
            return response.read().decode("utf-8", errors="replace")

    def upload(
        self,
        file: Path,
        filename: str,
        progress: ProgressFn | None = None,
        api_path: str = "/v1/archives",
    ) -> Any:
        """POST the file's bytes to `api_path` (an archive by default), streamed;
        returns the JSON answer ({"archive_id", ...} for an archive)."""
        size = file.stat().st_size
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-Filename": quote(filename, safe=" .-_"),
        }
        with open(file, "rb") as source:
            body = _ProgressReader(source, size, progress) if progress else source
            with self._exchange("POST", api_path, body, headers) as response:
                return _decode_json(response.read())

    def download(self, path: str, sink: IO[bytes], progress: ProgressFn | None = None) -> int:
        """Stream a GET body into `sink`; returns the number of bytes written."""
        with self._exchange("GET", path, None, {}) as response:
            total = _content_length(response)
            written = 0
            while chunk := response.read(BLOCK_SIZE):
                try:
                    sink.write(chunk)
                except OSError as exc:
                    # A local disk problem, not a connection problem: say so.
                    raise CliError(f"cannot write the download: {_reason(exc)}") from exc
                written += len(chunk)
                if progress:
                    progress(written, total)
            if total is not None and written != total:
                raise UnreachableError(
                    f"download from scriptd ended early: {written} of {total} bytes"
                )
            return written

    @contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        body: Any,
        headers: dict[str, str],
        timeout: float | None = IO_TIMEOUT_S,
    ) -> Iterator[http.client.HTTPResponse]:
        """Open a connection, send, check the status; yields the response to read."""
        conn = UnixHTTPConnection(self.socket_path, timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise UnreachableError(self._unreachable(exc)) from exc
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                if response.status >= 400:
                    raise _api_error(response)
                yield response
            except (OSError, http.client.HTTPException) as exc:
                raise UnreachableError(
                    f"lost the connection to scriptd at {self.socket_path}: {_reason(exc)}"
                ) from exc
        finally:
            conn.close()

    def _unreachable(self, exc: OSError) -> str:
        hint = "is it running? is --socket right?"
        if isinstance(exc, PermissionError):
            hint = "run as root or as a member of the socket's group"
        return f"cannot reach scriptd at {self.socket_path}: {_reason(exc)} ({hint})"


class _ProgressReader:
    """Wraps a file so that http.client's block reads report progress."""

    def __init__(self, source: IO[bytes], total: int, progress: ProgressFn) -> None:
        self.source = source
        self.total = total
        self.done = 0
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        self.done += len(chunk)
        self.progress(self.done, self.total)
        return chunk


def _api_error(response: http.client.HTTPResponse) -> ApiError:
    raw = response.read()
    try:  # printed, never computed on: numbers keep their digits (a step's outputs)
        body: Any = json.loads(raw, parse_float=Decimal)
    except ValueError:
        body = None
    text = raw.decode("utf-8", errors="replace").strip().splitlines()
    fallback = f"scriptd answered HTTP {response.status} {response.reason}"
    if text and body is None:
        fallback += f": {text[0][:200]}"
    return ApiError(response.status, body, fallback)


def _decode_json(raw: bytes, exact: bool = False) -> Any:
    try:
        return json.loads(raw, parse_float=Decimal if exact else float) if raw else None
    except ValueError as exc:
        raise CliError(f"scriptd answered something that is not JSON: {raw[:80]!r}") from exc


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.getheader("Content-Length")
    return int(value) if value and value.isdigit() else None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
