"""The admin API of the real daemon over its unix socket: shapes, errors, caller."""

from __future__ import annotations

import getpass
import os
import stat
from pathlib import Path

from tests.helpers import AdminClient, DaemonProcess, make_tar, make_zip, start_daemon


def test_socket_mode_is_0660(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o660


def test_profiles_are_the_seed_table(admin: AdminClient) -> None:
    profiles = admin.get("/v1/profiles")["profiles"]
    assert [p["name"] for p in profiles] == [
        "1vcpu-2gb", "2vcpu-4gb", "2vcpu-8gb", "4vcpu-8gb", "4vcpu-16gb",
    ]  # fmt: skip
    first = profiles[0]
    assert first["default"] and first["vcpus"] == 0.7 and first["credits_per_hour"] == 0.07698
    assert sum(p["default"] for p in profiles) == 1


def test_runtimes_lists_this_host(admin: AdminClient) -> None:
    runtimes = admin.get("/v1/runtimes")["runtimes"]
    languages = {r["language"] for r in runtimes if r["default"]}
    assert languages == {"python", "javascript"}
    assert all(r["version"].count(".") == 2 for r in runtimes)


def test_openapi_describes_every_route(admin: AdminClient) -> None:
    doc = admin.get("/openapi.json")
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in ("/v1/scripts", "/v1/scripts/{name}/deploy", "/v1/scripts/{name}/history",
                 "/v1/archives", "/v1/samples/{language}"):  # fmt: skip
        assert path in paths
    assert set(paths["/v1/scripts/{name}"]) == {"get", "patch", "delete"}


def test_errors_are_json_with_a_type(admin: AdminClient) -> None:
    r = admin.request("GET", "/v1/scripts/nope")
    assert r.status == 404 and r.json()["error"]["type"] == "not_found"
    r = admin.request("GET", "/no/such/route")
    assert r.status == 404 and r.json()["error"]["type"] == "not_found"
    r = admin.request("POST", "/v1/scripts", b"{not json")
    assert r.status == 400 and r.json()["error"]["type"] == "bad_request"


def test_added_by_is_the_socket_peer(admin: AdminClient) -> None:
    script = admin.create("peer-check")
    assert script["added_by"] == getpass.getuser()


def test_upload_validate_and_report(admin: AdminClient) -> None:
    good = admin.upload(make_tar({"main.py": "def a():\n    return 1\n"}, gz=True), "p.tar.gz")
    report = admin.call("POST", "/v1/validate", {"archive_id": good})
    assert report["ok"] and report["functions"] == ["a"] and report["language"] == "python"
    nested = admin.upload(make_zip({"proj/main.py": "def a():\n    return 1\n"}))
    report = admin.call("POST", "/v1/validate", {"archive_id": nested, "language": "python"})
    assert not report["ok"] and report["errors"]


def test_bad_create_changes_nothing(admin: AdminClient) -> None:
    bad_archive = admin.upload(make_zip({"main.py": ""}))
    r = admin.request(
        "POST", "/v1/scripts", {"name": "x-bad", "language": "python", "archive_id": bad_archive}
    )
    assert r.status == 422 and r.json()["error"]["report"]["errors"]
    for body, field in [
        ({"name": "Bad Name"}, "name"),
        ({"name": "okname", "language": "cobol"}, "language"),
        ({"name": "okname", "timeout_s": 0}, "timeout_s"),
        ({"name": "okname", "min_replicas": 3, "max_replicas": 2}, "min_replicas"),
        ({"name": "okname", "cpu_target": 101}, "cpu_target"),
        ({"name": "okname", "profile": "huge"}, "profile"),
        ({"name": "okname", "env": [{"key": "1X", "value": "v"}]}, "env[0].key"),
        ({"name": "okname", "surprise": 1}, "surprise"),
    ]:
        good = admin.upload(make_zip({"main.py": "def f():\n    return 1\n"}))
        r = admin.request("POST", "/v1/scripts", {"language": "python", "archive_id": good, **body})
        assert r.status == 400, (body, r.body)
        assert r.json()["error"]["field"] == field
    assert admin.get("/v1/scripts")["scripts"] == []


def test_list_search_and_secrets_masked(admin: AdminClient) -> None:
    env = [{"key": "TOKEN", "value": "s3cret", "secret": True}, {"key": "MODE", "value": "x"}]
    admin.create("alpha-one", env=env)
    admin.create("beta-two")
    names = [s["name"] for s in admin.get("/v1/scripts?search=ALPHA")["scripts"]]
    assert names == ["alpha-one"]
    listed = admin.get("/v1/scripts")["scripts"]
    assert {s["name"] for s in listed} == {"alpha-one", "beta-two"}
    assert set(listed[0]) == {"name", "status", "added_by", "updated_at", "language"}
    shown = admin.script("alpha-one")["settings"]["env"]
    assert shown[0] == {"key": "TOKEN", "value": "********", "secret": True}
    assert shown[1]["value"] == "x"
    assert b"s3cret" not in admin.request("GET", "/v1/scripts/alpha-one").body


def test_sample_projects(admin: AdminClient) -> None:
    for language in ("python", "javascript"):
        r = admin.request("GET", f"/v1/samples/{language}")
        assert r.status == 200 and r.body[:2] == b"PK"
        assert int(r.headers["Content-Length"]) == len(r.body)


def test_archive_over_the_limit_is_refused_and_not_kept(tmp_path: Path, build_cache: Path) -> None:
    d = start_daemon(tmp_path / "small", {"archive": {"max_bytes": 4096}}, build_cache)
    try:
        admin = d.client()
        r = admin.request("POST", "/v1/archives", b"x" * 5000, {"X-Filename": "big.zip"})
        assert r.status == 413 and r.json()["error"]["type"] == "payload_too_large"
        assert "4096" in r.json()["error"]["message"]
        assert list((d.state_dir / "uploads").iterdir()) == []
        assert admin.upload(make_zip({"main.py": "def f():\n    return 1\n"}))
    finally:
        d.stop()
