"""The store's queue of asynchronous calls and the callback secret, on a real apsw
database."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from daemon.core.async_calls import Delivery, NewAsyncCall
from daemon.core.models import AsyncSettings, Script
from daemon.store.database import Store
from tests.daemon.store.test_database import a_script

DAY_MS = 86_400_000


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


@pytest.fixture
def script(store: Store) -> Script:
    return store.insert_script(a_script("jobs"))


def new(script: Script, call_id: str, at: int = 1_000, key: str | None = None) -> NewAsyncCall:
    return NewAsyncCall(call_id, script.id, "f", "Secret Key", b'{"a": 1}', False, key,
                        None, 1, 60_000, at)  # fmt: skip


def test_a_call_is_queued_and_found_with_its_script(store: Store, script: Script) -> None:
    call, created = store.enqueue_async_call(new(script, "c1"), DAY_MS)
    assert created and call.status == "queued" and call.script == "jobs"
    assert call.body == b'{"a": 1}' and call.attempts == 0
    assert [c.id for c in store.due_async_calls(1_000, 10)] == ["c1"]
    assert store.due_async_calls(999, 10) == []
    assert store.next_async_due_ms() == 1_000
    store.enqueue_async_call(new(script, "c2", at=2_000), DAY_MS)
    assert store.async_queue_stats() == {"jobs": (2, 1_000)}


def test_an_idempotency_key_returns_the_first_call_within_the_window(
    store: Store, script: Script
) -> None:
    first, _ = store.enqueue_async_call(new(script, "c1", 1_000, "k"), DAY_MS)
    again, created = store.enqueue_async_call(new(script, "c2", 2_000, "k"), DAY_MS)
    assert not created and again.id == first.id
    later, created = store.enqueue_async_call(new(script, "c3", 1_000 + DAY_MS + 1, "k"), DAY_MS)
    assert created and later.id == "c3"
    other = store.insert_script(a_script("other"))
    _, created = store.enqueue_async_call(new(other, "c4", 2_000, "k"), DAY_MS)
    assert created  # keys are per script


def test_an_attempt_starts_only_from_queued_and_a_cancel_only_then(
    store: Store, script: Script
) -> None:
    store.enqueue_async_call(new(script, "c1"), DAY_MS)
    store.enqueue_async_call(new(script, "c2"), DAY_MS)
    assert store.start_async_attempt("c1", 1_100)
    assert not store.start_async_attempt("c1", 1_200)  # running already
    assert not store.cancel_async_call("c1", 1_300)
    assert store.cancel_async_call("c2", 1_300)
    assert not store.start_async_attempt("c2", 1_400)
    got = store.get_async_call("c2")
    assert got is not None and got.status == "canceled" and got.ended_ms == 1_300


def test_attempts_are_logged_and_a_dead_letter_runs_again(store: Store, script: Script) -> None:
    store.enqueue_async_call(new(script, "c1"), DAY_MS)
    store.start_async_attempt("c1", 1_100)
    store.end_async_attempt("c1", {"execution_id": "e1", "status": "error"},
                            status="failed", dead=1, ended_ms=1_200,
                            error_json='{"type": "ValueError"}')  # fmt: skip
    call = store.get_async_call("c1")
    assert call is not None and call.dead and call.attempts == 1
    assert call.attempt_log == ({"execution_id": "e1", "status": "error"},)
    assert [c.id for c in store.list_async_calls(script.id, "dead")] == ["c1"]
    assert store.list_async_calls(script.id, "queued") == []
    assert store.retry_dead_async_call("c1", 5_000)
    again = store.get_async_call("c1")
    assert again is not None and again.status == "queued" and not again.dead
    assert again.attempts == 0 and again.received_ms == 5_000 and again.error_json is None
    assert not store.retry_dead_async_call("c1", 6_000)  # not dead any more
    with pytest.raises(ValueError, match="not a column"):
        store.end_async_attempt("c1", None, body=b"x")


def test_a_stopped_daemons_running_calls_are_queued_again(store: Store, script: Script) -> None:
    store.enqueue_async_call(new(script, "c1"), DAY_MS)
    store.start_async_attempt("c1", 1_100)
    assert store.requeue_running_async_calls() == 1
    call = store.get_async_call("c1")
    assert call is not None and call.status == "queued" and call.attempts == 0


def test_callback_deliveries_are_recorded(store: Store, script: Script) -> None:
    store.enqueue_async_call(new(script, "c1"), DAY_MS)
    store.end_async_attempt("c1", None, status="succeeded", ended_ms=2_000,
                            callback_state="pending", callback_next_ms=2_000)  # fmt: skip
    assert [c.id for c in store.due_callbacks(2_000, 10)] == ["c1"]
    store.record_delivery("c1", Delivery("t", 1, 500, "answered 500", 3.0), "pending", 4_000)
    assert store.due_callbacks(3_000, 10) == []
    store.record_delivery("c1", Delivery("t", 2, 200, None, 2.0), "delivered", None)
    call = store.get_async_call("c1")
    assert call is not None and call.callback_state == "delivered" and call.callback_tries == 2
    assert [d.status_code for d in call.deliveries] == [500, 200]


def test_the_callback_secret_is_sealed_made_once_and_rotated(
    store: Store, script: Script, tmp_path: Path
) -> None:
    secret = store.callback_secret(script.id)
    assert secret.startswith("whsec_") and store.callback_secret(script.id) == secret
    rotated = store.rotate_callback_secret(script.id)
    assert rotated != secret and store.callback_secret(script.id) == rotated
    store.close()
    for path in tmp_path.iterdir():
        assert rotated.encode() not in path.read_bytes(), path


def test_async_settings_are_stored_with_the_script(store: Store, script: Script) -> None:
    settings = replace(script.settings, async_calls=AsyncSettings(2, 60))
    saved = store.save_script(replace(script, settings=settings))
    assert saved.settings.async_calls == AsyncSettings(2, 60)
    got = store.get_script("jobs")
    assert got is not None and got.settings.async_calls == AsyncSettings(2, 60)


def test_deleting_the_script_removes_its_calls(store: Store, script: Script) -> None:
    store.enqueue_async_call(new(script, "c1"), DAY_MS)
    store.callback_secret(script.id)
    store.delete_script(script.id)
    assert store.get_async_call("c1") is None


def test_calls_past_their_event_age_expire_as_dead_letters(store: Store, script: Script) -> None:
    store.enqueue_async_call(new(script, "old", at=1_000), DAY_MS)  # max age 60 s
    store.enqueue_async_call(replace(new(script, "cb", at=1_000), callback_url="http://x/"),
                             DAY_MS)  # fmt: skip
    store.enqueue_async_call(new(script, "young", at=50_000), DAY_MS)
    assert store.expire_async_calls(61_000) == 0
    assert store.expire_async_calls(61_001) == 2
    old, cb = store.get_async_call("old"), store.get_async_call("cb")
    assert old is not None and old.status == "expired" and old.dead and old.ended_ms == 61_001
    assert old.callback_state is None and "60 s" in (old.error_json or "")
    assert cb is not None and cb.callback_state == "pending" and cb.callback_next_ms == 61_001
    assert [c.id for c in store.due_async_calls(61_001, 10)] == ["young"]
    assert store.due_async_calls(61_001, 10, skip=["jobs"]) == []
