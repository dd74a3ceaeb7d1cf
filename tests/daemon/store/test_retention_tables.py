"""The store's pruning and size, on a real apsw database."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.async_calls import Delivery, NewAsyncCall
from daemon.core.outbox import Email
from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow, iso_from_unix
from tests.daemon.store.test_database import a_script

T0 = 1_780_000_000.0  # a fixed unix time: every row's age is known exactly
DAY = 86_400.0
DAY_MS = 86_400_000


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


def add_records(store: Store, script_id: int, times: list[float], prefix: str) -> None:
    store.insert_executions(
        ExecutionRow(f"{prefix}{i}", script_id, 1, "f", "k", "ok", iso_from_unix(t))
        for i, t in enumerate(times)
    )


def ids(store: Store, script_id: int) -> list[str]:
    return [r.id for r in store.list_executions(script_id, limit=1000)]


def prune_all(prune: object, *args: object, batch: int) -> list[int]:
    """The batch sizes a prune returns until one comes back short."""
    sizes = []
    while True:
        n = prune(*args, batch)  # type: ignore[operator]
        sizes.append(n)
        if n < batch:
            return sizes


def test_records_before_the_cutoff_go_in_batches_per_script(store: Store) -> None:
    a = store.insert_script(a_script("alpha"))
    b = store.insert_script(a_script("beta"))
    add_records(store, a.id, [T0 - 40 * DAY + i for i in range(5)] + [T0 - DAY], "a")
    add_records(store, b.id, [T0 - 40 * DAY], "b")
    sizes = prune_all(store.prune_executions_before, a.id, iso_from_unix(T0 - 30 * DAY), batch=2)
    assert sizes == [2, 2, 1]
    assert ids(store, a.id) == ["a5"]
    assert ids(store, b.id) == ["b0"]  # another script's records are its own pass


def test_only_the_newest_records_of_a_script_stay(store: Store) -> None:
    s = store.insert_script(a_script("alpha"))
    # Two records share a millisecond: the later written one is the newer.
    add_records(store, s.id, [T0 + 1, T0 + 2, T0 + 3, T0 + 3, T0 + 4], "r")
    assert prune_all(store.prune_executions_over, s.id, 3, batch=1) == [1, 1, 0]
    assert ids(store, s.id) == ["r4", "r3", "r2"]
    assert store.prune_executions_over(s.id, 3, 10) == 0  # nothing more over the count


def email(script: str | None) -> Email:
    return Email("deployed", "subject", "body", script, 1)


def test_only_finished_emails_are_pruned_by_age_and_count(store: Store) -> None:
    old_sent = store.outbox_add(email("alpha"), "ops@example.com", T0 - 40 * DAY)
    store.outbox_mark_sent(old_sent, 1, T0 - 40 * DAY)
    old_failed = store.outbox_add(email(None), "ops@example.com", T0 - 40 * DAY)
    store.outbox_mark_failed(old_failed, 5, "refused")
    old_queued = store.outbox_add(email("alpha"), "ops@example.com", T0 - 40 * DAY)
    recent = [store.outbox_add(email("alpha"), "ops@example.com", T0 - i) for i in range(3)]
    for message in recent:
        store.outbox_mark_sent(message, 1, T0)
    assert store.outbox_backlog() == 1  # the queued one
    assert store.prune_outbox(iso_from_unix(T0 - 30 * DAY), 2, 100) == 3
    left = {m.id for m in store.list_outbox(limit=100)}
    # The queued one stays whatever its age; of alpha's finished ones, the newest two.
    assert left == {old_queued, recent[1], recent[2]}


def test_the_size_counts_pages_the_log_and_rows(store: Store) -> None:
    s = store.insert_script(a_script("alpha"))
    add_records(store, s.id, [T0 + i for i in range(50)], "r")
    size = store.store_size()
    assert size.database_bytes > 0 and size.total_bytes >= size.database_bytes
    assert size.executions == 50 and size.outbox == 0
    assert store.store_size(count_rows=False).executions == 0
    assert set(size.to_json()) >= {"total_bytes", "wal_bytes", "free_bytes", "execution_records"}


def add_async_calls(store: Store, script_id: int, times_ms: list[int], prefix: str) -> None:
    for i, at in enumerate(times_ms):
        store.enqueue_async_call(
            NewAsyncCall(f"{prefix}{i}", script_id, "f", "k", b"{}", False, None, None, 0,
                         60_000, at),
            DAY_MS,
        )  # fmt: skip


def finish(store: Store, call_id: str, status: str = "succeeded") -> None:
    store.start_async_attempt(call_id, 0)
    store.end_async_attempt(call_id, {"n": 1}, status=status)


def async_ids(store: Store) -> set[str]:
    return {r["id"] for r in store._rows("SELECT id FROM async_calls")}


def test_finished_async_calls_before_the_cutoff_go_with_their_deliveries(store: Store) -> None:
    s = store.insert_script(a_script("jobs"))
    old, cutoff = int(T0 * 1000) - 40 * DAY_MS, int(T0 * 1000) - 30 * DAY_MS
    add_async_calls(store, s.id, [old] * 5 + [cutoff + 1], "c")
    for call_id in ("c0", "c1", "c5"):
        finish(store, call_id)
    finish(store, "c2", "failed")
    store.record_delivery("c1", Delivery(iso_from_unix(T0), 1, 200, None, 3.0), "delivered", None)
    finish(store, "c3")
    store.record_delivery("c3", Delivery(iso_from_unix(T0), 1, 500, "500", 3.0), "pending", 1)
    # c3's callback is still due and c4 is still queued: both stay whatever their age.
    assert prune_all(store.prune_async_calls_before, s.id, cutoff, batch=2) == [2, 1]
    assert async_ids(store) == {"c3", "c4", "c5"}
    assert store._rows("SELECT call_id FROM callback_deliveries") == [{"call_id": "c3"}]


def test_only_the_newest_async_calls_of_a_script_stay(store: Store) -> None:
    s = store.insert_script(a_script("jobs"))
    add_async_calls(store, s.id, [1, 2, 3, 3, 4], "c")
    for call_id in ("c1", "c2", "c3", "c4"):
        finish(store, call_id)
    # c0 is the oldest but still queued: it counts toward the newest 3 and stays.
    assert prune_all(store.prune_async_calls_over, s.id, 3, batch=1) == [1, 0]
    assert async_ids(store) == {"c0", "c2", "c3", "c4"}
