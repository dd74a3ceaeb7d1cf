"""The headers of asynchronous calls, read the same by both fronts."""

from __future__ import annotations

import pytest

from daemon.gateway.async_intake import _callback_problem, _idempotency_problem, wants_async


@pytest.mark.parametrize(
    ("prefer", "wanted"),
    [
        ("respond-async", True),
        ("Respond-Async", True),
        ("wait=10, respond-async", True),
        ("respond-async; wait=5", True),
        ("return=minimal", False),
        ("respond-asynchronously", False),
        ("", False),
        (None, False),
    ],
)
def test_prefer_respond_async(prefer: str | None, wanted: bool) -> None:
    assert wants_async(prefer) is wanted


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/x?y=1", True),
        ("http://127.0.0.1:8000/hook", True),
        ("ftp://example.com/x", False),
        ("/relative", False),
        ("http://", False),
        ("https://example.com/" + "a" * 3000, False),
    ],
)
def test_callback_url_must_be_absolute_http(url: str, ok: bool) -> None:
    assert (_callback_problem(url) is None) is ok


@pytest.mark.parametrize(
    ("key", "ok"), [("order-42", True), ("", False), ("a" * 256, False), ("tab\there", False)]
)
def test_idempotency_key_is_short_visible_ascii(key: str, ok: bool) -> None:
    assert (_idempotency_problem(key) is None) is ok
