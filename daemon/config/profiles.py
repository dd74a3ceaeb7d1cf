"""Hardware profiles: the seed's five built in, or a `[[profiles]]` table from the config.

A profile names what the user picks (nominal vCPUs and memory) and what a replica
really gets (its cgroup's CPU quota and memory limit), with its price in credits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from daemon.config.checks import fail, integer

GIB = 1 << 30


@dataclass(frozen=True)
class Profile:
    """A hardware profile: what the user picks (nominal) and what a replica gets."""

    name: str
    label: str
    nominal_vcpus: float
    nominal_memory_bytes: int
    vcpus: float
    memory_bytes: int
    credits_per_hour: float
    default: bool = False
    workspace_bytes: int = GIB  # size of the script's WORKSPACE_DIR filesystem

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "nominal_vcpus": self.nominal_vcpus,
            "nominal_memory_bytes": self.nominal_memory_bytes,
            "vcpus": self.vcpus,
            "memory_bytes": self.memory_bytes,
            "credits_per_hour": self.credits_per_hour,
            "default": self.default,
            "workspace_bytes": self.workspace_bytes,
        }


def _profile(nv: int, ngb: int, v: float, gb: float, credits: float, default: bool) -> Profile:
    unit = "vCPU" if nv == 1 else "vCPUs"
    return Profile(
        name=f"{nv}vcpu-{ngb}gb",
        label=f"{nv} {unit}, {ngb} GB memory",
        nominal_vcpus=nv,
        nominal_memory_bytes=ngb * GIB,
        vcpus=v,
        memory_bytes=int(gb * GIB),
        credits_per_hour=credits,
        default=default,
    )


# The seed's five profiles: nominal -> actual vCPU and memory, credits per hour.
DEFAULT_PROFILES: tuple[Profile, ...] = (
    _profile(1, 2, 0.7, 1.1, 0.07698, True),
    _profile(2, 4, 1.5, 2.5, 0.15396, False),
    _profile(2, 8, 1.5, 6.5, 0.144, False),
    _profile(4, 8, 3.5, 6.0, 0.30792, False),
    _profile(4, 16, 3.5, 13.5, 0.288, False),
)


MIN_WORKSPACE_BYTES = 16 << 20  # ext4 needs room for its journal and metadata
MAX_WORKSPACE_BYTES = 1 << 44
PROFILE_KEYS = {
    "name": "a name like 2vcpu-4gb: ^[a-z0-9][a-z0-9.-]{0,39}$",
    "label": "a string",
    "nominal_vcpus": "a number above 0",
    "nominal_memory_gib": "a number above 0",
    "vcpus": "a number above 0, at most nominal_vcpus",
    "memory_gib": "a number above 0, at most nominal_memory_gib",
    "credits_per_hour": "a number, 0 or more",
    "default": "true or false (exactly one profile is the default)",
    "workspace_bytes": f"an integer from {MIN_WORKSPACE_BYTES} to {MAX_WORKSPACE_BYTES} (bytes)",
}


def _number(key: str, value: object, lo_exclusive: int = 1) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or (value <= 0 if lo_exclusive else value < 0):  # type: ignore[operator]
        raise fail(key, value, "a number above 0" if lo_exclusive else "a number, 0 or more")
    return float(value)  # type: ignore[arg-type]


def _one_profile(i: int, raw: object) -> Profile:
    where = f"profiles[{i}]"
    if not isinstance(raw, dict):
        raise fail(where, raw, "a table with keys " + ", ".join(PROFILE_KEYS))
    unknown = set(raw) - set(PROFILE_KEYS)
    if unknown:
        raise fail(f"{where}.{sorted(unknown)[0]}", "...", "keys " + ", ".join(PROFILE_KEYS))
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,39}", name):
        raise fail(f"{where}.name", name, PROFILE_KEYS["name"])
    nv = _number(f"{where}.nominal_vcpus", raw.get("nominal_vcpus"))
    ngib = _number(f"{where}.nominal_memory_gib", raw.get("nominal_memory_gib"))
    v = _number(f"{where}.vcpus", raw.get("vcpus"))
    gib = _number(f"{where}.memory_gib", raw.get("memory_gib"))
    if v > nv:
        raise fail(f"{where}.vcpus", v, f"at most nominal_vcpus ({nv})")
    if gib > ngib:
        raise fail(f"{where}.memory_gib", gib, f"at most nominal_memory_gib ({ngib})")
    default = raw.get("default", False)
    label = raw.get("label", f"{nv:g} vCPU, {ngib:g} GB memory")
    if not isinstance(default, bool) or not isinstance(label, str):
        raise fail(f"{where}.default/label", (default, label), "a boolean and a string")
    return Profile(
        name=name,
        label=label,
        nominal_vcpus=nv,
        nominal_memory_bytes=int(ngib * GIB),
        vcpus=v,
        memory_bytes=int(gib * GIB),
        credits_per_hour=_number(
            f"{where}.credits_per_hour", raw.get("credits_per_hour", 0), False
        ),
        default=default,
        workspace_bytes=_workspace_bytes(f"{where}.workspace_bytes", raw.get("workspace_bytes")),
    )


def _workspace_bytes(key: str, value: object) -> int:
    if value is None:
        return GIB
    return integer(MIN_WORKSPACE_BYTES, MAX_WORKSPACE_BYTES)(key, value)


def parse_profiles(raw: object) -> tuple[Profile, ...]:
    """The `[[profiles]]` array of tables: replaces the whole built-in table."""
    if not isinstance(raw, list) or not raw:
        raise fail("profiles", raw, "a non-empty array of tables ([[profiles]])")
    profiles = tuple(_one_profile(i, p) for i, p in enumerate(raw))
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise fail("profiles", names, "names that are all different")
    if sum(p.default for p in profiles) != 1:
        raise fail("profiles.default", [p.default for p in profiles], "exactly one true")
    return profiles
