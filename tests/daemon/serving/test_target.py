"""The runner seam: a RunTarget never shows the script's variables (secrets in clear)."""

from __future__ import annotations

from pathlib import Path

from daemon.config.daemon_config import Config
from daemon.serving.target import RunTarget


def test_repr_of_a_target_hides_the_environment() -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    target = RunTarget(
        script_id=1, script="demo", version=1, language="python", runtime_version="3.11.2",
        runtime_path="/usr/bin/python3.11", source_dir=Path("/s"), env_dir=Path("/e"),
        workspace_dir=Path("/w"), env={"API_TOKEN": secret}, timeout_s=30, functions=("f",),
        min_replicas=1, max_replicas=1, cpu_target=75, profile=Config().default_profile,
    )  # fmt: skip
    assert secret not in repr(target) and "API_TOKEN" not in repr(target)
    assert secret not in str(target) and "demo" in repr(target)
    assert target.env["API_TOKEN"] == secret
