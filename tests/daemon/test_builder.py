"""The builder in-process: cache keys, the time limit, the log, no half environments."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.builder import DONE_MARKER, Builder, env_key
from daemon.catalogue import Catalogue, discover_runtimes
from daemon.config import Config
from daemon.errors import BuildError


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return discover_runtimes(Config())


def test_key_depends_on_interpreter_and_dependency_files(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    py = catalogue.pick("python", None)
    assert py is not None
    config = Config(state_dir=tmp_path)
    (tmp_path / "main.py").write_text("x = 1\n")
    k1 = env_key(config, "python", py, tmp_path)
    (tmp_path / "main.py").write_text("x = 2\n")  # not a dependency file
    assert env_key(config, "python", py, tmp_path) == k1
    (tmp_path / "requirements.txt").write_text("six\n")
    k2 = env_key(config, "python", py, tmp_path)
    assert k2 != k1
    other = replace(py, path="/elsewhere/python3.11")
    assert env_key(config, "python", other, tmp_path) != k2


async def test_time_limit_kills_the_tool_and_leaves_nothing(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    py = catalogue.pick("python", None)
    assert py is not None
    slow = tmp_path / "uv"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    config = Config(state_dir=tmp_path, build_timeout_s=1, uv_path=slow)
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("def f():\n    return 1\n")
    log = tmp_path / "build.log"
    builder = Builder(config)
    t0 = time.monotonic()
    with pytest.raises(BuildError, match=r"longer than 1 s \(build.timeout_s\)"):
        await builder.build("python", py, src, log)
    assert time.monotonic() - t0 < 5
    assert "uv venv" in log.read_text() or "slow" in log.read_text()
    leftovers = list((tmp_path / "cache" / "envs").iterdir())
    assert leftovers == []


async def test_failed_tool_names_the_step(tmp_path: Path, catalogue: Catalogue) -> None:
    py = catalogue.pick("python", None)
    assert py is not None
    failing = tmp_path / "uv"
    failing.write_text("#!/bin/sh\necho broken index >&2\nexit 3\n")
    failing.chmod(0o755)
    builder = Builder(Config(state_dir=tmp_path, uv_path=failing))
    src = tmp_path / "src"
    src.mkdir()
    log = tmp_path / "build.log"
    with pytest.raises(BuildError, match=r"uv venv failed \(exit 3\)"):
        await builder.build("python", py, src, log)
    assert "broken index" in log.read_text()


async def test_second_build_is_reused(tmp_path: Path, catalogue: Catalogue) -> None:
    py = catalogue.pick("python", None)
    assert py is not None
    builder = Builder(Config(state_dir=tmp_path))
    src = tmp_path / "src"
    src.mkdir()
    first = await builder.build("python", py, src, tmp_path / "1.log")
    assert not first.cached and (first.env_dir / DONE_MARKER).exists()
    assert (first.env_dir / "bin" / "python").exists()
    second = await builder.build("python", py, src, tmp_path / "2.log")
    assert second.cached and second.env_dir == first.env_dir
