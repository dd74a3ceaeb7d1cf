"""The mypyc build of the egress relay: used only while it matches its sources."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest

from daemon.core import compiled
from daemon.core.compiled import MANIFEST, MODULES, PURE_ENV, plan
from tests.conftest import require

SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def fake_build(tmp_path: Path) -> tuple[Path, Path]:
    """A checkout of MODULES' sources and a build that matches them (the extensions
    are empty files: `plan` only reads the manifest, the sources and the names)."""
    root, build = tmp_path / "src", tmp_path / "build"
    digests = {}
    for n, module in enumerate(MODULES):
        source = compiled.source_of(module, root)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"VALUE = {n}\n")
        digests[module] = compiled.digest(source)
        extension = compiled._extension(build, module, SUFFIX)
        extension.parent.mkdir(parents=True, exist_ok=True)
        extension.write_bytes(b"")
    manifest = {"ext_suffix": SUFFIX, "python": "3", "modules": digests}
    (build / MANIFEST).write_text(json.dumps(manifest))
    return root, build


def test_a_build_that_matches_its_sources_is_used(tmp_path: Path) -> None:
    root, build = fake_build(tmp_path)
    decided = plan(build, root, environ={})
    assert decided.compiled and decided.reason == "compiled with mypyc"
    assert decided.package_dirs == {
        "daemon.egress": build / "daemon" / "egress",
        "daemon.metrics": build / "daemon" / "metrics",
    }


def test_a_source_edited_since_the_build_leaves_all_of_it_unused(tmp_path: Path) -> None:
    root, build = fake_build(tmp_path)
    compiled.source_of("daemon.egress.wire", root).write_text("VALUE = 'edited'\n")
    decided = plan(build, root, environ={})
    assert not decided.compiled and decided.package_dirs is None
    assert "daemon.egress.wire changed since the build" in decided.reason


def test_a_build_for_another_interpreter_is_not_used(tmp_path: Path) -> None:
    root, build = fake_build(tmp_path)
    manifest = json.loads((build / MANIFEST).read_text())
    manifest["ext_suffix"] = ".cpython-312-x86_64-linux-gnu.so"
    (build / MANIFEST).write_text(json.dumps(manifest))
    assert "built for .cpython-312" in plan(build, root, environ={}).reason


def test_a_missing_extension_or_module_is_not_used(tmp_path: Path) -> None:
    root, build = fake_build(tmp_path)
    compiled._extension(build, "daemon.egress.proxy", SUFFIX).unlink()
    assert "lacks daemon.egress.proxy" in plan(build, root, environ={}).reason
    root, build = fake_build(tmp_path / "again")
    manifest = json.loads((build / MANIFEST).read_text())
    del manifest["modules"]["daemon.egress.gate"]
    (build / MANIFEST).write_text(json.dumps(manifest))
    assert "other modules" in plan(build, root, environ={}).reason


@pytest.mark.parametrize("content", [None, "{not json"])
def test_no_build_or_an_unreadable_one_means_python(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / MANIFEST).write_text(content)
    decided = plan(tmp_path, tmp_path, environ={})
    assert not decided.compiled
    assert ("not built" if content is None else "unreadable build manifest") in decided.reason


def test_the_environment_can_ask_for_python(tmp_path: Path) -> None:
    root, build = fake_build(tmp_path)
    assert plan(build, root, environ={PURE_ENV: "1"}).reason == f"pure Python ({PURE_ENV} is set)"
    assert plan(build, root, environ={PURE_ENV: "0"}).compiled


def test_this_checkout_runs_the_relay_compiled() -> None:
    """./dev.sh setup builds it: CI must run the suite on what production runs."""
    require(plan().compiled, f"the relay is not compiled here: {plan().reason}")
    import daemon.egress.wire
    import daemon.metrics.instruments

    for module in (daemon.egress.wire, daemon.metrics.instruments):
        assert module.__file__ is not None and module.__file__.endswith(SUFFIX)
    assert compiled.status() == "compiled with mypyc"


def test_build_says_when_the_build_matches(capsys: pytest.CaptureFixture[str]) -> None:
    require(plan().compiled, "the relay is not compiled here")
    assert compiled.main(["--build"]) == 0
    assert "matches its sources" in capsys.readouterr().out
