"""The retention pass: executions, finished emails and build logs pruned by age and by
count per script, on a real store and state dir, with an injected clock."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from daemon.account.retention_loop import Pruned, Retention
from daemon.config.daemon_config import Config
from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow, iso_from_unix
from daemon.store.state_dir import StateDir
from tests.daemon.store.test_database import a_script
from tests.daemon.store.test_retention_tables import DAY, T0, email


def write_log(state: StateDir, script_id: int, number: int, mtime: float) -> Path:
    path = state.build_log(script_id, number)
    path.parent.mkdir(parents=True)
    path.write_text(f"build of v{number}\n")
    os.utime(path, (mtime, mtime))
    return path


async def test_a_pass_prunes_by_age_and_count(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.prepare()
    store = Store(state.db)
    config = Config(
        state_dir=state.root,
        executions_retention_days=30,
        executions_max_per_script=3,
        executions_prune_batch=2,
    )
    now = [T0]
    retention = Retention(config, store, state, clock=lambda: now[0])
    alpha = store.insert_script(a_script("alpha"))
    beta = store.insert_script(a_script("beta"))
    store.save_script(replace(alpha, current_version=1))
    store.insert_executions(
        [ExecutionRow(f"a{i}", alpha.id, 1, "f", "k", "ok", iso_from_unix(T0 - i * DAY))
         for i in range(6)]  # 0 to 5 days old: the newest 3 stay
        + [ExecutionRow(f"b{i}", beta.id, 1, "f", "k", "ok", iso_from_unix(T0 - 29 * DAY - i))
           for i in range(2)]  # 29 days old: they stay, until the clock moves
    )  # fmt: skip
    sent = store.outbox_add(email("alpha"), "ops@example.com", T0 - 31 * DAY)
    store.outbox_mark_sent(sent, 1, T0 - 31 * DAY)
    v1 = write_log(state, alpha.id, 1, T0 - 60 * DAY)  # the current version's: kept
    v2 = write_log(state, alpha.id, 2, T0 - 31 * DAY)  # too old
    recent = [write_log(state, beta.id, n, T0 - n) for n in range(1, 6)]  # newest: v1

    assert await retention.prune() == Pruned(executions=3, outbox=1, build_logs=3)
    kept = [r.id for r in store.list_executions(alpha.id, limit=100)]
    assert kept == ["a0", "a1", "a2"]
    assert len(store.list_executions(beta.id, limit=100)) == 2
    assert store.list_outbox() == []
    assert v1.exists() and not v2.exists()
    # beta keeps its 3 newest logs: versions 5, 4, 3 by number, whatever their times.
    assert [p.exists() for p in recent] == [False, False, True, True, True]

    now[0] = T0 + 2 * DAY  # two days later, without sleeping: beta's records are 31 days old
    assert await retention.prune() == Pruned(executions=2)
    assert store.list_executions(beta.id, limit=100) == []
    assert retention.passes == 2
    store.close()
