from __future__ import annotations

import pytest

from daemon.core.errors import BadRequest
from daemon.core.models import EgressSettings, Settings
from daemon.lifecycle.request_checks import egress_settings


def test_each_field_is_optional_and_the_others_stay() -> None:
    base = EgressSettings("allowlist", ("api.example.com",), True)
    assert egress_settings({"inspect": False}, base) == EgressSettings(
        "allowlist", ("api.example.com",), False
    )
    changed = egress_settings({"allow_hosts": ["*.Example.org:8443", "*.example.org:8443"]}, base)
    assert changed.allow_hosts == ("*.example.org:8443",)
    assert egress_settings({"policy": "off"}, base).policy == "off"


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ("public", ["egress", "an object"]),
        ({"mode": "off"}, ["egress", "an object"]),
        ({"policy": "open"}, ["egress.policy", "off, public, allowlist"]),
        ({"allow_hosts": "x.com"}, ["egress.allow_hosts", "a list"]),
        ({"allow_hosts": ["http://x.com"]}, ["allow-host", "http://x.com"]),
        ({"inspect": "no"}, ["egress.inspect", "true or false"]),
        ({"policy": "allowlist"}, ["allowlist needs at least one host"]),
    ],
)
def test_bad_egress_settings_are_refused(doc: object, words: list[str]) -> None:
    with pytest.raises(BadRequest) as exc:
        egress_settings(doc, EgressSettings())
    for word in words:
        assert word in str(exc.value)


def test_settings_without_egress_read_as_the_default() -> None:
    # Version snapshots written before egress existed have no "egress" key.
    old = Settings.from_json({"env": [], "timeout_s": 30})
    assert old.egress == EgressSettings()
    assert Settings.from_json(old.to_json()) == old
