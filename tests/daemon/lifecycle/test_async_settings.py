from __future__ import annotations

import pytest

from daemon.core.errors import BadRequest
from daemon.core.models import AsyncSettings, Settings
from daemon.lifecycle.request_checks import async_settings


def test_each_field_is_optional_and_the_other_stays() -> None:
    base = AsyncSettings(1, 600)
    assert async_settings({"retries": 2}, base) == AsyncSettings(2, 600)
    assert async_settings({"max_event_age_s": 60}, base) == AsyncSettings(1, 60)
    assert AsyncSettings() == AsyncSettings(0, 6 * 3600)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (3, ["async", "an object"]),
        ({"retry": 1}, ["async", "an object"]),
        ({"retries": 3}, ["async.retries", "from 0 to 2"]),
        ({"retries": True}, ["async.retries"]),
        ({"max_event_age_s": 0}, ["async.max_event_age_s", "from 1 to 604800"]),
    ],
)
def test_bad_async_settings_are_refused(doc: object, words: list[str]) -> None:
    with pytest.raises(BadRequest) as exc:
        async_settings(doc, AsyncSettings())
    for word in words:
        assert word in str(exc.value)


def test_settings_without_async_read_as_the_default() -> None:
    # Version snapshots written before async calls existed have no "async" key.
    old = Settings.from_json({"env": [], "timeout_s": 30})
    assert old.async_calls == AsyncSettings()
    assert Settings.from_json(old.to_json()) == old
