"""Shared test policy: tests that need root or a kernel feature skip outside CI
and fail under CI=true, where the host is expected to have everything."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip the calling test when `condition` is false, or fail it in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI host lacks a requirement: {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (namespaces and cgroups)")
