"""The [steps] section: what code steps get when their project does not say.

- `base_packages`: the base environment, the packages every Python step can import
  without a requirements.txt (the seed's list); a step with a requirements.txt gets
  them too, installed with its own. Each is a requirement from the package index
  (a name, optionally with extras and a version range: no URL, no path).
- `timeout_s` and `memory_mib`: a step's limits when its creator set none (the
  seed's 30 s and 1 GB). The memory limit is never above the profile's.
"""

from __future__ import annotations

from packaging.requirements import InvalidRequirement, Requirement

from daemon.config.checks import fail

DEFAULT_BASE_PACKAGES = (
    "awslambdaric", "bcrypt", "lxml", "msgpack", "numpy", "paramiko", "pytz", "requests",
    "pyjwt", "tzdata", "pypdf",
)  # fmt: skip
DEFAULT_STEP_TIMEOUT_S = 30
DEFAULT_STEP_MEMORY_MIB = 1024
MAX_BASE_PACKAGES = 200


def base_packages(key: str, value: object) -> tuple[str, ...]:
    allowed = 'a list of requirements from the package index, e.g. ["numpy", "requests>=2"]'
    if not isinstance(value, list) or len(value) > MAX_BASE_PACKAGES:
        raise fail(key, value, allowed)
    out: list[str] = []
    for i, item in enumerate(value):
        out.append(_requirement(f"{key}[{i}]", item))
    return tuple(dict.fromkeys(out))


def _requirement(key: str, item: object) -> str:
    if not isinstance(item, str) or item.strip().startswith("-"):
        raise fail(key, item, "a requirement such as numpy or requests>=2 (no installer option)")
    try:
        parsed = Requirement(item)
    except InvalidRequirement as exc:
        raise fail(key, item, f"a PEP 508 requirement ({exc})") from None
    if parsed.url:
        raise fail(key, item, "a requirement from the package index, not a URL or a path")
    return str(parsed)
