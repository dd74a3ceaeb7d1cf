"""Shutdown steps run by rank, every one of them, failures gathered."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from daemon.core.teardown import Teardown
from tests.conftest import require_root
from tests.helpers import REPO


async def test_steps_run_by_rank_and_every_one_runs() -> None:
    ran: list[str] = []
    t = Teardown()

    async def later() -> None:
        await asyncio.sleep(0)
        ran.append("store")

    def broken() -> None:
        ran.append("gateway")
        raise OSError("port gone")

    t.add(100, "store", later)
    t.add(10, "gateway", broken)
    t.add(10, "admin", lambda: ran.append("admin"))
    failures = await t.run()
    assert ran == ["gateway", "admin", "store"]
    assert [(name, type(exc)) for name, exc in failures] == [("gateway", OSError)]


async def test_steps_run_once() -> None:
    t = Teardown()
    count: list[int] = []
    t.add(1, "once", lambda: count.append(1))
    await t.run()
    assert await t.run() == []
    assert count == [1]


def test_dev_mode_is_refused_as_root(tmp_path: Path) -> None:
    """--dev-no-sandbox runs scripts as the daemon's user: never as root."""
    require_root()  # the refusal is about root
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.main", "--dev-no-sandbox", "--state-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "refused as root" in proc.stderr
    assert not any(tmp_path.iterdir())
