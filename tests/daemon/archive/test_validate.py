"""Validation of well-formed and badly-made (not hostile) project archives."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import pytest

from daemon.archive.intake import validate_archive
from daemon.archive.types import ValidationReport
from daemon.config.archive_limits import ArchiveLimits
from tests.fixtures.archive_builders import JS_MAIN, PY_MAIN, E, build, py_project, tar_bytes

LIMITS = ArchiveLimits(
    max_archive_bytes=1 << 20, max_entries=50, max_unpacked_bytes=1 << 20, max_file_bytes=1 << 19
)


def codes(report: ValidationReport) -> list[str]:
    return [f.code for f in report.errors]


def warn_codes(report: ValidationReport) -> list[str]:
    return [f.code for f in report.warnings]


def check(tmp_path: Path, entries: list[E], fmt: str = "zip", language: str | None = None):
    path = build(tmp_path / f"p.{fmt}", entries, fmt)
    return validate_archive(path, language, LIMITS)


@pytest.mark.parametrize("fmt", ["zip", "tar", "tgz"])
def test_python_project_is_valid_in_every_format(tmp_path: Path, fmt: str) -> None:
    report = check(tmp_path, py_project(), fmt)
    assert report.ok, report.errors
    assert report.language == "python"
    assert report.functions == ("hello",)
    assert report.unpacked_bytes == len(PY_MAIN) + len(b"X = 1\n")


def test_bare_gz_of_a_tar_and_content_beats_extension(tmp_path: Path) -> None:
    raw = tar_bytes(py_project())
    for name in ("project.gz", "project.zip", "noext"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(raw))
        assert validate_archive(path, "python", LIMITS).ok


def test_javascript_project(tmp_path: Path) -> None:
    report = check(tmp_path, [E("main.js", JS_MAIN), E("package.json", b'{"dependencies":{}}')])
    assert report.ok and report.language == "javascript"
    assert report.functions == ("hello",)


def test_to_json_has_every_field(tmp_path: Path) -> None:
    doc = check(tmp_path, [E("main.py", b"  \n")]).to_json()
    assert set(doc) == {
        "ok",
        "language",
        "errors",
        "warnings",
        "functions",
        "entries",
        "unpacked_bytes",
        "kind",
        "step",
    }
    assert doc["kind"] == "functions" and doc["step"] is None
    assert set(doc["errors"][0]) == {"level", "code", "message", "where", "fix"}


def test_missing_main(tmp_path: Path) -> None:
    report = check(tmp_path, [E("app.py", b"x=1\n")])
    assert codes(report) == ["missing_main"]
    assert report.errors[0].fix


def test_project_zipped_inside_a_folder_is_named_as_such(tmp_path: Path) -> None:
    entries = [
        E("myproj/", None),
        E("myproj/main.py", PY_MAIN),
        E("myproj/lib/x.py", b""),
        E("__MACOSX/myproj/._main.py", b"junk"),
    ]
    report = check(tmp_path, entries)
    assert codes(report) == ["project_in_folder"]
    err = report.errors[0]
    assert "myproj/" in err.message and err.where == "myproj/main.py"
    assert "cd myproj" in err.fix


@pytest.mark.parametrize("body", [b"", b"   \n\t\n"])
def test_empty_main(tmp_path: Path, body: bytes) -> None:
    assert codes(check(tmp_path, [E("main.py", body)])) == ["empty_main"]
    assert codes(check(tmp_path, [E("main.js", body)])) == ["empty_main"]


def test_language_mismatch_and_ambiguity(tmp_path: Path) -> None:
    assert codes(check(tmp_path, py_project(), language="javascript")) == ["language_mismatch"]
    both = [E("main.py", PY_MAIN), E("main.js", JS_MAIN)]
    assert codes(check(tmp_path, both)) == ["ambiguous_language"]
    assert check(tmp_path, both, language="javascript").ok
    assert codes(check(tmp_path, py_project(), language="cobol")) == ["unknown_language"]


def test_python_syntax_error_names_the_line(tmp_path: Path) -> None:
    report = check(tmp_path, [E("main.py", b"def ok():\n    pass\n\ndef bad(:\n")])
    assert codes(report) == ["syntax_error"]
    assert report.errors[0].where.startswith("main.py:4")


def test_requirements_checked_line_by_line(tmp_path: Path) -> None:
    reqs = (
        b"# comment\nrequests==2.32.3\nnumpy>=1.26 ; python_version >= '3.9'\n"
        b"pkg[extra]~=1.0 \\\n  --hash=sha256:abc\nbad line !!\nrequests\n"
    )
    report = check(tmp_path, py_project(**{"requirements.txt": reqs}))
    assert codes(report) == ["requirements_invalid"]
    assert report.errors[0].where == "requirements.txt:6"
    assert warn_codes(report) == ["requirements_duplicate"]


def test_requirements_options_and_sources_are_refused_every_one(tmp_path: Path) -> None:
    """Each would make the build read host files or another index: all errors, all listed."""
    reqs = (
        b"-r /etc/shadow\n--index-url https://example.org/simple\nsix==1.16.0\n"
        b"pkg @ file:///x\n-e .\n--find-links /root\n--extra-index-url=https://e.org\n"
        b"name @ https://example.org/x.whl\ngit+https://example.org/r.git\n./local\n"
        b"/abs/pkg.whl\ndist.tar.gz\n-c constraints.txt\n--only-binary :all:\n"
    )
    report = check(tmp_path, py_project(**{"requirements.txt": reqs}))
    where = {f.where: f.code for f in report.errors}
    options = [1, 2, 5, 6, 7, 13, 14]
    sources = [4, 8, 9, 10, 11, 12]
    assert where == {f"requirements.txt:{n}": "requirements_option" for n in options} | {
        f"requirements.txt:{n}": "requirements_source" for n in sources
    }
    assert not report.ok and report.warnings == ()
    first = report.errors[0]
    assert "-r" in first.message and "Remove the line" in first.fix
    file_url = next(f for f in report.errors if f.where == "requirements.txt:4")
    assert "a local file" in file_url.message and "mypkg==1.2.0" in file_url.fix


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"dependencies": {"a": "1"},\n "x": }', "package.json:2:7"),
        (b"[1, 2]", "package.json"),
        (b'{"dependencies": ["left-pad"]}', "package.json: dependencies"),
        (b'{"devDependencies": {"a": 1}}', "package.json: devDependencies"),
    ],
)
def test_package_json_checked(tmp_path: Path, body: bytes, where: str) -> None:
    report = check(tmp_path, [E("main.js", JS_MAIN), E("package.json", body)])
    assert codes(report) == ["package_json_invalid"]
    assert report.errors[0].where == where


def test_package_json_takes_registry_versions_only(tmp_path: Path) -> None:
    doc = (
        b'{"dependencies": {"ok": "^1.2.0", "tag": "latest", "alias": "npm:other@~2",'
        b' "f": "file:../x", "l": "link:../y", "p": "./vendor/z", "a": "/opt/w",'
        b' "g": "git+https://example.org/r.git", "gh": "user/repo", "t": "https://e.org/t.tgz"},'
        b' "devDependencies": {"d": "github:u/r"},'
        b' "overrides": {"ok": "$ok", "deep": {"x": "file:/etc"}}}'
    )
    report = check(tmp_path, [E("main.js", JS_MAIN), E("package.json", doc)])
    assert set(codes(report)) == {"package_json_source"}
    wheres = [f.where.removeprefix("package.json: ") for f in report.errors]
    assert wheres == [
        "dependencies.f", "dependencies.l", "dependencies.p", "dependencies.a",
        "dependencies.g", "dependencies.gh", "dependencies.t", "devDependencies.d",
        "overrides.deep.x",
    ]  # fmt: skip
    assert '"file:../x"' in report.errors[0].message and "registry" in report.errors[0].fix


def test_every_finding_reported_at_once(tmp_path: Path) -> None:
    entries = [
        E("main.py", b"def f(:\n"),
        E("requirements.txt", b"ok==1\n!!!\n"),
        E("link", kind="symlink", target="/etc/passwd"),
        E("/etc/evil", b"x"),
        E("node_modules/", None),
    ]
    report = check(tmp_path, entries)
    assert set(codes(report)) == {
        "syntax_error",
        "requirements_invalid",
        "link_entry",
        "absolute_path",
    }
    assert warn_codes(report) == ["bundled_dependencies"]
    assert not report.ok


def test_no_functions_is_a_warning(tmp_path: Path) -> None:
    report = check(tmp_path, [E("main.py", b"from .x import f\nX = 1\ndef _p(): pass\n")])
    assert report.ok and report.functions == ()
    assert warn_codes(report) == ["no_functions"]


def test_archive_over_the_size_limit(tmp_path: Path) -> None:
    path = build(tmp_path / "p.zip", py_project(), "zip")
    small = ArchiveLimits(max_archive_bytes=path.stat().st_size - 1)
    assert codes(validate_archive(path, None, small)) == ["archive_too_large"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_archive"),
        (b"just some text, not an archive\n" * 40, "unsupported_format"),
        (bz2.compress(b"x" * 1000), "unsupported_format"),
        (gzip.compress(b"print('not a tar')\n" * 100, mtime=0), "gzip_not_tar"),
        (b"PK\x03\x04" + b"\0" * 100, "corrupt_archive"),
    ],
)
def test_unreadable_archives(tmp_path: Path, data: bytes, code: str) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(data)
    report = validate_archive(path, None, LIMITS)
    assert codes(report) == [code]
    assert report.errors[0].fix or code == "corrupt_archive"


def test_validation_writes_nothing(tmp_path: Path) -> None:
    path = build(tmp_path / "p.tgz", py_project(), "tgz")
    before = sorted(tmp_path.rglob("*"))
    validate_archive(path, None, LIMITS)
    assert sorted(tmp_path.rglob("*")) == before
