"""Built environments no version needs are swept; the tools' caches stay bounded."""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon.build.sweep import KEEP_UNUSED_S, sweep_envs, trim_caches

MARKER = ".scriptd-built"


def make_env(envs: Path, name: str, age_s: float, marker: bool = True) -> Path:
    env = envs / name
    (env / "bin").mkdir(parents=True)
    if marker:
        (env / MARKER).write_text("built\n")
    then = time.time() - age_s
    os.utime(env / MARKER if marker else env, (then, then))
    return env


def test_only_unused_and_old_environments_go(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    make_env(envs, "used", KEEP_UNUSED_S * 2)
    make_env(envs, "recent", 60)  # another daemon (or a build in flight) may want it
    make_env(envs, "unused", KEEP_UNUSED_S * 2)
    make_env(envs, "half", 0, marker=False)  # a leftover without its marker
    make_env(envs, "k1.tmp-123", 700, marker=False)  # older than the longest build
    make_env(envs, "k2.tmp-456", 5, marker=False)  # a build running now
    (envs / "unused" / "bin").chmod(0o555)  # sealed environments are read-only
    removed = sweep_envs(envs, {"used"}, MARKER, max_build_s=600)
    assert sorted(removed) == ["half", "k1.tmp-123", "unused"]
    assert sorted(p.name for p in envs.iterdir()) == ["k2.tmp-456", "recent", "used"]


def test_a_missing_envs_folder_is_nothing_to_sweep(tmp_path: Path) -> None:
    assert sweep_envs(tmp_path / "nope", set(), MARKER, 600) == []


def test_caches_past_the_limit_are_emptied(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    for name in ("uv", "npm", "home"):
        (tools / name).mkdir(parents=True)
    (tools / "uv" / "wheel").write_bytes(os.urandom(256 << 10))
    (tools / "home" / ".npmrc").write_text("x\n")
    assert trim_caches(tools, 1 << 20) >= 256 << 10  # under the limit: kept
    assert (tools / "uv" / "wheel").exists()
    assert trim_caches(tools, 64 << 10) >= 256 << 10
    assert not (tools / "uv").exists() and not (tools / "npm").exists()
    assert (tools / "home" / ".npmrc").exists()  # not a cache
