"""Property-based tests of the archive validator and unpacker (hypothesis)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.archive.intake import unpack_archive, validate_archive
from daemon.archive.types import ArchiveError
from daemon.config.archive_limits import ArchiveLimits
from tests.fixtures.archive_builders import PY_MAIN, E, build, tree_of

LIMITS = ArchiveLimits(
    max_archive_bytes=1 << 20, max_entries=200, max_unpacked_bytes=1 << 20, max_file_bytes=1 << 18
)
# ARCHIVE_PROPERTY_EXAMPLES=2000 for a longer hunt; the suite default stays fast.
SETTINGS = settings(
    max_examples=int(os.environ.get("ARCHIVE_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RESERVED_ROOT = {
    "main.py",
    "main.js",
    "requirements.txt",
    "package.json",
    "node_modules",
    ".venv",
    "venv",
}

component = st.text(alphabet=st.sampled_from("abcXYZ019_-.éü日 "), min_size=1, max_size=10).filter(
    lambda s: s not in (".", "..") and s.strip() == s and s.strip()
)

Tree = dict  # name -> bytes | Tree

trees = st.recursive(
    st.dictionaries(component, st.binary(max_size=300), max_size=4),
    lambda children: st.dictionaries(
        component, st.one_of(st.binary(max_size=300), children), max_size=4
    ),
    max_leaves=12,
)


def flatten(tree: Tree, prefix: str = "") -> list[E]:
    out: list[E] = []
    for name, value in tree.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            out.append(E(path + "/", None))
            out.extend(flatten(value, path + "/"))
        else:
            out.append(E(path, value))
    return out


def project(tree: Tree) -> list[E]:
    tree = {k: v for k, v in tree.items() if k not in RESERVED_ROOT}
    return [E("main.py", PY_MAIN), *flatten(tree)]


def expected_tree(entries: list[E]) -> dict[str, bytes | None]:
    return {e.name.rstrip("/"): e.data for e in entries}


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="archprop-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


formats = st.sampled_from(["zip", "tar", "tgz"])


@SETTINGS
@given(tree=trees, fmt=formats)
def test_safe_trees_validate_and_round_trip(tree: Tree, fmt: str) -> None:
    entries = project(tree)
    with workdir() as tmp:
        path = build(tmp / f"p.{fmt}", entries, fmt)
        report = validate_archive(path, None, LIMITS)
        assert report.ok, report.errors
        assert report.entries == len(entries)
        assert report.unpacked_bytes == sum(len(e.data or b"") for e in entries)
        dest = tmp / "out" / "v1"
        unpack_archive(path, dest, "python", LIMITS)
        assert tree_of(dest) == expected_tree(entries)


def hostile_entries(fmt: str) -> st.SearchStrategy[E]:
    common = [
        E("/abs.py", b"x"),
        E("../up.py", b"x"),
        E("a/../../up.py", b"x"),
        E("link", kind="symlink", target="/etc/passwd"),
        E("inner-link", kind="symlink", target="main.py"),
        E("pipe", kind="fifo"),
        E("dev", kind="chr"),
        E("./main.py", b"def evil(): pass\n"),
        E("x\\..\\y.py", b"x"),
        E("main.py/inside", b"x"),
    ]
    if fmt != "zip":
        common += [E("hard", kind="hardlink", target="main.py"), E("n\udcff.py", b"x")]
    return st.sampled_from(common)


@SETTINGS
@given(data=st.data(), tree=trees, fmt=formats)
def test_an_injected_hostile_entry_is_refused_and_nothing_is_written(
    data: st.DataObject, tree: Tree, fmt: str
) -> None:
    entries = project(tree)
    bad = data.draw(hostile_entries(fmt))
    at = data.draw(st.integers(min_value=1, max_value=len(entries)))
    entries.insert(at, bad)
    with workdir() as tmp:
        path = build(tmp / f"h.{fmt}", entries, fmt)
        assert not validate_archive(path, None, LIMITS).ok
        (tmp / "out").mkdir()
        try:
            unpack_archive(path, tmp / "out" / "v1", "python", LIMITS)
        except ArchiveError:
            pass
        else:
            raise AssertionError(f"{bad} was accepted")
        assert list((tmp / "out").iterdir()) == []


@SETTINGS
@given(
    blob=st.binary(max_size=2000),
    prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x1f\x8b\x08\x00", b"BZh"]),
)
def test_random_bytes_give_a_report_never_an_exception(blob: bytes, prefix: bytes) -> None:
    with workdir() as tmp:
        path = tmp / "r"
        path.write_bytes(prefix + blob)
        report = validate_archive(path, None, LIMITS)
        assert not report.ok


@SETTINGS
@given(
    tree=trees,
    fmt=formats,
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_damaged_archives_are_refused_cleanly_or_unpack_whole(
    tree: Tree, fmt: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    with workdir() as tmp:
        path = build(tmp / f"d.{fmt}", project(tree), fmt)
        data = bytearray(path.read_bytes())
        for offset, value in flips:
            data[offset % len(data)] = value
        if cut is not None:
            data = data[: cut % (len(data) + 1)]
        path.write_bytes(bytes(data))
        report = validate_archive(path, None, LIMITS)
        (tmp / "out").mkdir()
        try:
            unpack_archive(path, tmp / "out" / "v1", "python", LIMITS)
        except ArchiveError:
            assert list((tmp / "out").iterdir()) == []
        else:
            assert report.ok
            assert [p.name for p in (tmp / "out").iterdir()] == ["v1"]
