"""The gate's trust files: where the combined CA bundle is bound in a sandbox."""

from __future__ import annotations

import os
import ssl

import sandbox
from daemon.egress.gate import bundle_targets


def test_the_bundle_covers_openssls_default_file_by_its_real_path() -> None:
    targets = bundle_targets()
    default = ssl.get_default_verify_paths().openssl_cafile
    if os.path.exists(default):
        assert os.path.realpath(default) in targets
    assert "/etc/ssl/cert.pem" in targets or os.path.isfile("/etc/ssl/cert.pem")
    host_folders = [b.target + "/" for b in sandbox.system_binds("none")[0]]
    for target in targets:
        # A bind target never goes through a symlink, and never is a file missing
        # inside a folder the sandbox binds from the host.
        assert os.path.realpath(target) == target
        assert os.path.isfile(target) or not any(target.startswith(f) for f in host_folders)
    assert len(set(targets)) == len(targets)
