"""Exports that run while a person watches (seed 001, "Export": the status while in
progress, on completion or failure, and Cancel while it runs).

An export job makes the project's zip in a thread (daemon/lifecycle/project_zips.py):
a zip archive is ready at once, a tar is unpacked and packed again with its bytes
counted. Cancel sets an event the packing checks after each file (and between the
phases); a cancelled or failed job leaves no file behind. A finished job keeps its
zip until it is downloaded once, or for `KEEP_S`. Jobs live in the daemon's memory,
each visible only to the user who started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.config.archive_limits import ArchiveLimits
from daemon.core.errors import Conflict, NotFound
from daemon.core.models import Script
from daemon.lifecycle.project_zips import export_zip_now

__all__ = ["ExportCancelled", "ExportJob", "ExportJobs"]

KEEP_S = 600.0  # a finished export's zip waits this long for its download
MAX_JOBS = 32  # the oldest finished ones go first beyond this
MAX_RUNNING = 4  # each holds a thread of the default pool while it packs

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class ExportCancelled(Exception):
    """Raised inside the export's thread once Cancel was asked."""


@dataclass
class ExportJob:
    id: str
    script: str
    user: str
    status: str = RUNNING
    phase: str = "starting"
    done_bytes: int = 0
    total_bytes: int = 0
    error: str = ""
    path: Path | None = None
    temporary: bool = False
    size: int = 0
    finished_at: float | None = None
    cancel_asked: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelling(self) -> bool:
        return self.status == RUNNING and self.cancel_asked.is_set()

    @property
    def percent(self) -> int:
        if self.status == DONE:
            return 100
        if self.phase != "packing" or self.total_bytes <= 0:
            return 0
        return min(99, self.done_bytes * 100 // self.total_bytes)

    def progress(self, phase: str, done: int, total: int) -> None:
        """The thread's report; raises ExportCancelled once Cancel was asked."""
        if self.cancel_asked.is_set():
            raise ExportCancelled
        self.phase, self.done_bytes, self.total_bytes = phase, done, total


class ExportJobs:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs: dict[str, ExportJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._clock = clock

    def start(self, script: Script, user: str, limits: ArchiveLimits) -> ExportJob:
        """A new job for `script`'s project, running from the next turn of the loop."""
        self._forget_old()
        if sum(j.status == RUNNING for j in self._jobs.values()) >= MAX_RUNNING:
            raise Conflict(
                f"{MAX_RUNNING} exports are running already: wait for one to end, or cancel one"
            )
        job = ExportJob(secrets.token_urlsafe(12), script.name, user)
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(job, script, limits), name=f"export-{script.name}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.id, None))
        return job

    async def _run(self, job: ExportJob, script: Script, limits: ArchiveLimits) -> None:
        try:
            job.progress("starting", 0, 0)
            path, temporary = await asyncio.to_thread(export_zip_now, script, limits, job.progress)
        except ExportCancelled:
            job.status, job.phase = CANCELLED, "cancelled"
        except Exception as exc:  # an archive or disk problem: the job says so
            job.status, job.error = FAILED, str(exc) or type(exc).__name__
        else:
            job.path, job.temporary, job.status, job.phase = path, temporary, DONE, "done"
            job.size = (await asyncio.to_thread(path.stat)).st_size
            if job.id not in self._jobs:  # forgotten meanwhile: nobody will download it
                self._discard(job)
        job.finished_at = self._clock()

    def get(self, job_id: str, user: str) -> ExportJob:
        job = self._jobs.get(job_id)
        if job is None or job.user != user:
            raise NotFound(f"no export {job_id!r}: it finished long ago or was never started")
        return job

    def cancel(self, job_id: str, user: str) -> ExportJob:
        """Ask a running job to stop (it ends cancelled at its next check)."""
        job = self.get(job_id, user)
        if job.status == RUNNING:
            job.cancel_asked.set()
        return job

    async def wait(self, job_id: str, timeout_s: float | None = None) -> None:
        """Until the job ends, or `timeout_s` passed (it goes on then)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait([task], timeout=timeout_s)

    def downloaded(self, job: ExportJob) -> None:
        """The zip was sent: its temp file goes, and the job with it."""
        self._jobs.pop(job.id, None)
        self._discard(job)

    def _discard(self, job: ExportJob) -> None:
        if job.temporary and job.path is not None:
            with contextlib.suppress(OSError):
                job.path.unlink()
        job.path = None

    def _forget_old(self) -> None:
        now = self._clock()
        finished = sorted(
            (j for j in self._jobs.values() if j.finished_at is not None),
            key=lambda j: j.finished_at or 0.0,
        )
        for job in finished:
            if now - (job.finished_at or now) >= KEEP_S or len(self._jobs) >= MAX_JOBS:
                self.downloaded(job)

    async def close(self) -> None:
        """At the daemon's stop: cancel what runs, remove every zip made."""
        for job in self._jobs.values():
            job.cancel_asked.set()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for job in list(self._jobs.values()):
            self.downloaded(job)
