"""Uploads from a browser or a client, streamed to disk: a project archive staged for a
validate or a create (bounded by `archive.max_bytes`, kept an hour), and an account
upload (UPLOADS_DIR, bounded per file and in total)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from daemon.config.daemon_config import Config
from daemon.core.errors import PayloadTooLarge
from daemon.lifecycle import request_checks
from daemon.lifecycle.actions import Lifecycle
from daemon.store import uploads_folder
from daemon.store.state_dir import StagedArchive
from daemon.store.uploads_folder import StoredFile

__all__ = ["stage_archive", "store_upload"]

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


async def store_upload(
    config: Config,
    raw_name: str | None,
    chunks: AsyncIterator[bytes],
    replace: bool,
    quoted: bool = False,
) -> StoredFile:
    """Write `chunks` as the account upload `raw_name` (UPLOADS_DIR): whole or not at
    all, within `uploads.max_file_bytes` and `uploads.max_total_bytes`. `quoted`: the
    name is URL-quoted (an X-Filename header)."""
    root, limit = config.uploads_dir, config.max_upload_file_bytes
    name = uploads_folder.file_name(raw_name, quoted=quoted)
    temporary, sink = await asyncio.to_thread(uploads_folder.open_temporary, root)
    try:
        with sink:
            size, buffer = 0, bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the file is larger than the upload limit of {limit} bytes"
                    )
                buffer += chunk
                if len(buffer) >= FLUSH_BYTES:
                    await asyncio.to_thread(sink.write, bytes(buffer))
                    buffer.clear()
            await asyncio.to_thread(sink.write, bytes(buffer))
        return await asyncio.to_thread(
            uploads_folder.commit, temporary, root, name, replace, config.max_upload_total_bytes
        )
    except BaseException:
        await asyncio.to_thread(uploads_folder.abandon, temporary)
        raise
