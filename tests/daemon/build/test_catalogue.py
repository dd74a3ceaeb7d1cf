"""The runtime catalogue on this host's own interpreters: each comes with the install
prefix a sandbox binds (its sys.base_prefix), never a top-level folder but /usr."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from daemon.build.catalogue import discover_runtimes, install_prefix, prefix_problem, reach_problem
from daemon.config.daemon_config import Config


def test_host_runtimes_have_a_narrow_prefix() -> None:
    runtimes = discover_runtimes(Config()).runtimes
    assert runtimes
    for r in runtimes:
        assert r.prefix == os.path.realpath(r.prefix)
        assert prefix_problem(r.prefix, r.path) is None, r
        assert r.prefix == "/usr" or r.prefix.count("/") >= 2, r
        assert install_prefix(r.path, r.language) == r.prefix
        assert "prefix" not in r.to_json()  # the API's shape is unchanged


def test_the_running_interpreter_prefix_is_its_base_prefix() -> None:
    exe = os.path.realpath(sys.executable)
    assert install_prefix(exe, "python") == os.path.realpath(sys.base_prefix)


def test_prefix_rules() -> None:
    assert prefix_problem("/usr", "/usr/bin/python3.11") is None
    assert prefix_problem("/opt/py312", "/opt/py312/bin/python3.12") is None
    for bad in ("/", "/opt", "/root", "/home", "/srv"):
        assert prefix_problem(bad, f"{bad.rstrip('/')}/bin/python3") is not None
    assert "outside" in (prefix_problem("/opt/a", "/opt/b/bin/python3") or "")


def test_an_interpreter_the_build_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    hidden = tmp_path / "private" / "bin"
    hidden.mkdir(parents=True)
    exe = hidden / "python3.11"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "private").chmod(0o700)
    assert "not searchable by others" in (reach_problem(str(exe)) or "")
    exe.chmod(0o700)
    (tmp_path / "private").chmod(0o755)
    assert "not" in (reach_problem(str(exe)) or "")


def test_system_interpreters_are_reachable() -> None:
    assert reach_problem("/bin/sh") is None
