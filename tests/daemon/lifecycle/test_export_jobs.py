"""Exports a person follows: the zip of a tar project made with its progress counted,
Cancel, the download that removes the file, and each job kept to its user."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import pytest

from daemon.config.archive_limits import ArchiveLimits
from daemon.core.errors import Conflict, NotFound
from daemon.core.models import DRAFT, ArchiveRef, Resources, Script, Settings, now_iso
from daemon.lifecycle.export_jobs import ExportCancelled, ExportJobs
from daemon.lifecycle.project_zips import export_zip_now
from tests.helpers import make_tar, make_zip

MAIN = "def hello():\n    return 'hi'\n"


def a_script(archive: Path) -> Script:
    now = now_iso()
    return Script(
        1, "app", "", "python", "3.11.2", DRAFT, "root", now, now, Settings((), 30),
        Resources(1, 1, 75, "p"), ArchiveRef(archive.name, "ab" * 32, 1, str(archive)), (), None,
    )  # fmt: skip


@pytest.fixture
def tar_project(tmp_path: Path) -> Path:
    files = {"main.py": MAIN, **{f"data/part{i}.txt": "x" * 5000 for i in range(5)}}
    path = tmp_path / "project.tar"
    path.write_bytes(make_tar(files))
    return path


async def test_a_tar_project_is_made_a_zip_with_its_progress(tar_project: Path) -> None:
    jobs = ExportJobs()
    job = jobs.start(a_script(tar_project), "alice", ArchiveLimits())
    assert job.status == "running" and job.percent == 0
    await jobs.wait(job.id)
    assert job.status == "done" and job.percent == 100 and job.temporary
    assert job.path is not None and job.size == job.path.stat().st_size
    assert job.total_bytes == len(MAIN) + 5 * 5000 == job.done_bytes
    with zipfile.ZipFile(job.path) as z:
        assert z.read("main.py").decode() == MAIN and len(z.namelist()) == 7
    path = job.path
    jobs.downloaded(job)
    assert not path.exists()
    with pytest.raises(NotFound):
        jobs.get(job.id, "alice")


async def test_a_zip_project_is_ready_at_once_and_never_removed(tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    archive.write_bytes(make_zip({"main.py": MAIN}))
    jobs = ExportJobs()
    job = jobs.start(a_script(archive), "alice", ArchiveLimits())
    await jobs.wait(job.id)
    assert (job.status, job.path, job.temporary) == ("done", archive, False)
    jobs.downloaded(job)
    assert archive.exists()  # the script's own archive


async def test_cancel_before_its_thread_runs_ends_the_job_cancelled(tar_project: Path) -> None:
    jobs = ExportJobs()
    job = jobs.start(a_script(tar_project), "alice", ArchiveLimits())
    assert jobs.cancel(job.id, "alice") is job  # before the task ran a step
    await jobs.wait(job.id)
    assert job.status == "cancelled" and job.path is None


def test_a_cancel_while_packing_leaves_no_file(
    tar_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[tuple[str, int, int]] = []

    def progress(phase: str, done: int, total: int) -> None:
        seen.append((phase, done, total))
        if phase == "packing" and done > 0:
            raise ExportCancelled

    with pytest.raises(ExportCancelled):
        export_zip_now(a_script(tar_project), ArchiveLimits(), progress)
    assert [s[0] for s in seen[:2]] == ["unpacking", "packing"] and seen[-1][1] > 0
    assert list(scratch.iterdir()) == []  # neither the unpacked folder nor the zip


async def test_a_job_is_its_users_only(tar_project: Path) -> None:
    jobs = ExportJobs()
    job = jobs.start(a_script(tar_project), "alice", ArchiveLimits())
    with pytest.raises(NotFound, match="no export"):
        jobs.get(job.id, "bob")
    with pytest.raises(NotFound):
        jobs.cancel(job.id, "bob")
    await jobs.close()
    assert job.status in ("done", "cancelled") and job.path is None


async def test_a_failed_export_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar at all")
    jobs = ExportJobs()
    job = jobs.start(a_script(broken), "alice", ArchiveLimits())
    await jobs.wait(job.id)
    assert job.status == "failed" and job.error and job.path is None


async def test_at_most_a_few_exports_run_at_once(tar_project: Path) -> None:
    jobs = ExportJobs()
    started = [jobs.start(a_script(tar_project), "alice", ArchiveLimits()) for _ in range(4)]
    with pytest.raises(Conflict, match="4 exports are running already"):
        jobs.start(a_script(tar_project), "alice", ArchiveLimits())
    for job in started:
        await jobs.wait(job.id)
    assert jobs.start(a_script(tar_project), "alice", ArchiveLimits()).status == "running"
    await jobs.close()
