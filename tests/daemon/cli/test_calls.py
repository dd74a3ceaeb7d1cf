"""scriptctl keys, endpoint, executions and uploads: what they send to a fake
admin API, how they print for people, and that a key's secret shows only once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.cli import render_calls
from tests.daemon.cli.test_support import FakeApi, Reply, error, fake_api, run_cli

SECRET = "sk_AbCdEfGhIjKl_" + "x" * 43
KEY = {
    "id": "AbCdEfGhIjKl",
    "name": "Secret Key",
    "created_by": "root",
    "created_at": "2026-11-22T19:00:00.000Z",
    "last_used_at": None,
}
EXECUTION = {
    "script": "demo",
    "id": "ex1",
    "version": 2,
    "function": "greet",
    "key_name": "Secret Key",
    "status": "error",
    "received_at": "2026-11-22T19:00:00.000Z",
    "started_at": "2026-11-22T19:00:00.001Z",
    "ended_at": "2026-11-22T19:00:00.020Z",
    "queue_ms": 0.42,
    "wall_ms": 1520.0,
    "cpu_ms": 12.5,
    "peak_memory_bytes": 3 << 20,
    "input_bytes": 17,
    "error": {"type": "ValueError", "message": "no\nname", "traceback": "File main.py\n  raise"},
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApi]:
    with fake_api(tmp_path) as server:
        yield server


# --- keys ---------------------------------------------------------------------------


def test_keys_create_prints_the_key_once_with_the_warning(api: FakeApi) -> None:
    api.route("POST", "/v1/scripts/demo/keys", Reply(201, {**KEY, "script": "demo", "key": SECRET}))
    run = run_cli(api, "keys", "create", "demo", "--key-name", "ci")
    assert run.code == 0
    assert api.sent("POST", "/v1/scripts/demo/keys")[0].json() == {"name": "ci"}
    assert run.out.count(SECRET) == 1 and "will not be shown again" in run.out

    as_json = run_cli(api, "--json", "keys", "create", "demo")
    assert as_json.json()["key"] == SECRET
    assert "will not be shown again" in as_json.err
    assert api.sent("POST", "/v1/scripts/demo/keys")[1].json() == {}


def test_keys_list_sends_the_search_and_never_shows_a_secret(api: FakeApi) -> None:
    used = {**KEY, "name": "ci", "last_used_at": "2026-11-22T19:30:00.000Z"}
    api.route(
        "GET",
        "/v1/scripts/demo/keys?search=c+i",
        Reply(200, {"script": "demo", "keys": [KEY, used]}),
    )
    run = run_cli(api, "keys", "list", "demo", "--search", "c i")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    headers = [h.strip() for h in lines[0].split("  ") if h.strip()]
    assert headers == ["NAME", "CREATED (UTC)", "CREATED BY", "LAST USED (UTC)", "KEY ID"]
    assert "never" in lines[1] and "2026-11-22 19:30:00" in lines[2]
    assert "sk_" not in run.out


def test_keys_delete_quotes_the_key_name_in_the_path(api: FakeApi) -> None:
    api.route(
        "DELETE",
        "/v1/scripts/demo/keys/Secret%20Key%2F2",
        Reply(200, {"deleted": "Secret Key/2", "id": "x", "script": "demo"}),
    )
    run = run_cli(api, "keys", "delete", "demo", "Secret Key/2")
    assert run.code == 0, run.err
    assert run.out == "Deleted API key 'Secret Key/2' of demo\n"


def test_an_unknown_key_is_one_error_line(api: FakeApi) -> None:
    api.route("DELETE", "/v1/scripts/demo/keys/nope", error(404, "not_found", "no key 'nope'"))
    run = run_cli(api, "keys", "delete", "demo", "nope")
    assert run.code == 1 and run.err == "scriptctl: error: no key 'nope'\n"


def test_empty_key_list() -> None:
    assert render_calls.keys_table({"script": "demo", "keys": []}) == "No API keys for demo."


# --- endpoint -----------------------------------------------------------------------


def test_endpoint_prints_the_text_and_a_hint_and_passes_the_format(api: FakeApi) -> None:
    body = {
        "script": "demo",
        "key_placeholder": "YOUR_API_KEY",
        "functions": [{"function": "greet", "url": "http://x", "curl": "curl ..."}],
        "text": "# demo.greet - cURL\ncurl ...\n",
    }
    api.route("GET", "/v1/scripts/demo/endpoint?format=curl", Reply(200, body))
    run = run_cli(api, "endpoint", "demo", "--format", "curl")
    assert run.code == 0, run.err
    assert run.out == "# demo.greet - cURL\ncurl ...\n"
    assert "YOUR_API_KEY" in run.err
    assert run_cli(api, "--json", "endpoint", "demo", "--format", "curl").json() == body


def test_endpoint_shows_the_parameters_as_comments(api: FakeApi) -> None:
    add = {"type": "object", "required": ["a"], "additionalProperties": False, "properties": {
        "a": {"type": "integer"}, "b": {"type": "number", "default": 1.5},
        "unit": {"anyOf": [{"enum": ["m", "s"]}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}, "default": None}}}  # fmt: skip
    body = {
        "script": "demo",
        "formats": ["javascript"],
        "functions": [{"function": "add", "parameters": add},
                      {"function": "any", "parameters": {"type": "object"}}],
        "text": "// demo.add - JavaScript\nfetch(...)\n",
    }  # fmt: skip
    api.route("GET", "/v1/scripts/demo/endpoint?format=javascript", Reply(200, body))
    run = run_cli(api, "endpoint", "demo", "--format", "javascript")
    assert run.out.splitlines()[:2] == [
        "// parameters:",
        '//   demo.add(a: integer, b: number = 1.5, unit: "m" | "s" | null (optional), '
        "tags: array of string = null)",
    ]
    assert run.out.endswith("// demo.add - JavaScript\nfetch(...)\n")


def test_endpoint_refused_while_not_deployed_names_the_status(api: FakeApi) -> None:
    message = "script 'demo' is Draft: its endpoint is active only while Deployed"
    api.route("GET", "/v1/scripts/demo/endpoint", error(409, "conflict", message))
    run = run_cli(api, "endpoint", "demo")
    assert run.code == 1 and run.err == f"scriptctl: error: {message}\n"


def test_endpoint_format_is_checked_before_any_request(api: FakeApi) -> None:
    run = run_cli(api, "endpoint", "demo", "--format", "ruby")
    assert run.code == 2 and api.requests == []


# --- executions ---------------------------------------------------------------------


def test_executions_table_and_limit(api: FakeApi) -> None:
    api.route(
        "GET",
        "/v1/scripts/demo/executions?limit=5",
        Reply(200, {"script": "demo", "executions": [EXECUTION]}),
    )
    run = run_cli(api, "executions", "demo", "--limit", "5")
    assert run.code == 0, run.err
    header, line = run.out.splitlines()
    assert header.startswith("ID") and "STATUS" in header and "ERROR" in header
    for cell in ("ex1", "greet", "v2", "error", "0.4 ms", "1.52 s", "12.5 ms", "3.0 MB",
                 "ValueError: no name"):  # fmt: skip
        assert cell in line
    assert run_cli(api, "executions", "demo", "--limit", "0").code == 2


def test_executions_filter_by_function_and_status(api: FakeApi) -> None:
    api.route(
        "GET",
        "/v1/scripts/demo/executions?status=error&function=greet",
        Reply(200, {"script": "demo", "executions": [EXECUTION]}),
    )
    run = run_cli(api, "executions", "demo", "--status", "error", "--function", "greet")
    assert run.code == 0, run.err
    assert "ValueError: no name" in run.out


def test_execution_shows_everything_with_the_traceback(api: FakeApi) -> None:
    api.route("GET", "/v1/executions/ex1", Reply(200, {**EXECUTION, "logs": "printed\n"}))
    run = run_cli(api, "execution", "ex1")
    assert run.code == 0, run.err
    assert "Status:" in run.out and "ValueError: no" in run.out
    assert "  File main.py" in run.out and "Logs\n  printed" in run.out


def test_execution_with_a_result() -> None:
    text = render_calls.execution({**EXECUTION, "status": "ok", "error": None, "result": [1]})
    assert "Result\n  [\n    1\n  ]" in text and "Error" not in text


def test_time_and_error_formatting() -> None:
    assert render_calls.fmt_ms(None) == "-"
    assert render_calls.fmt_ms(0.25) == "0.2 ms"
    assert render_calls.fmt_ms(2500) == "2.50 s"
    assert (
        render_calls.error_summary({"type": "E", "message": "x" * 100}, 20)
        == "E: " + "x" * 14 + "..."
    )
    assert render_calls.error_summary(None) == ""
    assert "No executions" in render_calls.executions_table({"executions": []})


# --- uploads ------------------------------------------------------------------------


def test_uploads_add_streams_the_file_under_its_name(api: FakeApi, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(b"a,b\n1,2\n")
    api.route("POST", "/v1/uploads", Reply(201, {"name": "data.csv", "size": 8}))
    api.route("POST", "/v1/uploads?replace=1", Reply(201, {"name": "other.csv", "size": 8}))
    run = run_cli(api, "uploads", "add", str(data))
    assert run.code == 0, run.err
    sent = api.sent("POST", "/v1/uploads")[0]
    assert sent.body == b"a,b\n1,2\n" and sent.headers["X-Filename"] == "data.csv"
    assert run.out == "Uploaded data.csv (8 B)\n"
    run = run_cli(api, "--json", "uploads", "add", str(data), "--name", "other.csv", "--replace")
    assert run.json()["name"] == "other.csv"
    assert api.sent("POST", "/v1/uploads?replace=1")[0].headers["X-Filename"] == "other.csv"


def test_uploads_add_refuses_a_missing_file_before_any_request(
    api: FakeApi, tmp_path: Path
) -> None:
    run = run_cli(api, "uploads", "add", str(tmp_path / "nope"))
    assert run.code == 1 and "no such file" in run.err and api.requests == []
    run = run_cli(api, "uploads", "add", str(tmp_path))
    assert run.code == 1 and "not a file" in run.err


def test_uploads_list_and_delete(api: FakeApi) -> None:
    files = [{"name": "a.txt", "size": 2048, "modified_at": "2026-11-22T19:00:00.000Z"}]
    api.route("GET", "/v1/uploads", Reply(200, {"files": files}))
    api.route("DELETE", "/v1/uploads/a.txt", Reply(200, {"deleted": "a.txt"}))
    run = run_cli(api, "uploads", "list")
    assert run.out.splitlines()[1].split() == ["a.txt", "2.0", "KB", "2026-11-22", "19:00:00"]
    assert json.loads(run_cli(api, "--json", "uploads", "list").out) == {"files": files}
    assert run_cli(api, "uploads", "delete", "a.txt").out == "Deleted a.txt\n"
    assert render_calls.files_table({"files": []}) == "No uploaded files."
