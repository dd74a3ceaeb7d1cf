"""Streams a zip to an admin API client (an export, a sample project): chunks read in
a thread, with Content-Length set. The zips come from daemon/lifecycle/project_zips.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from daemon.lifecycle.project_zips import export_zip, sample_zip

__all__ = ["export_zip", "sample_zip", "send_file"]

CHUNK = 1 << 20


async def send_file(
    request: web.Request, path: Path, filename: str, temporary: bool
) -> web.StreamResponse:
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{filename}"',
            }
        )
        response.content_length = size
        await response.prepare(request)
        with await asyncio.to_thread(open, path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        if temporary:
            await asyncio.to_thread(path.unlink, True)
