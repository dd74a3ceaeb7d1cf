from __future__ import annotations

from daemon.cli import render_async

CALL = {
    "async": True, "execution_id": "abc-1", "script": "jobs", "function": "boom",
    "status": "failed", "dead": True, "attempts": 2, "max_retries": 1,
    "attempt_log": [
        {"execution_id": "abc-2", "status": "error", "started_at": "2026-12-04T10:00:00.000Z",
         "ended_at": "2026-12-04T10:00:01.000Z", "error_type": "ValueError"},
    ],
    "received_at": "2026-12-04T10:00:00.000Z", "started_at": None, "ended_at": None,
    "duration_ms": None, "key_name": "Secret Key", "idempotency_key": None,
    "error": {"type": "ValueError", "message": "boom"},
    "callback": {"url": "https://hooks.example.com/x", "state": "failed", "deliveries": [
        {"at": "2026-12-04T10:00:02.000Z", "attempt": 1, "status_code": None,
         "error": "egress: off", "duration_ms": 1.5}]},
}  # fmt: skip


def test_one_call_shows_its_attempts_error_and_deliveries() -> None:
    text = render_async.call(CALL)
    for words in ("abc-1", "a dead letter", "2 (retries allowed: 1)", "abc-2", "ValueError",
                  "Callback https://hooks.example.com/x: failed", "egress: off"):  # fmt: skip
        assert words in text, words


def test_the_listing_marks_dead_letters() -> None:
    listing = {"script": "jobs", "calls": [{**CALL, "error_type": "ValueError"}]}
    text = render_async.calls_table(listing)
    assert "failed (dead)" in text and "abc-1" in text
    assert "No asynchronous calls of jobs" in render_async.calls_table({"script": "jobs"})
