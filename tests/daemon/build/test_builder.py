"""The builder in-process: cache keys, the time limit, the log, no half environments."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.build.builder import DONE_MARKER, Builder, env_key, find_uv
from daemon.build.catalogue import Catalogue, discover_runtimes
from daemon.config.daemon_config import Config
from daemon.core.errors import BuildError
from tests.conftest import require_root

BUILD_UID, BUILD_GID = Config().build_uid, Config().build_gid


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()  # the tools run as the build user: setpriv and mounts need root


@pytest.fixture
def tools() -> Iterator[Path]:
    """Fake tools the build user can reach: pytest's tmp is 0700 and /tmp is covered."""
    folder = Path(tempfile.mkdtemp(prefix="scriptd-fake-tools-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def fake_tool(folder: Path, body: str) -> Path:
    tool = folder / "uv"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    return tool


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
    tmp_path: Path, catalogue: Catalogue, tools: Path
) -> None:
    py = catalogue.pick("python", None)
    assert py is not None
    slow = fake_tool(tools, "exec sleep 30\n")
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


async def test_failed_tool_names_the_step(
    tmp_path: Path, catalogue: Catalogue, tools: Path
) -> None:
    py = catalogue.pick("python", None)
    assert py is not None
    failing = fake_tool(tools, "echo broken index >&2\nexit 3\n")
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


async def test_tools_run_as_the_build_user_and_see_no_source(
    tmp_path: Path, catalogue: Catalogue, tools: Path
) -> None:
    """The tool itself reports its ids and what it can reach, in the build log."""
    py = catalogue.pick("python", None)
    assert py is not None
    src = tmp_path / "src"
    src.mkdir()
    probe = "echo ids=$(id -u):$(id -g) groups=$(id -G) home=$HOME pwd=$(pwd)\n"
    probe += f"cat {src}/main.py >/dev/null 2>&1 && echo source-visible || echo source-hidden\n"
    probe += "cat /etc/shadow >/dev/null 2>&1 && echo shadow-read || echo shadow-refused\n"
    probe += "exit 3\n"
    (src / "main.py").write_text("x = 1\n")
    builder = Builder(Config(state_dir=tmp_path, uv_path=fake_tool(tools, probe)))
    log = tmp_path / "build.log"
    with pytest.raises(BuildError):
        await builder.build("python", py, src, log)
    text = log.read_text()
    assert f"ids={BUILD_UID}:{BUILD_GID} groups={BUILD_GID} " in text, text
    assert "home=/tmp/scriptd-build/tools/home pwd=/tmp/scriptd-build/work" in text
    assert "source-hidden" in text and "shadow-refused" in text
    assert f"(as uid {BUILD_UID}, gid {BUILD_GID})" in text


async def test_real_python_build_is_the_build_users_then_roots_and_read_only(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    py = catalogue.pick("python", None)
    assert py is not None
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("six==1.16.0\n")
    config = Config(state_dir=tmp_path)
    built = await Builder(config).build("python", py, src, tmp_path / "b.log")
    # uv's cache entries were written by the tool itself: the build user's
    cached = [p for p in (config.cache_dir / "tools" / "uv").rglob("six*")]
    assert cached and all(p.lstat().st_uid == BUILD_UID for p in cached)
    # the environment was handed to root and made read-only
    six = next(built.env_dir.rglob("six.py"))
    for path in (built.env_dir, six):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0) and st.st_mode & 0o222 == 0
    assert not (built.env_dir / ".scriptd-requirements.txt").exists()


async def test_real_node_build_runs_as_the_build_user(tmp_path: Path, catalogue: Catalogue) -> None:
    node = catalogue.pick("javascript", None)
    if node is None:
        pytest.skip("no node on this host")
    src = tmp_path / "src"
    src.mkdir()
    doc = {"name": "t", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}
    (src / "package.json").write_text(json.dumps(doc))
    config = Config(state_dir=tmp_path)
    built = await Builder(config).build("javascript", node, src, tmp_path / "b.log")
    assert (built.env_dir / "node_modules" / "is-number" / "index.js").is_file()
    npm_cache = config.cache_dir / "tools" / "npm"
    assert any(p.lstat().st_uid == BUILD_UID for p in npm_cache.rglob("*"))
    assert os.lstat(built.env_dir / "node_modules").st_uid == 0


async def test_a_tool_below_tmp_is_still_found(tmp_path: Path, catalogue: Catalogue) -> None:
    """The build's namespace covers /tmp; uv in a virtualenv cloned below /tmp still runs."""
    py = catalogue.pick("python", None)
    assert py is not None
    real_uv = find_uv(Config())
    folder = Path(tempfile.mkdtemp(prefix="scriptd-uv-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        uv = folder / "uv"
        shutil.copy2(real_uv, uv)
        src = tmp_path / "src"
        src.mkdir()
        (src / "requirements.txt").write_text("six==1.16.0\n")
        config = Config(state_dir=tmp_path, uv_path=uv)
        built = await Builder(config).build("python", py, src, tmp_path / "b.log")
        assert next(built.env_dir.rglob("six.py")).is_file()
    finally:
        shutil.rmtree(folder)
