"""What the Test tab shows of an answer: the body pretty with the gateway's digits,
a step's logs and output apart, the record's status and logs."""

from __future__ import annotations

from daemon.console.test_tab import _shown
from daemon.gateway.tryout import TryAnswer


def test_a_step_answer_keeps_its_digits_and_shows_its_logs_apart() -> None:
    body = (
        b'{"outputs": {"total": {"n": 12.50}, "big": {"n": 123456789012345678901}},'
        b' "execution_id": "x-1", "logs": [{"ts": "t", "message": "hi"}],'
        b' "logs_discarded": 2, "stdout": "out", "stderr": ""}'
    )
    shown = _shown(TryAnswer(200, body, "x-1", 3.25, "ok", "out", None))
    assert '"n": 12.50' in shown["body"] and "123456789012345678901" in shown["body"]
    assert "logs" not in shown["body"] and "stdout" not in shown["body"]
    assert shown["step_logs"] == [{"ts": "t", "message": "hi"}] and shown["logs_discarded"] == 2
    assert (shown["ok"], shown["outcome"], shown["execution_id"]) == (True, "ok", "x-1")


def test_a_refusal_that_is_not_json_is_shown_as_sent() -> None:
    shown = _shown(TryAnswer(503, b"not json", None, 1.0))
    assert shown["body"] == "not json" and not shown["ok"] and shown["execution_id"] is None
