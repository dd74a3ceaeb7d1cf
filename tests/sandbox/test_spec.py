"""The spec refuses bad values up front, with the field named (no root needed)."""

from __future__ import annotations

import pytest

from sandbox import Bind, SandboxSpec, Tmpfs
from sandbox.cli import parse_size

ENV = {"PATH": "/usr/bin"}


def test_defaults():
    spec = SandboxSpec(argv=("true",), env=ENV, name="a")
    assert (spec.uid, spec.gid, spec.cwd, spec.network, spec.seccomp) == (
        65534,
        65534,
        "/",
        "none",
        True,
    )
    assert spec.pids_max == 256 and spec.tmp_size_bytes == 64 << 20
    assert spec.rlimits.core_bytes == 0
    with pytest.raises(TypeError):
        spec.env["X"] = "1"  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"argv": ()}, "argv"),
        ({"name": "../x"}, "name"),
        ({"uid": 0}, "unprivileged"),
        ({"cwd": "relative"}, "cwd"),
        ({"binds": (Bind("/usr", "/a/../b"),)}, "bind target"),
        ({"tmpfs": (Tmpfs("/x", 0),)}, "positive size"),
        ({"cpu_vcpus": 0.0}, "cpu_vcpus"),
        ({"memory_bytes": 1024}, "memory_bytes"),
        ({"pids_max": 0}, "pids_max"),
        ({"network": "bridge"}, "network"),
        ({"pass_fds": {1: 5}}, "pass_fds"),
        ({"env": {"A=B": "c"}}, "environment"),
    ],
)
def test_bad_values_are_refused(fields, message):
    base = {"argv": ("true",), "env": ENV, "name": "a"} | fields
    with pytest.raises(ValueError, match=message):
        SandboxSpec(**base)


def test_sizes():
    assert parse_size("1.1G") == int(1.1 * 2**30)
    assert parse_size("512M") == 512 * 2**20
    assert parse_size("64k") == 65536
    assert parse_size("100") == 100
