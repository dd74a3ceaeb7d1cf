"""The store's online copy: taken while other threads write through the same
connection (as the daemon's recorder does), it is a whole, consistent database."""

from __future__ import annotations

import threading
from pathlib import Path

import apsw

from daemon.core.models import now_iso
from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow
from daemon.store.snapshot import snapshot_problems
from tests.daemon.store.test_database import a_script


def records(script_id: int, start: int, count: int) -> list[ExecutionRow]:
    now = now_iso()
    return [
        ExecutionRow(f"r{start + i:09d}", script_id, 1, "f", "k", "ok", now, result="x" * 200)
        for i in range(count)
    ]


def test_a_copy_taken_while_threads_write_is_consistent(tmp_path: Path) -> None:
    store = Store(tmp_path / "scriptd.db")
    script = store.insert_script(a_script())
    for start in range(0, 20_000, 5_000):  # a few MiB: the copy takes several steps
        store.insert_executions(records(script.id, start, 5_000))
    stop, written, errors = threading.Event(), [0], []

    def write() -> None:
        n = 1_000_000
        while not stop.is_set():
            try:
                store.insert_executions(records(script.id, n, 50))
            except Exception as exc:  # the test fails on any, below
                errors.append(exc)
                return
            n, written[0] = n + 50, written[0] + 50

    writers = [threading.Thread(target=write) for _ in range(2)]
    for t in writers:
        t.start()
    try:
        store.snapshot_to(tmp_path / "copy.db")
    finally:
        stop.set()
        for t in writers:
            t.join()
    assert errors == [] and written[0] > 0
    assert snapshot_problems(tmp_path / "copy.db", 100) == []
    copy = apsw.Connection(str(tmp_path / "copy.db"))
    count = copy.execute("SELECT count(*) FROM executions").fetchall()[0][0]
    mode = copy.execute("PRAGMA journal_mode").fetchall()[0][0]
    copy.close()
    assert 20_000 <= count <= 20_000 + written[0]  # the copy is a point in between
    assert mode == "delete"  # one self-contained file
    assert not Path(f"{tmp_path / 'copy.db'}-wal").exists()
    store.close()
