"""The export's page over HTTP: its status while it runs (whole, or the part htmx
asks for), Cancel, and the download that is given once. The job reads a FIFO as its
project archive, so it is running for certain until the test writes to it."""

from __future__ import annotations

import asyncio
import os
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from daemon.config.archive_limits import ArchiveLimits
from daemon.console import app as console_app
from daemon.console import export_pages, filters
from daemon.console.signin import Session
from daemon.console.web import SESSION
from daemon.core.models import DRAFT, ArchiveRef, Resources, Script, Settings, now_iso
from tests.helpers import make_zip

HERE = Path(console_app.__file__).parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def as_alice(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[SESSION] = Session("alice", "csrf", time.monotonic() + 60)
    return await handler(request)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    """The export routes with the console's templates, signed in as alice (the real
    sign-in and CSRF middlewares are the browser test's)."""
    app = web.Application(middlewares=[as_alice, console_app.errors_to_pages])
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    app.router.add_static("/static/", HERE / "static", name="static")
    filters.install(env, app)
    export_pages.add_routes(app)
    async with TestClient(TestServer(app)) as c:
        yield c


def a_script(archive: Path) -> Script:
    now = now_iso()
    return Script(
        1, "app", "", "python", "3.11.2", DRAFT, "alice", now, now, Settings((), 30),
        Resources(1, 1, 75, "p"), ArchiveRef(archive.name, "ab" * 32, 1, str(archive)), (), None,
    )  # fmt: skip


def write_fifo(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)  # waits for the export's thread to open it
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def test_cancel_while_the_export_runs(client: TestClient[Any, Any], tmp_path: Path) -> None:
    fifo = tmp_path / "project.tar"
    os.mkfifo(fifo)
    jobs = client.app[export_pages.EXPORTS]
    job = jobs.start(a_script(fifo), "alice", ArchiveLimits())
    page = await (await client.get(f"/exports/{job.id}")).text()
    assert "Exporting" in page and "Cancel export" in page and "<html" in page
    headers = {"HX-Request": "true", "HX-Target": "export-status"}
    partial = await (await client.get(f"/exports/{job.id}", headers=headers)).text()
    assert partial.lstrip().startswith(("{#", "<section")) and "<html" not in partial
    assert 'hx-trigger="every 1s"' in partial  # it asks again while it runs

    cancel = asyncio.create_task(client.post(f"/exports/{job.id}/cancel", allow_redirects=False))
    deadline = time.monotonic() + 10
    while not job.cancelling:
        assert time.monotonic() < deadline, "the cancel never reached the job"
        await asyncio.sleep(0.01)
    await asyncio.to_thread(write_fifo, fifo, b"not a zip")  # the job reads on, then stops
    answer = await cancel
    assert answer.status == 303 and answer.headers["Location"] == f"/exports/{job.id}"
    page = await (await client.get(f"/exports/{job.id}")).text()
    assert "Export cancelled" in page and "Cancel export" not in page
    assert "every 1s" not in page  # done: no more asking


async def test_the_zip_is_downloaded_once(client: TestClient[Any, Any], tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    archive.write_bytes(make_zip({"main.py": "def f():\n    return 1\n"}))
    jobs = client.app[export_pages.EXPORTS]
    job = jobs.start(a_script(archive), "alice", ArchiveLimits())
    await jobs.wait(job.id)
    page = await (await client.get(f"/exports/{job.id}")).text()
    assert "Export complete" in page and "Download app.zip" in page
    got = await client.get(f"/exports/{job.id}/download")
    assert got.headers["Content-Disposition"] == 'attachment; filename="app.zip"'
    with zipfile.ZipFile(BytesIO(await got.read())) as z:
        assert z.namelist() == ["main.py"]
    again = await client.get(f"/exports/{job.id}/download")
    assert again.status == 404 and "no export" in await again.text()
