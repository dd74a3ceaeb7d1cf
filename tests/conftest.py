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


# Under pytest-xdist (./dev.sh test: `--dist loadfile --no-loadscope-reorder`) whole files
# go to the workers in collection order: the longest ones first, so that none of them
# starts last and keeps one worker busy while the others are done. The import test is
# the longest (an interpreter per module), then the end-to-end files (real daemons).
LONGEST_FIRST = ("tests/test_imports.py", "tests/e2e/")


def _rank(item: pytest.Item) -> int:
    return next(
        (i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)),
        len(LONGEST_FIRST),
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_rank)  # stable: the same order on every worker
