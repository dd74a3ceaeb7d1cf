"""The account's uploads folder: names, atomic commit, listing, delete."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from daemon.core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from daemon.store import uploads_folder as af


@pytest.mark.parametrize(
    "raw", ["data.csv", "A", "model-v2_final.bin", "x" * 255, "1.tar.gz", "a.b"]
)
def test_good_names(raw: str) -> None:
    assert af.file_name(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [None, "", " ", ".hidden", "..", "a/b", "a\\b", "a b", "x" * 256, "-a", "a..b", "é.txt",
     "a\x00b", "a\nb", "../../etc/passwd"],
)  # fmt: skip
def test_bad_names_are_refused(raw: str | None) -> None:
    with pytest.raises(BadRequest):
        af.file_name(raw)


def test_quoted_header_names_are_unquoted_before_the_check() -> None:
    assert af.file_name("data%2Dv1.csv", quoted=True) == "data-v1.csv"
    with pytest.raises(BadRequest):
        af.file_name("..%2Fx", quoted=True)


def write(root: Path, name: str, data: bytes, replace: bool = False) -> af.StoredFile:
    tmp, sink = af.open_temporary(root)
    with sink:
        sink.write(data)
    return af.commit(tmp, root, name, replace)


def test_commit_lists_and_is_world_readable(tmp_path: Path) -> None:
    root = tmp_path / "files"
    assert af.list_files(root) == []
    stored = write(root, "b.txt", b"hello")
    write(root, "a.txt", b"")
    assert stored.name == "b.txt" and stored.size == 5
    assert [f.name for f in af.list_files(root)] == ["a.txt", "b.txt"]
    assert stat.S_IMODE((root / "b.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_an_existing_name_is_a_conflict_unless_replaced(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", b"old")
    with pytest.raises(Conflict):
        write(tmp_path, "a.txt", b"new")
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    assert write(tmp_path, "a.txt", b"newer", replace=True).size == 5
    assert (tmp_path / "a.txt").read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporaries left


def test_hidden_and_odd_entries_are_not_listed_and_temporaries_are_swept(tmp_path: Path) -> None:
    (tmp_path / ".upload-1234.part").write_bytes(b"half")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to("/etc/passwd")
    write(tmp_path, "real.txt", b"x")
    assert [f.name for f in af.list_files(tmp_path)] == ["real.txt"]
    assert af.sweep_temporaries(tmp_path) == 1
    assert not (tmp_path / ".upload-1234.part").exists()


def test_delete(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", b"x")
    (tmp_path / "folder").mkdir()
    af.delete_file(tmp_path, "a.txt")
    assert af.list_files(tmp_path) == []
    for name in ("a.txt", "folder"):
        with pytest.raises(NotFound):
            af.delete_file(tmp_path, name)


def test_the_folder_total_is_limited_and_a_refused_file_leaves_nothing(tmp_path: Path) -> None:
    def add(name: str, size: int, replace: bool = False) -> af.StoredFile:
        tmp, sink = af.open_temporary(tmp_path)
        with sink:
            sink.write(b"x" * size)
        return af.commit(tmp, tmp_path, name, replace, max_total=10)

    add("a", 6)
    (tmp_path / "sub").mkdir()  # folders do not count
    with pytest.raises(PayloadTooLarge, match=r"uploads\.max_total_bytes"):
        add("b", 5)
    add("b", 4)
    assert af.folder_total(tmp_path) == 10
    add("a", 5, replace=True)  # only the difference counts
    with pytest.raises(PayloadTooLarge):
        add("a", 7, replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "sub"]
    assert (tmp_path / "a").stat().st_size == 5
