"""The gate's trust files: the combined CA bundle, and where it is bound in a sandbox."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import Any

import sandbox
from daemon.egress.ca import CertificateAuthority
from daemon.egress.gate import bundle_targets, merged_log, write_trust


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


def test_the_trust_folder_holds_certificates_only(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    write_trust(ca, tmp_path / "trust")
    bundle = (tmp_path / "trust" / "bundle.pem").read_bytes()
    assert bundle.endswith(ca.cert_pem) and b"PRIVATE KEY" not in bundle
    system = ssl.get_default_verify_paths().cafile
    if system:
        assert (
            bundle.count(b"BEGIN CERTIFICATE")
            == Path(system).read_bytes().count(b"BEGIN CERTIFICATE") + 1
        )
    for name in ("bundle.pem", "egress-ca.pem"):
        assert stat.S_IMODE((tmp_path / "trust" / name).stat().st_mode) == 0o644


def test_two_logs_merge_in_time_order_within_the_limits() -> None:
    def log(starts: list[float], refused_at: list[float]) -> dict[str, Any]:
        requests = [{"url": f"/{s}", "started_at": s} for s in starts]
        refusals = [{"target": f"/r{a}", "at": a} for a in refused_at]
        return {"total": len(starts) + len(refused_at), "requests": requests,
                "not_detailed": 0, "refusals": refusals, "refusals_not_kept": 0,
                "bytes_out": 10, "bytes_in": 20}  # fmt: skip

    merged = merged_log(log([1.0, 3.0], [2.0]), log([2.0] * 99, []))
    assert merged["total"] == 102 and merged["bytes_out"] == 20 and merged["bytes_in"] == 40
    assert len(merged["requests"]) == 100 and merged["not_detailed"] == 1
    assert merged["requests"][0]["url"] == "/1.0" and merged["requests"][-1]["url"] == "/2.0"
    assert [r["target"] for r in merged["refusals"]] == ["/r2.0"]
