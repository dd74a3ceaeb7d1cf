"""pack_directory: deterministic zips that round-trip through validation and unpack."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from daemon.archive.intake import unpack_archive, validate_archive
from daemon.archive.pack import pack_directory
from daemon.archive.types import ArchiveError
from tests.fixtures.archive_builders import tree_of
from tests.helpers import REPO

SAMPLES = REPO / "runtimes" / "samples"


def make_project(root: Path) -> None:
    (root / "lib").mkdir(parents=True)
    (root / "main.py").write_text("from .lib import x\n\ndef f():\n    return x.V\n")
    (root / "lib" / "x.py").write_text("V = 1\n")
    (root / "empty").mkdir()
    for skipped in ("__pycache__", ".git", "node_modules", ".venv", "lib/__pycache__"):
        (root / skipped).mkdir(exist_ok=True)
        (root / skipped / "junk").write_text("junk")


def test_pack_is_deterministic_and_skips_generated_folders(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    make_project(src)
    pack_directory(src, tmp_path / "a.zip")
    os.utime(src / "main.py", (1, 1))
    (src / "lib" / "x.py").chmod(0o600)
    pack_directory(src, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert names == ["empty/", "lib/", "lib/x.py", "main.py"]


def test_pack_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    make_project(src)
    out = tmp_path / "p.zip"
    pack_directory(src, out)
    report = validate_archive(out, None)
    assert report.ok and report.functions == ("f",)
    unpack_archive(out, tmp_path / "dest", "python")
    expected = {
        k: v
        for k, v in tree_of(src).items()
        if not any(
            part in k.split("/") for part in ("__pycache__", ".git", "node_modules", ".venv")
        )
    }
    assert tree_of(tmp_path / "dest") == expected


def test_pack_into_the_folder_itself(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    make_project(src)
    pack_directory(src, src / "self.zip")
    assert "self.zip" not in zipfile.ZipFile(src / "self.zip").namelist()


def test_links_inside_are_copied_links_outside_refused(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    make_project(src)
    (src / "alias.py").symlink_to("lib/x.py")
    pack_directory(src, tmp_path / "ok.zip")
    with zipfile.ZipFile(tmp_path / "ok.zip") as zf:
        assert zf.read("alias.py") == b"V = 1\n"
    (tmp_path / "secret").write_text("s")
    (src / "leak").symlink_to(tmp_path / "secret")
    (src / "dirlink").symlink_to(src / "lib")
    os.mkfifo(src / "pipe")
    with pytest.raises(ArchiveError) as err:
        pack_directory(src, tmp_path / "bad.zip")
    assert sorted(f.where for f in err.value.report.errors) == ["dirlink", "leak", "pipe"]
    assert not (tmp_path / "bad.zip").exists()


@pytest.mark.parametrize(
    ("language", "functions"),
    [
        ("python", ("greet", "text_stats", "save_note", "wait_and_echo")),
        ("javascript", ("greet", "textStats", "saveNote", "waitAndEcho")),
    ],
)
def test_sample_projects_validate_clean(tmp_path: Path, language: str, functions: tuple) -> None:
    out = tmp_path / "sample.zip"
    pack_directory(SAMPLES / language, out)
    report = validate_archive(out, None)
    assert report.ok and not report.warnings, report
    assert report.language == language
    assert report.functions == functions
