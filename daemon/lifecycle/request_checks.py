"""Checking request bodies: JSON objects in, typed changes out.

Every function here is pure. A bad field raises BadRequest naming the field, the
value given and what is allowed, before anything is changed anywhere.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

from daemon.config.daemon_config import Config
from daemon.config.egress import EGRESS_POLICIES
from daemon.core.credits import to_micro
from daemon.core.errors import BadRequest
from daemon.core.models import (
    CONCURRENCY_RANGE,
    DISPLAY_NAME_RE,
    ENV_KEY_RE,
    LANGUAGES,
    MASK,
    MAX_ASYNC_RETRIES,
    MAX_EVENT_AGE_RANGE_S,
    SCRIPT_NAME_RE,
    WORKERS_PER_REPLICA_RANGE,
    AsyncSettings,
    EgressSettings,
    EnvVar,
    Resources,
    Settings,
    StepSpec,
)
from daemon.egress.policy import HostPattern

MAX_DESCRIPTION = 2000
MAX_ENV_VARS = 200
MAX_ENV_VALUE = 32 * 1024
SCRIPT_FIELDS = frozenset(
    ("name", "description", "language", "language_version", "archive_id", "env", "timeout_s",
     "min_replicas", "max_replicas", "cpu_target", "profile", "deploy", "egress", "secrets",
     "async", "concurrency", "workers_per_replica")
)  # fmt: skip
FIXED_AFTER_DRAFT = ("name", "language", "language_version")
MAX_ALLOCATION = Decimal(10**9)


def _bad(field: str, value: object, allowed: str) -> BadRequest:
    shown = value if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return BadRequest(f"{field} = {shown!r} is not allowed: {allowed}", field=field)


def check_object(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown field {unknown[0]!r}; allowed fields: {', '.join(sorted(allowed))}",
            field=unknown[0],
        )
    return body


def script_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not SCRIPT_NAME_RE.fullmatch(value):
        raise _bad(field, value, "2-63 characters: a lowercase letter, then a-z, 0-9 or -")
    return value


def display_name(value: object) -> str:
    if not isinstance(value, str) or not DISPLAY_NAME_RE.fullmatch(value):
        raise _bad(
            "display_name",
            value,
            "2-63 characters: a lowercase letter, then a-z, 0-9 or -; unique within the script",
        )
    return value


def language(value: object) -> str:
    if value not in LANGUAGES:
        raise _bad("language", value, " or ".join(LANGUAGES))
    return str(value)


def description(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise _bad("description", value, f"a string of at most {MAX_DESCRIPTION} characters")
    return value


def _int(field: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 2.0 is an integer to JSON (and to JSON Schema)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(field, value, f"an integer from {lo} to {hi}")
    return value


def env_vars(value: object, old: tuple[EnvVar, ...] = ()) -> tuple[EnvVar, ...]:
    """The env list. A secret sent back masked ("********") keeps its old value,
    so a client can round-trip what it read without knowing the secret."""
    if not isinstance(value, list) or len(value) > MAX_ENV_VARS:
        raise _bad("env", value, f"a list of at most {MAX_ENV_VARS} {{key, value, secret}} objects")
    previous = {e.key: e for e in old}
    result: list[EnvVar] = []
    for i, item in enumerate(value):
        field = f"env[{i}]"
        if not isinstance(item, dict) or set(item) - {"key", "value", "secret"}:
            raise _bad(field, item, 'an object {"key": ..., "value": ..., "secret": false}')
        key, val, secret = item.get("key"), item.get("value", ""), item.get("secret", False)
        if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
            raise _bad(f"{field}.key", key, "a letter or _, then letters, digits or _")
        if not isinstance(val, str) or len(val) > MAX_ENV_VALUE or "\0" in val:
            raise _bad(f"{field}.value", val, f"a string of at most {MAX_ENV_VALUE} characters")
        if not isinstance(secret, bool):
            raise _bad(f"{field}.secret", secret, "true or false")
        if secret and val == MASK and key in previous:
            val = previous[key].value
        if any(e.key == key for e in result):
            raise _bad(f"{field}.key", key, "each key once")
        result.append(EnvVar(key, val, secret))
    return tuple(result)


def settings(body: dict[str, Any], base: Settings, config: Config) -> Settings:
    out = base
    if "env" in body:
        out = replace(out, env=env_vars(body["env"], base.env))
    if "timeout_s" in body:
        lo, hi = config.timeout_min_s, config.timeout_max_s
        out = replace(out, timeout_s=_int("timeout_s", body["timeout_s"], lo, hi))
    if "egress" in body:
        out = replace(out, egress=egress_settings(body["egress"], base.egress))
    if "secrets" in body:
        out = replace(out, secrets=secret_names(body["secrets"]))
    if "async" in body:
        out = replace(out, async_calls=async_settings(body["async"], base.async_calls))
    if "concurrency" in body:
        out = replace(out, concurrency=_int("concurrency", body["concurrency"], *CONCURRENCY_RANGE))
    if "workers_per_replica" in body:
        out = replace(out, workers_per_replica=workers_per_replica(body["workers_per_replica"]))
    clash = sorted({e.key for e in out.env} & set(out.secrets))
    if clash:
        raise BadRequest(
            f"secret {clash[0]!r} is granted and is an env variable too: keep one of them",
            field="secrets",
        )
    return out


def workers_per_replica(value: object) -> int | None:
    """null: one worker per whole vCPU of the profile (the default)."""
    if value is None:
        return None
    lo, hi = WORKERS_PER_REPLICA_RANGE
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 2.0 is an integer to JSON (and to JSON Schema)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        allowed = f"an integer from {lo} to {hi}, or null for one per whole vCPU of the profile"
        raise _bad("workers_per_replica", value, allowed)
    return value


def secret_names(value: object) -> tuple[str, ...]:
    """The names of the account's secrets granted to a script (whether each exists is
    checked against the store by the caller)."""
    if not isinstance(value, list) or len(value) > MAX_ENV_VARS:
        raise _bad("secrets", value, f"a list of at most {MAX_ENV_VARS} secret names")
    for name in value:
        if not isinstance(name, str) or not ENV_KEY_RE.fullmatch(name):
            raise _bad("secrets", name, "a secret name: a letter or _, then letters, digits, _")
    return tuple(dict.fromkeys(value))


def async_settings(doc: object, base: AsyncSettings) -> AsyncSettings:
    """`{"retries", "max_event_age_s"}`, each optional (the other stays)."""
    if not isinstance(doc, dict) or set(doc) - {"retries", "max_event_age_s"}:
        raise _bad("async", doc, 'an object {"retries", "max_event_age_s"}')
    out = base
    if "retries" in doc:
        out = replace(out, retries=_int("async.retries", doc["retries"], 0, MAX_ASYNC_RETRIES))
    if "max_event_age_s" in doc:
        lo, hi = MAX_EVENT_AGE_RANGE_S
        age = _int("async.max_event_age_s", doc["max_event_age_s"], lo, hi)
        out = replace(out, max_event_age_s=age)
    return out


def egress_settings(doc: object, base: EgressSettings) -> EgressSettings:
    """`{"policy", "allow_hosts", "inspect"}`, each optional (the others stay)."""
    if not isinstance(doc, dict) or set(doc) - {"policy", "allow_hosts", "inspect"}:
        raise _bad("egress", doc, 'an object {"policy", "allow_hosts", "inspect"}')
    out = base
    if "policy" in doc:
        if doc["policy"] not in EGRESS_POLICIES:
            raise _bad("egress.policy", doc["policy"], "one of " + ", ".join(EGRESS_POLICIES))
        out = replace(out, policy=doc["policy"])
    if "allow_hosts" in doc:
        hosts = doc["allow_hosts"]
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise _bad("egress.allow_hosts", hosts, "a list of host patterns")
        try:
            patterns = [str(HostPattern.parse(h)) for h in hosts]
        except ValueError as exc:
            raise BadRequest(str(exc), field="egress.allow_hosts") from None
        out = replace(out, allow_hosts=tuple(dict.fromkeys(patterns)))
    if "inspect" in doc:
        if not isinstance(doc["inspect"], bool):
            raise _bad("egress.inspect", doc["inspect"], "true or false")
        out = replace(out, inspect=doc["inspect"])
    if out.policy == "allowlist" and not out.allow_hosts:
        raise BadRequest(
            "egress.policy allowlist needs at least one host (allow_hosts, --allow-host)",
            field="egress.allow_hosts",
        )
    return out


def resources(body: dict[str, Any], base: Resources, config: Config) -> Resources:
    out = base
    if "min_replicas" in body:
        out = replace(out, min_replicas=_int("min_replicas", body["min_replicas"], 1, 10))
    if "max_replicas" in body:
        out = replace(out, max_replicas=_int("max_replicas", body["max_replicas"], 1, 10))
    if "cpu_target" in body:
        out = replace(out, cpu_target=_int("cpu_target", body["cpu_target"], 1, 100))
    if "profile" in body:
        if not isinstance(body["profile"], str) or config.profile(body["profile"]) is None:
            names = ", ".join(p.name for p in config.profiles)
            raise _bad("profile", body["profile"], f"one of {names}")
        # a profile chosen sets the memory too (a step's default limit goes)
        out = replace(out, profile=body["profile"], memory_bytes=None)
    if out.min_replicas > out.max_replicas:
        raise BadRequest(
            f"min_replicas ({out.min_replicas}) must be at most max_replicas ({out.max_replicas})",
            field="min_replicas",
        )
    return out


def with_step(
    settings: Settings, res: Resources, step: StepSpec | None, body: dict[str, Any], config: Config
) -> tuple[Settings, Resources]:
    """The settings with the project's step declaration (None: functions). A script
    that becomes a step gets the seed's limits of steps (`steps.timeout_s`,
    `steps.memory_mib`, never above its profile's memory) for those the request does
    not set; one that stops being a step gets its profile's memory back."""
    became_step = step is not None and settings.step is None
    settings = replace(settings, step=step)
    if step is None:
        return settings, replace(res, memory_bytes=None)
    if became_step and "timeout_s" not in body:
        settings = replace(settings, timeout_s=config.step_timeout_s)
    if became_step and "profile" not in body:
        profile = config.profile(res.profile) or config.default_profile
        res = replace(res, memory_bytes=min(config.steps_memory_mib << 20, profile.memory_bytes))
    return settings, res


def default_settings(config: Config) -> Settings:
    return Settings(env=(), timeout_s=config.timeout_default_s)


def default_resources(config: Config) -> Resources:
    return Resources(1, 1, 75, config.default_profile.name)


def archive_id(value: object) -> str:
    if not isinstance(value, str) or not (value.isascii() and value.isalnum()) or len(value) > 64:
        raise _bad("archive_id", value, "an id returned by POST /v1/archives")
    return value


def flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad(field, value, "true or false")
    return value


def upload_filename(raw: str | None) -> str:
    """A safe file name to store an upload under; the suffix tells the format."""
    name = unquote(raw or "project.zip").replace("\\", "/").rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return safe[-200:] or "project.zip"


KINDS = ("functions", "step")


def kind(value: object) -> str:
    """What a project is: `functions` (main.py / main.js export functions) or `step`
    (a code step: a step.toml at the root declares its inputs and outputs)."""
    if value not in KINDS:
        raise _bad("kind", value, " or ".join(KINDS))
    return str(value)


def kind_mismatch(wanted: str, found: str) -> dict[str, str] | None:
    """The validation finding when the project is not the kind chosen, else None."""
    if wanted == found:
        return None
    if wanted == "step":
        return {
            "level": "error", "code": "kind", "where": "step.toml",
            "message": "the project is not a code step: it has no step.toml at its root",
            "fix": "add a step.toml declaring [inputs] and [outputs] (see the sample "
            "project), or choose the kind functions",
        }  # fmt: skip
    return {
        "level": "error", "code": "kind", "where": "step.toml",
        "message": "the project is a code step (it has a step.toml), not functions",
        "fix": "remove step.toml to expose main's functions, or choose the kind step",
    }  # fmt: skip


def allocation_micro(raw: object) -> int:
    """The account's total allocation in micro-credits: a number of credits, 0 to 1e9."""
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise InvalidOperation
        amount = Decimal(str(raw).strip())
        if not amount.is_finite() or not 0 <= amount <= MAX_ALLOCATION:
            raise InvalidOperation
    except InvalidOperation:
        raise _bad("allocation", raw, "a number of credits from 0 to 1e9") from None
    return to_micro(amount)
