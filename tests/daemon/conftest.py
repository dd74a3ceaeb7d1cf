"""Fixtures of the daemon tests: the real scriptd process (see tests/helpers.py)."""

from tests.helpers import admin, build_cache, daemon, daemon_config, unmounted_workspaces

__all__ = ["admin", "build_cache", "daemon", "daemon_config", "unmounted_workspaces"]
