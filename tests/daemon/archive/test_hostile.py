"""Hostile archives: refused by validation, and unpack leaves nothing on disk."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from daemon.archive.intake import unpack_archive, validate_archive
from daemon.archive.types import ArchiveError
from daemon.config.archive_limits import ArchiveLimits
from tests.fixtures.archive_builders import (
    PY_MAIN,
    E,
    bomb_tgz,
    bomb_zip,
    build,
    patch_zip_sizes,
    tar_bytes,
    with_raw_zip_name,
    zip_bytes,
)

LIMITS = ArchiveLimits(
    max_archive_bytes=4 << 20, max_entries=20, max_unpacked_bytes=1 << 20, max_file_bytes=1 << 20
)
MAIN = E("main.py", PY_MAIN)

HOSTILE: dict[str, tuple[list[E], str]] = {
    "absolute": ([MAIN, E("/etc/cron.d/x", b"x")], "absolute_path"),
    "drive": ([MAIN, E("C:/x.py", b"x")], "absolute_path"),
    "dotdot": ([MAIN, E("../../x.py", b"x")], "parent_path"),
    "dotdot_inner": ([MAIN, E("a/b/../../../x.py", b"x")], "parent_path"),
    "symlink_out": ([MAIN, E("l", kind="symlink", target="/etc/passwd")], "link_entry"),
    "symlink_in": ([MAIN, E("l", kind="symlink", target="main.py")], "link_entry"),
    "fifo": ([MAIN, E("p", kind="fifo")], "special_file"),
    "chr": ([MAIN, E("d", kind="chr")], "special_file"),
    "duplicate": ([MAIN, E("a.py", b"1"), E("a.py", b"2")], "duplicate_entry"),
    "dup_dot": ([MAIN, E("a/b.py", b"1"), E("a/./b.py", b"2")], "duplicate_entry"),
    "dup_main": ([MAIN, E("./main.py", b"def evil(): pass\n")], "duplicate_entry"),
    "dup_slashes": ([MAIN, E("a/b.py", b"1"), E("a//b.py", b"2")], "duplicate_entry"),
    "file_dir": ([MAIN, E("a", b"1"), E("a/b.py", b"2")], "path_conflict"),
    "backslash": ([MAIN, E("..\\..\\x.py", b"x")], "backslash_in_name"),
    "control": ([MAIN, E("a\nb.py", b"x")], "bad_name"),
    "long": ([MAIN, E("x" * 300, b"x")], "name_too_long"),
    "many": ([MAIN] + [E(f"f{i}.py", b"") for i in range(25)], "too_many_entries"),
}
TAR_ONLY = {
    "hardlink": ([MAIN, E("h", kind="hardlink", target="main.py")], "link_entry"),
    "blk": ([MAIN, E("b", kind="blk")], "special_file"),
}


def assert_refused(path: Path, code: str, tmp_path: Path) -> None:
    report = validate_archive(path, "python", LIMITS)
    assert not report.ok
    assert code in [f.code for f in report.errors], report.errors
    dest_root = tmp_path / "out"
    dest_root.mkdir()
    with pytest.raises(ArchiveError) as err:
        unpack_archive(path, dest_root / "v1", "python", LIMITS)
    assert code in [f.code for f in err.value.report.errors]
    assert list(dest_root.iterdir()) == []  # nothing written, no temp dir left


@pytest.mark.parametrize("fmt", ["zip", "tar", "tgz"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_entries(tmp_path: Path, fmt: str, case: str) -> None:
    entries, code = HOSTILE[case]
    assert_refused(build(tmp_path / f"h.{fmt}", entries, fmt), code, tmp_path)


@pytest.mark.parametrize("case", sorted(TAR_ONLY))
def test_hostile_tar_entries(tmp_path: Path, case: str) -> None:
    entries, code = TAR_ONLY[case]
    assert_refused(build(tmp_path / "h.tar", entries, "tar"), code, tmp_path)


def test_zip_bomb_real_size_over_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    path.write_bytes(bomb_zip(64 << 20))  # 64 MiB of zeros, about 64 KiB on disk
    assert path.stat().st_size < 200_000
    assert_refused(path, "file_too_large", tmp_path)


def test_zip_bomb_total_over_limit(tmp_path: Path) -> None:
    entries = [MAIN] + [E(f"d{i}.bin", b"\0" * 300_000) for i in range(5)]
    path = build(tmp_path / "b.zip", entries, "zip")
    assert_refused(path, "unpacked_too_large", tmp_path)


def test_zip_whose_headers_lie_about_sizes(tmp_path: Path) -> None:
    # Headers say 100 bytes; the deflate stream holds 8 MiB. Only real bytes count,
    # and zipfile never yields past the declared size, so the CRC check fails.
    path = tmp_path / "liar.zip"
    path.write_bytes(bomb_zip(8 << 20, declared=100))
    report = validate_archive(path, "python", LIMITS)
    assert not report.ok
    assert report.unpacked_bytes <= LIMITS.max_unpacked_bytes
    assert_refused(path, report.errors[0].code, tmp_path)


def test_zip_whose_headers_say_huge(tmp_path: Path) -> None:
    path = tmp_path / "huge.zip"
    path.write_bytes(patch_zip_sizes(zip_bytes([MAIN]), 0xFFFFFFF0))
    assert_refused(path, "file_too_large", tmp_path)


def test_tgz_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tgz"
    path.write_bytes(bomb_tgz(64 << 20))
    assert path.stat().st_size < 200_000
    assert_refused(path, "file_too_large", tmp_path)


def test_zip_declaring_more_entries_than_allowed_is_refused_before_parsing(
    tmp_path: Path,
) -> None:
    data = bytearray(zip_bytes([MAIN]))
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 8 : eocd + 12] = (60000).to_bytes(2, "little") * 2
    path = tmp_path / "many.zip"
    path.write_bytes(bytes(data))
    assert_refused(path, "too_many_entries", tmp_path)


def test_non_utf8_names(tmp_path: Path) -> None:
    data = with_raw_zip_name(zip_bytes([MAIN, E("badQ.py", b"x")]), "badQ.py", b"bad\xff.py")
    (tmp_path / "z").mkdir()
    path = tmp_path / "z" / "n.zip"
    path.write_bytes(data)
    assert_refused(path, "non_utf8_name", tmp_path / "z")
    path = tmp_path / "n.tar"
    path.write_bytes(tar_bytes([MAIN, E("bad\udcff.py", b"x")]))
    assert_refused(path, "non_utf8_name", tmp_path)


def test_zip_flagged_utf8_with_invalid_bytes(tmp_path: Path) -> None:
    data = bytearray(zip_bytes([MAIN, E("bädQ.py", b"x")]))  # non-ASCII: UTF-8 flag set
    data = bytearray(bytes(data).replace("bädQ".encode(), b"b\xff\xfe\xfdQ"))
    path = tmp_path / "u.zip"
    path.write_bytes(bytes(data))
    assert_refused(path, "non_utf8_name", tmp_path)


def test_encrypted_zip_entry(tmp_path: Path) -> None:
    path = build(tmp_path / "e.zip", [MAIN, E("secret.py", b"x", encrypted=True)], "zip")
    assert_refused(path, "encrypted_entry", tmp_path)


def test_case_collision_is_a_warning(tmp_path: Path) -> None:
    path = build(tmp_path / "c.zip", [MAIN, E("Main.py", b"x=1\n")], "zip")
    report = validate_archive(path, "python", LIMITS)
    assert report.ok
    assert [w.code for w in report.warnings] == ["case_collision"]


def test_repeated_directory_entries_are_harmless(tmp_path: Path) -> None:
    entries = [E("lib/", None), E("./lib/", None), MAIN, E("lib/x.py", b"")]
    assert validate_archive(build(tmp_path / "d.tar", entries, "tar"), None, LIMITS).ok


def test_hostile_report_is_capped_but_counted(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_entries=200)
    entries = [MAIN] + [E(f"/abs/{i}", b"") for i in range(100)]
    report = validate_archive(build(tmp_path / "m.zip", entries, "zip"), None, limits)
    assert len(report.errors) == 21
    assert "80 more" in report.errors[-1].message


def test_corrupt_member_data(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("main.py", PY_MAIN)
    data = buf.getvalue().replace(b"hello", b"HELLO", 1)  # CRC no longer matches
    path = tmp_path / "crc.zip"
    path.write_bytes(data)
    assert_refused(path, "corrupt_archive", tmp_path)


def test_huge_tar_long_name_record_is_refused_before_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "long.tar"
    path.write_bytes(tar_bytes([MAIN, E("d/" * (600 * 1024) + "x.py", b"x")]))
    limits = ArchiveLimits(max_unpacked_bytes=1 << 30)  # the record fits the byte budget
    report = validate_archive(path, "python", limits)
    assert [f.code for f in report.errors] == ["corrupt_archive"]
    assert "header record" in report.errors[0].message


def test_file_entry_with_an_empty_name(tmp_path: Path) -> None:
    path = tmp_path / "dot.tar"
    path.write_bytes(tar_bytes([MAIN, E(".", b"x")]))
    assert_refused(path, "bad_name", tmp_path)
