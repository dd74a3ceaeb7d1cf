"""The lifecycle state machine of DESIGN.md, walked through the real daemon."""

from __future__ import annotations

import io
import stat
import zipfile

from tests.helpers import AdminClient, DaemonProcess, make_tar, make_zip

MAIN = "def hello(name='x'):\n    return 'hi ' + name\n"
MAIN2 = MAIN + "\ndef bye():\n    return 'bye'\n"


def error(admin: AdminClient, method: str, path: str, body: object = None) -> dict:
    r = admin.request(method, path, body if body is not None else {})
    assert r.status >= 400, r.body
    return {**r.json()["error"], "http": r.status}


def test_draft_update_deploy_and_refusals(admin: AdminClient) -> None:
    draft = admin.create("life", make_zip({"main.py": MAIN}), description="first")
    assert draft["status"] == "Draft" and draft["deployment"] is None
    assert draft["functions"] == ["hello"] and draft["current_version"] is None
    t0 = draft["updated_at"]

    # a Draft may change everything, its name included
    draft = admin.call("PATCH", "/v1/scripts/life", {"name": "life2", "timeout_s": 45})
    assert draft["name"] == "life2" and draft["settings"]["timeout_s"] == 45
    assert draft["updated_at"] > t0
    assert error(admin, "POST", "/v1/scripts/life2/redeploy")["http"] == 409
    assert error(admin, "POST", "/v1/scripts/life2/undeploy")["http"] == 409

    admin.action("life2", "deploy")
    script = admin.wait_status("life2")
    assert script["status"] == "Deployed" and script["current_version"] == 1
    dep = script["deployment"]
    assert dep["display_name"] == "life2-v1" and dep["status"] == "Deployed"
    assert dep["phase"] == "done" and dep["duration_s"] >= 0 and dep["deployed_by"]

    refused = error(admin, "DELETE", "/v1/scripts/life2")
    assert refused["http"] == 409 and refused["type"] == "conflict"
    assert "Deployed" in refused["message"] and "undeploy" in refused["message"]
    assert refused["allowed"] == ["export", "redeploy", "undeploy", "rename-version"]
    assert "redeploy" in error(admin, "PATCH", "/v1/scripts/life2", {"timeout_s": 60})["message"]
    assert error(admin, "POST", "/v1/scripts/life2/deploy")["http"] == 409


def test_redeploy_undeploy_deploy_history(admin: AdminClient) -> None:
    admin.create("hist", make_zip({"main.py": MAIN}), deploy=True)
    first = admin.wait_status("hist")
    bad = error(admin, "POST", "/v1/scripts/hist/redeploy", {"name": "other"})
    assert bad["http"] == 409 and "never on redeploy" in bad["message"]
    assert error(admin, "POST", "/v1/scripts/hist/redeploy", {"language": "javascript"})

    new_archive = admin.upload(make_tar({"main.py": MAIN2}, gz=True), "v2.tgz")
    body = {"archive_id": new_archive, "description": "second", "max_replicas": 3,
            "egress": {"policy": "off"}}  # fmt: skip
    admin.action("hist", "redeploy", body)
    second = admin.wait_status("hist")
    assert second["current_version"] == 2 and second["description"] == "second"
    assert second["settings"]["egress"]["policy"] == "off"
    assert second["functions"] == ["hello", "bye"]
    assert second["resources"]["max_replicas"] == 3
    assert second["updated_at"] > first["updated_at"]

    undeployed = admin.action("hist", "undeploy", expect=200)
    assert undeployed["status"] == "Ready to Deploy" and undeployed["current_version"] is None
    # Ready to Deploy: update yes, but never name / language / version
    r = error(admin, "PATCH", "/v1/scripts/hist", {"name": "renamed"})
    assert r["http"] == 409 and "Ready to Deploy" in r["message"]
    admin.call("PATCH", "/v1/scripts/hist", {"cpu_target": 50, "min_replicas": 2,
                                              "max_replicas": 4})  # fmt: skip
    admin.action("hist", "deploy")
    third = admin.wait_status("hist")
    assert third["current_version"] == 3 and third["resources"]["cpu_target"] == 50

    history = admin.history("hist")
    statuses = [(v["number"], v["status"]) for v in history["versions"]]
    assert statuses == [(3, "Deployed"), (2, "Undeployed"), (1, "Superseded")]
    v2 = history["versions"][1]
    assert v2["undeployed_by"] and v2["undeployed_at"] and v2["config"]["description"] == "second"
    kinds = [e["kind"] for e in history["events"]]
    assert kinds[0] == "created" and "undeployed" in kinds and kinds[-1] == "deployed"


def test_rename_version_rule_and_uniqueness(admin: AdminClient) -> None:
    admin.create("ren", deploy=True)
    admin.wait_status("ren")
    v = admin.call("PATCH", "/v1/scripts/ren/versions/1", {"display_name": "launch-day"})
    assert v["display_name"] == "launch-day"
    bad = {"display_name": "Bad Name"}
    assert error(admin, "PATCH", "/v1/scripts/ren/versions/1", bad)["http"] == 400
    missing = {"display_name": "abc"}
    assert error(admin, "PATCH", "/v1/scripts/ren/versions/9", missing)["http"] == 404
    admin.action("ren", "redeploy")
    admin.wait_status("ren")
    dup = error(admin, "PATCH", "/v1/scripts/ren/versions/2", {"display_name": "launch-day"})
    assert dup["http"] == 409
    assert admin.history("ren")["versions"][0]["display_name"] == "ren-v2"


def test_failed_deploy_keeps_reason_and_log(admin: AdminClient, daemon: DaemonProcess) -> None:
    archive = make_zip({"main.py": MAIN, "requirements.txt": "no-such-package-scriptd-test==9.9\n"})
    admin.create("broken", archive, deploy=True)
    script = admin.wait_status("broken")
    assert script["status"] == "Deployment Failed"
    assert "failed" in script["deployment"]["failure_reason"]
    log = admin.request("GET", "/v1/scripts/broken/versions/1/log").body.decode()
    assert "no-such-package-scriptd-test" in log
    # the deployer made the workspace before the build (no replica ever started): private
    (workspace,) = daemon.state_dir.glob("scripts/*/workspace")
    assert stat.S_IMODE(workspace.stat().st_mode) == 0o700
    # Deployment Failed allows update and deploy again, and delete
    admin.call(
        "PATCH", "/v1/scripts/broken", {"archive_id": admin.upload(make_zip({"main.py": MAIN}))}
    )
    admin.action("broken", "deploy")
    assert admin.wait_status("broken")["status"] == "Deployed"


def test_failed_redeploy_keeps_old_version_serving(admin: AdminClient) -> None:
    admin.create("steady", deploy=True)
    admin.wait_status("steady")
    bad = admin.upload(make_zip({"main.py": MAIN, "requirements.txt": "no-such-pkg-zz==1\n"}))
    admin.action("steady", "redeploy", {"archive_id": bad, "timeout_s": 99})
    script = admin.wait_status("steady")
    assert script["status"] == "Deployed" and script["current_version"] == 1
    assert script["deployment"]["number"] == 2
    assert script["deployment"]["status"] == "Deployment Failed"
    assert script["settings"]["timeout_s"] == 30  # the failed attempt changed nothing


def test_delete_removes_everything(admin: AdminClient, daemon: DaemonProcess) -> None:
    admin.create("gone", deploy=True)
    admin.wait_status("gone")
    admin.action("gone", "undeploy", expect=200)
    scripts_dir = daemon.state_dir / "scripts"
    assert any(scripts_dir.iterdir())
    assert admin.call("DELETE", "/v1/scripts/gone") == {"deleted": "gone"}
    assert admin.request("GET", "/v1/scripts/gone").status == 404
    assert not any(scripts_dir.iterdir())
    admin.create("gone")  # the name is free again


def test_export_is_the_project_as_zip(admin: AdminClient) -> None:
    files = {"main.py": MAIN, "lib/util.py": "X = 1\n"}
    admin.create("exp", make_tar(files))
    r = admin.request("GET", "/v1/scripts/exp/export")
    assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.body)) as zf:
        got = {n: zf.read(n).decode() for n in zf.namelist() if not n.endswith("/")}
    assert got == files


def test_javascript_script_deploys(admin: AdminClient) -> None:
    js = "function add(p) { return p.a + p.b; }\nmodule.exports = { add };\n"
    created = admin.create("jsone", make_zip({"main.js": js}), language="javascript", deploy=True)
    assert created["language"] == "javascript"
    script = admin.wait_status("jsone")
    assert script["status"] == "Deployed" and script["functions"] == ["add"]


def test_two_deploys_of_one_script_never_run_at_once(admin: AdminClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    admin.create("racer")

    def deploy(_: int) -> int:
        return admin.request("POST", "/v1/scripts/racer/deploy", {}).status

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(deploy, range(4)))
    assert sorted(codes) == [202, 409, 409, 409]
    admin.wait_status("racer")
    assert len(admin.history("racer")["versions"]) == 1


def test_same_name_created_twice_at_once(admin: AdminClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    archive_ids = [admin.upload(make_zip({"main.py": MAIN})) for _ in range(3)]
    body = {"name": "twin", "language": "python"}
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(
            lambda aid: admin.request("POST", "/v1/scripts", {**body, "archive_id": aid}).status,
            archive_ids,
        ))  # fmt: skip
    assert sorted(codes) == [201, 409, 409]


def test_draft_can_switch_language_with_a_new_archive(admin: AdminClient) -> None:
    admin.create("switch")
    r = admin.request("PATCH", "/v1/scripts/switch", {"language": "javascript"})
    assert r.status == 400 and "archive_id" in r.json()["error"]["message"]
    js = admin.upload(
        make_zip({"main.js": "function f() { return 1; }\nmodule.exports = { f };\n"})
    )
    script = admin.call("PATCH", "/v1/scripts/switch", {"language": "javascript", "archive_id": js})
    assert script["language"] == "javascript" and script["functions"] == ["f"]
    versions = [r["version"] for r in admin.get("/v1/runtimes")["runtimes"]
                if r["language"] == "javascript"]  # fmt: skip
    assert script["language_version"] in versions
    r = admin.request("PATCH", "/v1/scripts/switch", {"language_version": "1.0"})
    assert r.status == 404 and "not on this host" in r.json()["error"]["message"]


def test_a_deleted_scripts_id_and_folder_are_never_given_again(
    admin: AdminClient, daemon: DaemonProcess
) -> None:
    scripts_dir = daemon.state_dir / "scripts"
    admin.create("older", deploy=True)
    admin.create("newest", deploy=True)
    admin.wait_status("older")
    admin.wait_status("newest")
    folders = {p.name for p in scripts_dir.iterdir()}
    admin.action("newest", "undeploy", expect=200)
    admin.call("DELETE", "/v1/scripts/newest")
    left = {p.name for p in scripts_dir.iterdir()}
    assert len(left) == 1 and left < folders  # the trash is gone as well
    admin.create("later", deploy=True)
    admin.wait_status("later")
    new = {p.name for p in scripts_dir.iterdir()} - left
    assert len(new) == 1 and not new & folders  # a new id, a new folder
