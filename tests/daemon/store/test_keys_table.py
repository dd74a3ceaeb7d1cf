"""The store's API keys and execution records, on a real apsw database."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.core.errors import Conflict, NotFound
from daemon.core.models import Event, now_iso
from daemon.keys.api_key import KeyNameTaken, KeyRecord
from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow, iso_from_unix
from tests.daemon.store.test_database import a_script


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


def add_key(store: Store, script_id: int, key_id: str, name: str, at: str = "") -> None:
    store.insert_api_key(script_id, key_id, name, f"hash-{key_id}", "root", at or now_iso())


def row(exec_id: str, script_id: int, at: str, **extra: object) -> ExecutionRow:
    return ExecutionRow(exec_id, script_id, 1, "f", "Secret Key", "ok", at, **extra)  # type: ignore[arg-type]


def test_lookup_joins_the_script_name_and_only_lookup_has_the_hash(store: Store) -> None:
    s = store.insert_script(a_script("demo"))
    add_key(store, s.id, "aaaaaaaaaaaa", "Secret Key")
    assert store.get_api_key("aaaaaaaaaaaa") == KeyRecord(
        "aaaaaaaaaaaa", "demo", "Secret Key", "hash-aaaaaaaaaaaa"
    )
    assert store.get_api_key("bbbbbbbbbbbb") is None
    listed = store.list_api_keys(s.id)
    assert [k.name for k in listed] == ["Secret Key"]
    assert "hash" not in listed[0].to_json() and "hash" not in repr(listed[0])
    # A rename of the script shows in the next lookup (the gateway matches names).
    store.save_script(replace(s, name="renamed"))
    record = store.get_api_key("aaaaaaaaaaaa")
    assert record is not None and record.script == "renamed"


def test_names_are_unique_per_script_not_across_scripts(store: Store) -> None:
    a = store.insert_script(a_script("one"))
    b = store.insert_script(a_script("two"))
    add_key(store, a.id, "aaaaaaaaaaaa", "Secret Key")
    add_key(store, b.id, "bbbbbbbbbbbb", "Secret Key")
    with pytest.raises(KeyNameTaken):
        add_key(store, a.id, "cccccccccccc", "Secret Key")
    with pytest.raises(Conflict):  # the same id: the caller mints again
        add_key(store, a.id, "aaaaaaaaaaaa", "Other")
    with pytest.raises(NotFound):
        add_key(store, 999, "dddddddddddd", "Other")
    assert store.api_key_names(a.id) == ["Secret Key"]


def test_list_is_oldest_first_and_search_is_literal_and_case_blind(store: Store) -> None:
    s = store.insert_script(a_script())
    for i, name in enumerate(["Prod 100%", "staging_a", "Prod backup", "stagingXa"]):
        add_key(store, s.id, f"k{i:011d}", name, f"2026-01-0{i + 1}T00:00:00.000Z")
    assert [k.name for k in store.list_api_keys(s.id)] == [
        "Prod 100%", "staging_a", "Prod backup", "stagingXa",
    ]  # fmt: skip
    assert [k.name for k in store.list_api_keys(s.id, "prod")] == ["Prod 100%", "Prod backup"]
    assert [k.name for k in store.list_api_keys(s.id, "100%")] == ["Prod 100%"]
    assert [k.name for k in store.list_api_keys(s.id, "g_a")] == ["staging_a"]
    assert store.list_api_keys(s.id, "nothing") == []


def test_delete_returns_the_id_once_and_writes_the_event(store: Store) -> None:
    s = store.insert_script(a_script())
    add_key(store, s.id, "aaaaaaaaaaaa", "Secret Key")
    event = Event(0, s.id, now_iso(), "key_deleted", "root", {"key": "Secret Key"})
    assert store.delete_api_key(s.id, "Secret Key", event) == "aaaaaaaaaaaa"
    assert store.delete_api_key(s.id, "Secret Key") is None
    assert store.get_api_key("aaaaaaaaaaaa") is None
    assert [e.kind for e in store.list_events(s.id)] == ["key_deleted"]


def test_last_used_is_batched_skips_deleted_keys_and_never_goes_back(store: Store) -> None:
    s = store.insert_script(a_script())
    add_key(store, s.id, "aaaaaaaaaaaa", "one")
    add_key(store, s.id, "bbbbbbbbbbbb", "two")
    store.touch_api_keys_last_used({"aaaaaaaaaaaa": 1_800_000_000.25, "gonegonegone": 1.0})
    store.touch_api_keys_last_used({"aaaaaaaaaaaa": 1_700_000_000.0})  # older: ignored
    store.touch_api_keys_last_used({})
    used = {k.name: k.last_used_at for k in store.list_api_keys(s.id)}
    assert used == {"one": iso_from_unix(1_800_000_000.25), "two": None}
    assert used["one"] == "2027-01-15T08:00:00.250Z"


def test_keys_and_executions_go_with_their_script(store: Store) -> None:
    s = store.insert_script(a_script())
    add_key(store, s.id, "aaaaaaaaaaaa", "one")
    store.insert_executions([row("e1", s.id, now_iso())])
    store.delete_script(s.id)
    assert store.get_api_key("aaaaaaaaaaaa") is None
    assert store.get_execution("e1") is None


def test_executions_batch_round_trip_newest_first_and_paging(store: Store) -> None:
    s = store.insert_script(a_script())
    error = {"type": "ValueError", "message": "bad", "traceback": "..."}
    batch = [
        row(f"e{i}", s.id, f"2026-01-01T00:00:0{i}.000Z", queue_ms=0.5, wall_ms=1.25,
            cpu_ms=1.0, peak_memory_bytes=1 << 20, input_bytes=2,
            result={"n": i, "text": "é"} if i % 2 == 0 else None,
            error=None if i % 2 == 0 else error, logs="out\n")
        for i in range(5)
    ]  # fmt: skip
    assert store.insert_executions(batch) == 5
    assert store.insert_executions(batch[:1]) == 0  # an id is recorded once
    assert store.insert_executions([]) == 0
    newest = store.list_executions(s.id, 3)
    assert [e.id for e in newest] == ["e4", "e3", "e2"]
    assert newest[0] == batch[4]
    older = store.list_executions(s.id, 10, newest[-1].received_at)
    assert [e.id for e in older] == ["e1", "e0"]
    one = store.get_execution("e1")
    assert one is not None and one.error == error and one.result is None
    assert store.get_execution("nope") is None
    assert one.to_json("demo")["script"] == "demo" and "script_id" not in one.to_json()


def test_a_batch_drops_records_of_deleted_scripts(store: Store) -> None:
    s = store.insert_script(a_script())
    assert store.insert_executions([row("e1", s.id, now_iso()), row("e2", 999, now_iso())]) == 1
    assert store.get_execution("e2") is None


def test_concurrent_batches_from_threads(store: Store) -> None:
    s = store.insert_script(a_script())

    def write(t: int) -> None:
        for b in range(10):
            store.insert_executions([row(f"t{t}b{b}r{r}", s.id, now_iso()) for r in range(20)])

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.list_executions(s.id, 1000)) == 800
