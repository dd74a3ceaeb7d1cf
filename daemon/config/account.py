"""The config sections of autoscaling, credits and notifications: `[autoscale]`,
`[credits]` and `[notify]`.

daemon/config/loader.py hands these three tables to `parse_sections` and keeps the result
as `Config.account`; each key is checked here with the same kind of message (the key,
the value, what is allowed). Units and defaults are written beside every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from daemon.config.checks import Checker, boolean, fail, flatten, number, text
from daemon.core.credits import low_threshold
from daemon.core.errors import ConfigError

SECTIONS = ("autoscale", "credits", "notify")


@dataclass(frozen=True)
class AutoscaleConfig:
    tick_s: float = 2.0  # seconds between two decisions of a script's autoscaler
    tolerance: float = 0.10  # |average / target - 1| within this: no change
    stabilisation_s: float = 300.0  # scale down only to the highest recommendation this old
    queue_wait_s: float = 1.0  # calls waiting longer than this scale up (the "queue" signal)
    # seconds between two samples of a serving script's replicas and CPU (the console's
    # chart of them); samples are kept a day
    sample_s: float = 15.0


@dataclass(frozen=True)
class CreditsConfig:
    meter_interval_s: float = 5.0  # seconds between two charges of the running replicas
    admission_hours: Decimal = Decimal(1)  # a deploy needs min replicas x this many hours
    low_balance: str = "10%"  # low-credits email below this: "10%" of allocation or "2.5"
    # The allocation a new account starts with, in credits: 100 pays one 1vcpu-2gb
    # replica for about 54 days, so the example deploys out of the box.
    initial_allocation: Decimal = Decimal(100)


@dataclass(frozen=True)
class SmtpSettings:
    host: str = ""  # empty: no SMTP, notifications stay queued in the outbox
    port: int | None = None  # None: 25 / 587 / 465 by security
    security: str = "starttls"  # "none", "starttls" or "tls"
    username: str = ""  # log in only when set
    password: str = ""
    timeout_s: float = 30.0
    verify_tls: bool = True
    ca_file: str = ""  # an extra CA bundle (a private relay's certificate)


@dataclass(frozen=True)
class RetryConfig:
    base_s: float = 30.0  # delay after the first failed attempt; doubles each time
    cap_s: float = 3600.0  # longest delay between two attempts
    give_up_after_s: float = 3 * 86400.0  # then the message is marked failed


@dataclass(frozen=True)
class NotifyConfig:
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    from_addr: str = "scriptd@localhost"
    to_addr: str = ""  # the admin's address; required when smtp.host is set
    retry: RetryConfig = field(default_factory=RetryConfig)
    poll_s: float = 30.0  # how often the outbox is looked at for retries


@dataclass(frozen=True)
class AccountConfig:
    autoscale: AutoscaleConfig = field(default_factory=AutoscaleConfig)
    credits: CreditsConfig = field(default_factory=CreditsConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)


def _credits(key: str, value: object) -> Decimal:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOperation
        amount = Decimal(str(value))
    except InvalidOperation:
        raise fail(key, value, "a number of credits, 0 or more") from None
    if not amount.is_finite() or amount < 0 or amount > 10**9:
        raise fail(key, value, "a number of credits from 0 to 1e9")
    return amount


def _hours(key: str, value: object) -> Decimal:
    amount = _credits(key, value)
    if amount > 8760:
        raise fail(key, value, "a number of hours from 0 to 8760")
    return amount


def _low(key: str, value: object) -> str:
    try:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError
        low_threshold(100, str(value))
    except ValueError:
        allowed = 'a share of the allocation like "10%", or credits like "2.5"'
        raise fail(key, value, allowed) from None
    return str(value)


def _port(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise fail(key, value, "a port from 1 to 65535")
    return value


def _security(key: str, value: object) -> str:
    if value not in ("none", "starttls", "tls"):
        raise fail(key, value, '"none", "starttls" or "tls"')
    return str(value)


# key -> (path of the field in AccountConfig, checker)
KEYS: dict[str, tuple[tuple[str, ...], Checker]] = {
    "autoscale.tick_s": (("autoscale", "tick_s"), number(0.05, 3600)),
    "autoscale.tolerance": (("autoscale", "tolerance"), number(0, 1)),
    "autoscale.stabilisation_s": (("autoscale", "stabilisation_s"), number(0, 86400)),
    "autoscale.queue_wait_s": (("autoscale", "queue_wait_s"), number(0, 3600)),
    "autoscale.sample_s": (("autoscale", "sample_s"), number(0.05, 3600)),
    "credits.meter_interval_s": (("credits", "meter_interval_s"), number(0.05, 3600)),
    "credits.admission_hours": (("credits", "admission_hours"), _hours),
    "credits.low_balance": (("credits", "low_balance"), _low),
    "credits.initial_allocation": (("credits", "initial_allocation"), _credits),
    "notify.smtp.host": (("notify", "smtp", "host"), text),
    "notify.smtp.port": (("notify", "smtp", "port"), _port),
    "notify.smtp.security": (("notify", "smtp", "security"), _security),
    "notify.smtp.username": (("notify", "smtp", "username"), text),
    "notify.smtp.password": (("notify", "smtp", "password"), text),
    "notify.smtp.timeout_s": (("notify", "smtp", "timeout_s"), number(0.1, 600)),
    "notify.smtp.verify_tls": (("notify", "smtp", "verify_tls"), boolean),
    "notify.smtp.ca_file": (("notify", "smtp", "ca_file"), text),
    "notify.from": (("notify", "from_addr"), text),
    "notify.to": (("notify", "to_addr"), text),
    "notify.retry.base_s": (("notify", "retry", "base_s"), number(0.01, 86400)),
    "notify.retry.cap_s": (("notify", "retry", "cap_s"), number(0.01, 7 * 86400)),
    "notify.retry.give_up_after_s": (
        ("notify", "retry", "give_up_after_s"),
        number(1, 365 * 86400),
    ),
    "notify.poll_s": (("notify", "poll_s"), number(0.01, 86400)),
}


def _set(obj: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return replace(obj, **{path[0]: value})
    return replace(obj, **{path[0]: _set(getattr(obj, path[0]), path[1:], value)})


def parse_sections(tables: Mapping[str, Any]) -> AccountConfig:
    """`{"autoscale": {...}, "credits": {...}, "notify": {...}}` (any may be absent)."""
    config = AccountConfig()
    for section, table in tables.items():
        if not isinstance(table, dict):
            raise fail(section, table, "a table of keys")
        for key, value in flatten(table, f"{section}.").items():
            if key not in KEYS:
                raise ConfigError(
                    f"unknown config key {key!r}; allowed in [{section}]: "
                    + ", ".join(k for k in KEYS if k.startswith(section + "."))
                )
            path, check = KEYS[key]
            config = _set(config, path, check(key, value))
    notify = config.notify
    if notify.smtp.host and not notify.to_addr:
        raise fail("notify.to", "", "the admin's address, required with notify.smtp.host")
    if notify.retry.cap_s < notify.retry.base_s:
        raise fail("notify.retry.cap_s", notify.retry.cap_s, "at least notify.retry.base_s")
    return config
