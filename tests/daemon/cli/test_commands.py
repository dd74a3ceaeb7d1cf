"""scriptctl commands against a fake admin API on a real unix socket: what they
send, what they print, and how they fail."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import daemon.archive.intake  # noqa: F401  (the CLI packs folders with it; a broken import fails here)
from daemon.cli import waiting
from tests.daemon.cli.test_support import FakeApi, Reply, Request, error, fake_api, run_cli


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApi]:
    with fake_api(tmp_path) as server:
        yield server


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "POLL_S", 0.01)


def script(status: str = "Draft", version: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "hello",
        "status": status,
        "language": "python",
        "deployment": version,
        "functions": ["greet"],
        "current_version": None,
    }


def version(number: int, status: str, phase: str = "done", reason: str | None = None) -> dict:
    return {
        "number": number,
        "display_name": f"hello-v{number}",
        "status": status,
        "phase": phase,
        "failure_reason": reason,
    }


def archive_upload(api: FakeApi) -> None:
    api.route("POST", "/v1/archives", Reply(201, {"archive_id": "a1", "size": 3}))


def test_unreachable_socket_is_one_clear_line(tmp_path: Path) -> None:
    sock = str(tmp_path / "missing.sock")
    from daemon.cli.main import main

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", err)
        code = main(["--socket", sock, "list"])
    assert code == 1
    assert err.getvalue() == (
        f"scriptctl: error: cannot reach scriptd at {sock}: No such file or directory "
        "(is it running? is --socket right?)\n"
    )


def test_list_sends_the_search_and_prints_a_table(api: FakeApi) -> None:
    rows = [
        {
            "name": "hello",
            "status": "Ready to Deploy",
            "added_by": "root",
            "updated_at": "2026-01-01T00:00:00Z",
            "language": "python",
        }
    ]
    api.route("GET", "/v1/scripts?search=hel+lo", Reply(200, {"scripts": rows}))
    run = run_cli(api, "list", "--search", "hel lo")
    assert run.code == 0, run.err
    assert "Ready to Deploy" in run.out and run.out.startswith("SCRIPT NAME")
    run = run_cli(api, "--json", "list", "--search", "hel lo")
    assert run.json() == {"scripts": rows}


def test_api_error_names_the_message_and_json_keeps_the_body(api: FakeApi) -> None:
    refusal = error(409, "conflict", "hello is Deployed: undeploy it first")
    api.route("DELETE", "/v1/scripts/hello", refusal)
    run = run_cli(api, "--json", "delete", "hello", "--yes")
    assert run.code == 1
    assert run.err == "scriptctl: error: hello is Deployed: undeploy it first\n"
    assert run.json()["error"]["type"] == "conflict"


def test_delete_refuses_without_a_terminal_or_yes(api: FakeApi) -> None:
    run = run_cli(api, "delete", "hello")
    assert run.code == 1
    assert "without confirmation: pass --yes" in run.err
    assert api.requests == []
    api.route("DELETE", "/v1/scripts/hello", Reply(200, {"deleted": "hello"}))
    assert run_cli(api, "delete", "hello", "--yes").out == "Deleted hello\n"


def test_upload_streams_the_file_with_its_name(api: FakeApi, tmp_path: Path) -> None:
    archive_upload(api)
    api.route(
        "POST",
        "/v1/validate",
        Reply(
            200,
            {
                "ok": True,
                "language": "python",
                "errors": [],
                "warnings": [],
                "functions": ["greet"],
            },
        ),
    )
    project = tmp_path / "proj.tar.gz"
    project.write_bytes(b"x" * 200_000)
    run = run_cli(api, "validate", str(project), "--language", "python")
    assert run.code == 0, run.err
    upload = api.sent("POST", "/v1/archives")[0]
    assert upload.headers["X-Filename"] == "proj.tar.gz"
    assert upload.body == project.read_bytes()
    assert api.sent("POST", "/v1/validate")[0].json() == {"archive_id": "a1", "language": "python"}
    assert "Functions: greet" in run.out


def test_invalid_report_exits_non_zero_with_the_findings(api: FakeApi, tmp_path: Path) -> None:
    archive_upload(api)
    finding = {
        "level": "error",
        "code": "main_missing",
        "message": "no main.py",
        "where": "/",
        "fix": "add main.py",
    }
    api.route(
        "POST",
        "/v1/validate",
        Reply(200, {"ok": False, "errors": [finding], "warnings": [], "functions": []}),
    )
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"zip?")
    run = run_cli(api, "validate", str(bad))
    assert run.code == 1
    assert "error [main_missing] /: no main.py (fix: add main.py)" in run.out
    assert run.err.startswith("scriptctl: error: ") and run.err.count("\n") == 1
    run = run_cli(api, "--json", "validate", str(bad))
    assert run.code == 1 and run.json()["ok"] is False


def test_missing_archive_is_refused_before_any_request(api: FakeApi, tmp_path: Path) -> None:
    run = run_cli(api, "validate", str(tmp_path / "nope.zip"))
    assert run.code == 1 and "no such file or folder" in run.err
    assert api.requests == []


def test_create_uploads_then_posts_the_script(api: FakeApi, tmp_path: Path) -> None:
    archive_upload(api)
    api.route("POST", "/v1/scripts", Reply(201, script()))
    project = tmp_path / "p.zip"
    project.write_bytes(b"zip")
    run = run_cli(
        api,
        "create",
        "hello",
        "--language",
        "python",
        "--archive",
        str(project),
        "--secret-env",
        "TOKEN=abc",
    )
    assert run.code == 0, run.err
    assert run.out == "Created hello: Draft\n"
    assert api.sent("POST", "/v1/scripts")[0].json() == {
        "name": "hello",
        "language": "python",
        "archive_id": "a1",
        "deploy": False,
        "env": [{"key": "TOKEN", "value": "abc", "secret": True}],
    }


def test_update_with_nothing_to_change_is_refused(api: FakeApi) -> None:
    run = run_cli(api, "update", "hello")
    assert run.code == 1 and "nothing to update" in run.err


def follow(api: FakeApi, states: list[dict[str, Any]]) -> None:
    """GET /v1/scripts/hello answers the given states in turn, then the last one."""
    answers = iter(states)
    last: list[dict[str, Any]] = []

    def answer(_r: Request) -> Reply:
        state = next(answers, None)
        if state is not None:
            last[:] = [state]
        return Reply(200, last[0])

    api.route("GET", "/v1/scripts/hello", answer)


def test_deploy_wait_follows_phases_until_deployed(api: FakeApi) -> None:
    api.route(
        "POST",
        "/v1/scripts/hello/deploy",
        Reply(202, script("Deploying", version(1, "Deploying", "unpacking"))),
    )
    follow(
        api,
        [
            script("Deploying", version(1, "Deploying", "building")),
            script("Deploying", version(1, "Deploying", "building")),
            script("Deployed", version(1, "Deployed")),
        ],
    )
    run = run_cli(api, "deploy", "hello", "--wait")
    assert run.code == 0, run.err
    phases = [line.split("] ", 1)[1] for line in run.err.splitlines()]
    assert phases == ["Deploying v1: unpacking", "Deploying v1: building", "Deployed v1 (hello-v1)"]
    assert run.out == "hello v1 (hello-v1) is Deployed; functions: greet\n"


def test_failed_deploy_exits_with_the_reason_and_the_log_tail(api: FakeApi) -> None:
    api.route(
        "POST",
        "/v1/scripts/hello/deploy",
        Reply(202, script("Deploying", version(1, "Deploying", "building"))),
    )
    failed = version(1, "Deployment Failed", "building", "pip failed\nexit status 1")
    follow(api, [script("Deployment Failed", failed)])
    log = "\n".join(f"line {i}" for i in range(100))
    api.route(
        "GET",
        "/v1/scripts/hello/versions/1/log",
        Reply(200, raw=log.encode(), content_type="text/plain"),
    )
    run = run_cli(api, "--json", "deploy", "hello", "--wait")
    assert run.code == 1
    assert run.err.splitlines()[-1] == (
        "scriptctl: error: deploy of hello v1 ended Deployment Failed: exit status 1"
    )
    assert "line 99" in run.err and "line 74" not in run.err
    assert run.json()["status"] == "Deployment Failed"


def test_failed_redeploy_says_the_old_version_still_serves(api: FakeApi) -> None:
    api.route(
        "POST",
        "/v1/scripts/hello/redeploy",
        Reply(202, script("Deployed", version(2, "Deploying", "starting"))),
    )
    follow(api, [script("Deployed", version(2, "Deployment Failed", "starting", "no hello"))])
    run = run_cli(api, "redeploy", "hello", "--timeout", "45", "--wait")
    assert run.code == 1
    assert "v2 ended Deployment Failed: no hello; the script is Deployed" in run.err
    assert api.sent("POST", "/v1/scripts/hello/redeploy")[0].json() == {"timeout_s": 45}


def test_export_writes_a_temp_file_then_renames(api: FakeApi, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("main.py", "def greet():\n    return 1\n")
    api.route(
        "GET",
        "/v1/scripts/hello/export",
        Reply(200, raw=buffer.getvalue(), content_type="application/zip"),
    )
    dest = tmp_path / "out" / "hello.zip"
    dest.parent.mkdir()
    run = run_cli(api, "--json", "export", "hello", "-o", str(dest))
    assert run.code == 0, run.err
    assert dest.read_bytes() == buffer.getvalue()
    assert run.json() == {"script": "hello", "path": str(dest), "bytes": len(buffer.getvalue())}
    assert [p.name for p in dest.parent.iterdir()] == ["hello.zip"]


def test_failed_export_leaves_no_file(api: FakeApi, tmp_path: Path) -> None:
    api.route("GET", "/v1/scripts/nope/export", error(404, "not_found", "no script named nope"))
    run = run_cli(api, "export", "nope", "-o", str(tmp_path / "x.zip"))
    assert run.code == 1 and run.err == "scriptctl: error: no script named nope\n"
    assert [p for p in tmp_path.iterdir() if p.name != "admin.sock"] == []


def test_sample_downloads_the_language_sample(api: FakeApi, tmp_path: Path) -> None:
    api.route(
        "GET", "/v1/samples/javascript", Reply(200, raw=b"PK-zip", content_type="application/zip")
    )
    run = run_cli(api, "sample", "--language", "javascript", "-o", str(tmp_path / "s.zip"))
    assert run.code == 0 and (tmp_path / "s.zip").read_bytes() == b"PK-zip"


def test_rename_version_accepts_v_prefix(api: FakeApi) -> None:
    api.route(
        "PATCH",
        "/v1/scripts/hello/versions/2",
        Reply(200, {"number": 2, "display_name": "fast-one", "status": "Deployed"}),
    )
    run = run_cli(api, "rename-version", "hello", "v2", "fast-one")
    assert run.code == 0 and run.out == "Renamed hello v2 fast-one: Deployed\n"
    assert api.requests[-1].json() == {"display_name": "fast-one"}


def test_up_refuses_a_folder_without_a_main_file(api: FakeApi, tmp_path: Path) -> None:
    run = run_cli(api, "up", str(tmp_path), "--name", "hello")
    assert run.code == 1 and "neither main.py nor main.js" in run.err
    assert api.requests == []


def test_up_will_not_switch_language_of_a_deployed_script(api: FakeApi, tmp_path: Path) -> None:
    (tmp_path / "main.js").write_text("exports.f = () => 1;\n")
    api.route("GET", "/v1/scripts/hello", Reply(200, script("Deployed")))
    run = run_cli(api, "up", str(tmp_path), "--name", "hello")
    assert run.code == 1 and "language can only change while Draft" in run.err


def test_profiles_and_runtimes(api: FakeApi) -> None:
    api.route(
        "GET",
        "/v1/profiles",
        Reply(
            200,
            {
                "profiles": [
                    {
                        "name": "1vcpu-2gb",
                        "label": "1 vCPU, 2 GB memory",
                        "vcpus": 0.7,
                        "memory_bytes": 1 << 30,
                        "credits_per_hour": 0.07698,
                        "default": True,
                    }
                ]
            },
        ),
    )
    api.route(
        "GET",
        "/v1/runtimes",
        Reply(
            200,
            {
                "runtimes": [
                    {
                        "language": "javascript",
                        "version": "20.19.0",
                        "path": "/usr/bin/node",
                        "default": True,
                    }
                ]
            },
        ),
    )
    assert "0.07698" in run_cli(api, "profiles").out
    assert "20.19.0" in run_cli(api, "runtimes").out
    assert run_cli(api, "runtimes", "--json").json()["runtimes"][0]["language"] == "javascript"


def test_server_error_without_json_body_is_still_one_line(api: FakeApi) -> None:
    api.route("GET", "/v1/profiles", Reply(500, raw=b"oops\ntrace", content_type="text/plain"))
    run = run_cli(api, "profiles")
    assert run.code == 1
    assert run.err == "scriptctl: error: scriptd answered HTTP 500 Internal Server Error: oops\n"


def test_a_folder_is_packed_into_a_zip_before_upload(api: FakeApi, tmp_path: Path) -> None:
    archive_upload(api)
    api.route("POST", "/v1/validate", Reply(200, {"ok": True, "errors": [], "warnings": []}))
    project = tmp_path / "proj"
    (project / "lib").mkdir(parents=True)
    (project / "main.py").write_text("def f():\n    return 1\n")
    (project / "lib" / "util.py").write_text("X = 1\n")
    assert run_cli(api, "validate", str(project)).code == 0
    upload = api.sent("POST", "/v1/archives")[0]
    assert upload.headers["X-Filename"] == "proj.zip"
    with zipfile.ZipFile(io.BytesIO(upload.body)) as zf:
        assert sorted(n for n in zf.namelist() if not n.endswith("/")) == [
            "lib/util.py",
            "main.py",
        ]


def test_a_folder_that_cannot_be_packed_is_refused(api: FakeApi, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "main.py").write_text("def f():\n    return 1\n")
    (project / "escape").symlink_to("/etc/hostname")
    run = run_cli(api, "validate", str(project))
    assert run.code == 1
    assert run.err.startswith("scriptctl: error: cannot pack")
    assert "escape" in run.err
    assert api.requests == []


def test_update_env_reads_the_current_list_first(api: FakeApi) -> None:
    current = script()
    current["settings"] = {"env": [{"key": "TOKEN", "value": "********", "secret": True}]}
    api.route("GET", "/v1/scripts/hello", Reply(200, current))
    api.route("PATCH", "/v1/scripts/hello", Reply(200, current))
    assert run_cli(api, "update", "hello", "--env", "A=1").code == 0
    assert api.sent("PATCH", "/v1/scripts/hello")[0].json() == {
        "env": [
            {"key": "TOKEN", "value": "********", "secret": True},
            {"key": "A", "value": "1", "secret": False},
        ]
    }


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("typed", "deleted"), [("hello\n", True), ("y\n", False)])
def test_delete_on_a_terminal_asks_for_the_name(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, typed: str, deleted: bool
) -> None:
    api.route("DELETE", "/v1/scripts/hello", Reply(200, {"deleted": "hello"}))
    monkeypatch.setattr("sys.stdin", Tty(typed))
    run = run_cli(api, "delete", "hello")
    assert "Type the script name to confirm" in run.err
    assert bool(api.sent("DELETE", "/v1/scripts/hello")) is deleted
    assert run.code == (0 if deleted else 1)


def test_a_socket_we_may_not_use_says_why(tmp_path: Path) -> None:
    from daemon.cli.client import AdminClient

    client = AdminClient(str(tmp_path / "admin.sock"))
    message = client._unreachable(PermissionError(13, "Permission denied"))
    assert message.endswith("Permission denied (run as root or as a member of the socket's group)")
