"""The front's config keys: defaults, refusals that name the key, and the limits the
daemon serves with."""

from __future__ import annotations

import pytest

from daemon.config.daemon_config import Config
from daemon.config.loader import config_from_mapping
from daemon.core.errors import ConfigError
from daemon.gateway.front_serve import front_limits


def test_defaults_and_the_limits_they_give() -> None:
    limits = front_limits(Config())
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.idle_timeout_s) == (
        10.0, 30.0, 75.0,
    )  # fmt: skip
    c = config_from_mapping(
        {"gateway": {"header_timeout_s": 2, "body_timeout_s": 3.5, "idle_timeout_s": 60}}
    )
    limits = front_limits(c)
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.idle_timeout_s) == (
        2.0, 3.5, 60.0,
    )  # fmt: skip


@pytest.mark.parametrize("key", ["header_timeout_s", "body_timeout_s", "idle_timeout_s"])
def test_bad_values_name_the_key(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"gateway\.{key}"):
        config_from_mapping({"gateway": {key: 0}})
