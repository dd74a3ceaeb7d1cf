"""The base environment of code steps: built once per interpreter and package list,
shared, never seen half-built; a step with a requirements.txt gets the base packages
in its own environment. Real uv, real index (small packages), real build user."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from daemon.build.builder import DONE_MARKER, Builder, base_env_key
from daemon.build.catalogue import Runtime, discover_runtimes
from daemon.build.env_lock import host_lock
from daemon.config.daemon_config import Config
from tests.conftest import require_root

BASE = ("six==1.16.0",)


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()  # the tools run as the build user: setpriv and mounts need root


@pytest.fixture(scope="module")
def python() -> Runtime:
    found = discover_runtimes(Config()).pick("python", None)
    assert found is not None
    return found


def step_src(root: Path, requirements: str | None = None) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    (src / "main.py").write_text("outputs.x = 1\n")
    (src / "step.toml").write_text('[outputs]\nx = "n"\n')
    if requirements is not None:
        (src / "requirements.txt").write_text(requirements)
    return src


def site_packages(env: Path) -> Path:
    return next(env.glob("lib/python3*/site-packages"))


def test_the_key_follows_the_interpreter_and_the_list(tmp_path: Path, python: Runtime) -> None:
    config = Config(state_dir=tmp_path)
    key = base_env_key(config, python, ("a", "b"))
    assert key.startswith("base-") and len(key) == 32
    assert base_env_key(config, python, ("b", "a")) == key  # the order does not matter
    assert base_env_key(config, python, ("a",)) != key
    other = Runtime("python", "3.99.0", "/elsewhere/python3.99")
    assert base_env_key(config, other, ("a", "b")) != key


async def test_concurrent_steps_build_it_once_and_share_it(tmp_path: Path, python: Runtime) -> None:
    """Three deploys at once in one daemon, and a second daemon on the same cache:
    one build; every other waits and reuses the same folder."""
    config = Config(state_dir=tmp_path)
    one, two = Builder(config), Builder(config)
    srcs = [step_src(tmp_path / f"s{i}") for i in range(4)]
    logs = [tmp_path / f"{i}.log" for i in range(4)]
    builds = [one.build("python", python, srcs[i], logs[i], BASE) for i in range(3)]
    builds.append(two.build("python", python, srcs[3], logs[3], BASE))
    results = await asyncio.gather(*builds)
    assert len({r.env_dir for r in results}) == 1
    assert [r.cached for r in results].count(False) == 1
    env = results[0].env_dir
    assert env.name == base_env_key(config, python, BASE) and (env / DONE_MARKER).is_file()
    assert (site_packages(env) / "six.py").is_file()
    texts = [log.read_text() for log in logs]
    assert sum("six==1.16.0): building" in t for t in texts) == 1, texts
    assert all("base environment base-" in t for t in texts)
    assert one.base_env_state(python, BASE)["state"] == "ready"
    assert one.base_env_state(python, ("pytz",))["state"] == "absent"
    leftovers = [p.name for p in config.cache_dir.joinpath("envs").iterdir() if ".tmp-" in p.name]
    assert leftovers == []


async def test_a_step_with_requirements_gets_the_base_packages_too(
    tmp_path: Path, python: Runtime
) -> None:
    config = Config(state_dir=tmp_path)
    src = step_src(tmp_path, "pytz==2024.1\n")
    built = await Builder(config).build("python", python, src, tmp_path / "b.log", BASE)
    assert not built.env_key.startswith("base-")
    site = site_packages(built.env_dir)
    assert (site / "six.py").is_file() and (site / "pytz").is_dir()
    assert "with the base packages of steps: six==1.16.0" in (tmp_path / "b.log").read_text()


async def test_a_functions_project_gets_no_base_packages(tmp_path: Path, python: Runtime) -> None:
    config = Config(state_dir=tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    built = await Builder(config).build("python", python, src, tmp_path / "b.log")
    assert not built.env_key.startswith("base-")
    assert not (site_packages(built.env_dir) / "six.py").exists()


async def test_a_held_lock_makes_the_other_wait(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "k"
    waited: list[bool] = []

    async def note() -> None:
        waited.append(True)

    async with host_lock(path, time.monotonic() + 10, note):
        other = asyncio.create_task(_take(path, note))
        await asyncio.sleep(0)
        deadline = time.monotonic() + 10
        while not waited:  # the second taker found the lock held
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert not other.done()
    await asyncio.wait_for(other, 10)


async def _take(path: Path, note: object) -> None:
    async with host_lock(path, time.monotonic() + 10, note):  # type: ignore[arg-type]
        pass
