"""unpack_archive: all or nothing, safe modes, identical bytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from daemon.archive import unpack
from daemon.archive.intake import unpack_archive
from daemon.archive.types import ArchiveError
from daemon.config.archive_limits import ArchiveLimits
from tests.fixtures.archive_builders import PY_MAIN, E, build, py_project, tree_of

LIMITS = ArchiveLimits(max_entries=50, max_unpacked_bytes=1 << 20, max_file_bytes=1 << 20)


@pytest.mark.parametrize("fmt", ["zip", "tar", "tgz"])
def test_unpack_writes_the_files_with_safe_modes(tmp_path: Path, fmt: str) -> None:
    entries = [
        E("main.py", PY_MAIN, mode=0o4755),  # setuid in the archive: dropped
        E("bin/", None),
        E("bin/tool.sh", b"#!/bin/sh\n", mode=0o6777),
        E("deep/a/b/c.txt", b"c"),
    ]
    path = build(tmp_path / f"p.{fmt}", entries, fmt)
    dest = tmp_path / "scripts" / "s1" / "v1"
    report = unpack_archive(path, dest, "python", LIMITS)
    assert report.ok and report.functions == ("hello",)
    assert tree_of(dest) == {
        "bin": None,
        "bin/tool.sh": b"#!/bin/sh\n",
        "deep": None,
        "deep/a": None,
        "deep/a/b": None,
        "deep/a/b/c.txt": b"c",
        "main.py": PY_MAIN,
    }
    for p in [dest, *dest.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), p
        assert p.lstat().st_uid == os.geteuid()
    assert [p.name for p in dest.parent.iterdir()] == ["v1"]  # no staging dir left


def test_umask_does_not_decide_modes(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        unpack_archive(build(tmp_path / "p.zip", py_project(), "zip"), tmp_path / "d", "python")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "main.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d" / "helpers").stat().st_mode) == 0o755


def test_dest_may_be_an_empty_folder_but_not_a_full_one(tmp_path: Path) -> None:
    path = build(tmp_path / "p.zip", py_project(), "zip")
    (tmp_path / "empty").mkdir()
    unpack_archive(path, tmp_path / "empty", "python", LIMITS)
    assert (tmp_path / "empty" / "main.py").exists()
    with pytest.raises(OSError):
        unpack_archive(path, tmp_path / "empty", "python", LIMITS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "p.zip"]


def test_invalid_project_is_refused_before_writing(tmp_path: Path) -> None:
    path = build(tmp_path / "p.zip", [E("main.py", b"   ")], "zip")
    with pytest.raises(ArchiveError) as err:
        unpack_archive(path, tmp_path / "out" / "v1", "python", LIMITS)
    assert err.value.report.errors[0].code == "empty_main"
    assert "main.py is empty" in str(err.value)
    assert not (tmp_path / "out").exists()  # not even the parent is created


def test_disk_failure_raises_oserror_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = build(tmp_path / "p.tar", py_project(), "tar")
    calls = {"n": 0}
    real = unpack.WriteSink._write

    def failing(self: unpack.WriteSink, rel: str, chunks):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, rel, chunks)

    monkeypatch.setattr(unpack.WriteSink, "_write", failing)
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError, match="No space"):
        unpack_archive(path, tmp_path / "out" / "v1", "python", LIMITS)
    assert list((tmp_path / "out").iterdir()) == []


def test_archive_changed_between_passes_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write pass re-applies every rule: swap in a hostile archive after validation."""
    import daemon.archive.intake as archive

    good = build(tmp_path / "p.tar", py_project(), "tar")
    evil = build(tmp_path / "e.tar", [*py_project(), E("../x", b"x")], "tar")
    real_validate = archive.validate_archive

    def validate_then_swap(*args, **kwargs):  # type: ignore[no-untyped-def]
        report = real_validate(*args, **kwargs)
        os.replace(evil, good)
        return report

    monkeypatch.setattr(archive, "validate_archive", validate_then_swap)
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError):
        unpack_archive(good, tmp_path / "out" / "v1", "python", LIMITS)
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "x").exists()
