"""Staging an uploaded project archive: the bytes go to a file of their own in the
state dir's staging folder, bounded by `archive.max_bytes`, and the archive waits
there (an hour) for a validate or a create to use it by its id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from daemon.core.errors import PayloadTooLarge
from daemon.lifecycle import request_checks
from daemon.lifecycle.actions import Lifecycle
from daemon.store.state_dir import StagedArchive

__all__ = ["stage_archive"]

FLUSH_BYTES = 1 << 20  # one thread hop per MiB, not per read


async def stage_archive(
    lc: Lifecycle, raw_filename: str | None, chunks: AsyncIterator[bytes]
) -> StagedArchive:
    """Write `chunks` as a staged archive; nothing stays behind when it fails."""
    limit = lc.ctx.config.max_archive_bytes
    filename = request_checks.upload_filename(raw_filename)
    upload = await lc.ctx.db(lc.ctx.state.stage_archive, filename)
    size = 0
    try:
        with await asyncio.to_thread(open, upload.path, "wb") as f:
            buffer = bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the archive is larger than the limit of {limit} bytes")
                buffer += chunk
                if len(buffer) >= FLUSH_BYTES:
                    await asyncio.to_thread(f.write, bytes(buffer))
                    buffer.clear()
            await asyncio.to_thread(f.write, bytes(buffer))
    except BaseException:
        await lc.ctx.db(lc.ctx.state.drop_staged_archive, upload.archive_id)
        raise
    return StagedArchive(upload.archive_id, filename, size, upload.path)
