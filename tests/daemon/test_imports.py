"""Each daemon module imports alone in a fresh interpreter (no import cycles)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

MODULES = [
    "config", "catalogue", "models", "store", "store_schema", "errors", "inputs", "runner",
    "builder", "files", "views", "deployer", "lifecycle", "admin_api", "admin_openapi",
    "exports", "gateway", "main", "devrun", "store_keys", "store_base", "admin_http", "admin_calls",
    "account_files",
]  # fmt: skip


@pytest.mark.parametrize("module", MODULES)
def test_imports_alone(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"import daemon.{module}"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
