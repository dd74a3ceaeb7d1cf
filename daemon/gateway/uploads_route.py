"""`PUT /v1/uploads/{filename}`: add a file to the account's uploads (UPLOADS_DIR).

Every replica sees the uploads folder (config `uploads.dir`) read-only at
UPLOADS_DIR. Who may write it: any valid API key of a script that is Deployed
(serving) right now. Keys of other scripts work too, since the folder belongs to
the account, not to a script; keys of scripts that are not Deployed do not,
as everywhere else ("keys work only while Deployed").

The body is streamed to a temporary file in the same folder (never held in
memory), refused with 413 past `uploads.max_file_bytes`, then renamed into place
at once: a replica reads either the old file or the new one, never half of it.
A file that would take the folder past `uploads.max_total_bytes` (all its files
together, a replaced file's old size left out) is refused with 413 and removed.
Names follow `uploads_folder.file_name` (the admin route's rule): letters, digits,
'.', '_' and '-', starting with a letter or digit, no '..'. A file of that name is
replaced (PUT). 201 with `{"name", "size", "modified_at"}`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from aiohttp import web

from daemon.core.errors import ScriptdError
from daemon.gateway.app import JSON, Gateway, error_response, refusal
from daemon.keys.checker import KeyOk
from daemon.store import uploads_folder

__all__ = ["Uploads"]

CHUNK = 1 << 20


class _TooLarge(Exception):
    pass


class Uploads:
    """The handler of `PUT /v1/uploads/{filename}` (files: daemon/store/uploads_folder.py)."""

    def __init__(
        self, gateway: Gateway, folder: Path, max_bytes: int, max_total_bytes: int = 10 << 30
    ) -> None:
        self.gateway = gateway
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes

    async def put(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        check = await self.gateway.keys.check(auth, self.gateway.client(request))
        if type(check) is not KeyOk:
            return refusal(check)  # type: ignore[arg-type]
        if self.gateway.routes.serving(check.script) is None:
            return error_response(
                403, "forbidden", f"the key's script {check.script!r} is not Deployed: "
                "uploads take a key of a Deployed script",
            )  # fmt: skip
        try:
            name = uploads_folder.file_name(request.match_info["filename"])
            length = request.content_length
            if length is not None and length > self.max_bytes:
                raise _TooLarge
            stored = await self._receive(request, name)
        except _TooLarge:
            return error_response(
                413, "payload_too_large",
                f"the file is larger than {self.max_bytes} bytes (uploads.max_file_bytes)",
            )  # fmt: skip
        except ScriptdError as exc:  # a bad name (400), a folder in the way (409), full (413)
            return web.Response(
                body=orjson.dumps({"error": exc.to_json()}),
                status=exc.http_status,
                headers={"Content-Type": JSON},
            )
        body = orjson.dumps(stored.to_json())
        return web.Response(body=body, status=201, headers={"Content-Type": JSON})

    async def _receive(self, request: web.Request, name: str) -> uploads_folder.StoredFile:
        tmp, sink = await asyncio.to_thread(uploads_folder.open_temporary, self.folder)
        try:
            with sink:
                size, buf = 0, bytearray()
                async for chunk in request.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise _TooLarge
                    buf += chunk
                    if len(buf) >= CHUNK:  # one thread hop per MiB, not per read
                        await asyncio.to_thread(sink.write, bytes(buf))
                        buf.clear()
                await asyncio.to_thread(sink.write, bytes(buf))
            return await asyncio.to_thread(
                uploads_folder.commit, tmp, self.folder, name, True, self.max_total_bytes
            )
        except BaseException:
            await asyncio.to_thread(uploads_folder.abandon, tmp)
            raise
