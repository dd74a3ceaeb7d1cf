"""scriptctl's formatting: tables, times, sizes, progress and the API object render_scripts."""

from __future__ import annotations

import io

from daemon.cli import render_scripts
from daemon.cli.errors import ApiError, finding_line, report_lines
from daemon.cli.output import (
    Ticker,
    fmt_bytes,
    fmt_duration,
    fmt_time,
    progress_bar,
    render_fields,
    render_table,
)

STATUSES = ("Draft", "Deploying", "Ready to Deploy", "Deployed", "Deployment Failed")


def test_table_columns_are_aligned_and_empty_cells_show_a_dash() -> None:
    text = render_table(("A", "LONGER"), [("xxxx", None), ("y", "z")])
    lines = text.splitlines()
    assert lines == ["A     LONGER", "xxxx  -", "y     z"]


def test_fields_align_values() -> None:
    assert render_fields([("Name", "a"), ("Status", "Draft")], indent="  ") == (
        "  Name:    a\n  Status:  Draft"
    )


def test_times_durations_and_sizes() -> None:
    assert fmt_time("2026-11-22T19:11:05.123Z") == "2026-11-22 19:11:05"
    assert fmt_time(None) == "-"
    assert fmt_time("not a time") == "not a time"
    assert fmt_duration(3.24) == "3.2s"
    assert fmt_duration(125) == "2m05s"
    assert fmt_duration(7300) == "2h01m"
    assert fmt_bytes(512) == "512 B"
    assert fmt_bytes(1536) == "1.5 KB"
    assert fmt_bytes(3 * 1024**3) == "3.0 GB"


def test_progress_bar() -> None:
    assert progress_bar(50, 100, width=10) == "[#####.....]  50%  50 B / 100 B"
    assert progress_bar(50, None) == "50 B"


def test_summary_table_writes_statuses_exactly() -> None:
    scripts = [
        {
            "name": f"s{i}",
            "status": s,
            "added_by": "root",
            "updated_at": "2026-01-02T03:04:05Z",
            "language": "python",
        }
        for i, s in enumerate(STATUSES)
    ]
    text = render_scripts.scripts_table(scripts)
    assert text.splitlines()[0].split("  ")[0] == "SCRIPT NAME"
    for status in STATUSES:
        assert f"  {status}  " in text
    assert "2026-01-02 03:04:05" in text
    assert render_scripts.scripts_table([]) == "No scripts."


def test_overview_shows_settings_resources_and_masked_secrets() -> None:
    script = {
        "name": "hello",
        "description": "says hi",
        "language": "python",
        "language_version": "3.11.7",
        "status": "Deployed",
        "added_by": "root",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:01:00Z",
        "settings": {
            "env": [
                {"key": "A", "value": "1", "secret": False},
                {"key": "T", "value": "********", "secret": True},
            ],
            "timeout_s": 30,
        },
        "resources": {
            "min_replicas": 1,
            "max_replicas": 1,
            "cpu_target": 75,
            "profile": "1vcpu-2gb",
        },
        "functions": ["greet", "add"],
        "current_version": 2,
        "deployment": {
            "number": 2,
            "display_name": "hello-v2",
            "status": "Deployed",
            "phase": "done",
            "deployed_by": "root",
            "duration_s": 1.5,
            "started_at": "2026-01-01T00:00:58Z",
            "ended_at": "2026-01-01T00:01:00Z",
            "failure_reason": None,
        },
    }
    text = render_scripts.overview(script)
    assert "Status:           Deployed" in text
    assert "python 3.11.7" in text
    assert "A=1, T=******** (secret)" in text
    assert "v2 (hello-v2)" in text
    assert "greet, add" in text
    assert "75 % (not used: min = max)" in text
    assert "1vcpu-2gb" in text


def test_history_keeps_each_row_on_one_line() -> None:
    data = {
        "versions": [
            {
                "number": 1,
                "display_name": "hello-v1",
                "status": "Deployment Failed",
                "deployed_by": "root",
                "started_at": None,
                "ended_at": None,
                "duration_s": 2.0,
                "failure_reason": "Traceback:\n  boom\nValueError: bad",
            },
        ],
        "events": [
            {"at": "2026-01-01T00:00:00Z", "kind": "created", "actor": "root", "detail": None}
        ],
    }
    text = render_scripts.history(data)
    row = text.splitlines()[1]
    assert row.startswith("v1")
    assert "Deployment Failed" in row and row.endswith("ValueError: bad")
    assert "Events" in text and "created" in text
    assert render_scripts.history({"versions": []}) == "No deployments yet."
    assert render_scripts.detail_text({"version": 2, "from": "a"}) == "version=2, from=a"
    assert render_scripts.detail_text(None) == ""
    nested = {"archive": {"filename": "p.zip", "sha256": "ab" * 32}, "version": 1}
    assert render_scripts.detail_text(nested) == (
        "archive.filename=p.zip, archive.sha256=ababababababababababababababababababa..., version=1"
    )


def test_history_names_the_secrets_each_version_was_granted() -> None:
    def version(number: int, secrets: list[str]) -> dict[str, object]:
        settings = {"env": [{"key": "T", "value": "********", "secret": True}],
                    "secrets": secrets}  # fmt: skip
        return {"number": number, "display_name": f"hello-v{number}", "status": "Deployed",
                "config": {"settings": settings}}  # fmt: skip

    text = render_scripts.history({"versions": [version(2, ["API_TOKEN", "DB_PASSWORD"]),
                                                version(1, [])]})  # fmt: skip
    header, v2, v1 = text.splitlines()[:3]
    assert "SECRETS" in header
    assert "API_TOKEN, DB_PASSWORD" in v2 and "API_TOKEN" not in v1
    assert "********" not in text  # env values are not history's business


def test_validation_report_lists_every_finding() -> None:
    report = {
        "ok": False,
        "language": None,
        "functions": [],
        "entries": 2,
        "unpacked_bytes": 10,
        "errors": [
            {
                "level": "error",
                "code": "main_missing",
                "message": "no main.py",
                "where": "/",
                "fix": "put main.py at the root",
            }
        ],
        "warnings": [
            {"level": "warning", "code": "w", "message": "odd", "where": "x.txt", "fix": ""}
        ],
    }
    text = render_scripts.validation_report(report)
    assert text.splitlines()[0] == "Not valid: 1 error, 1 warning"
    assert "error [main_missing] /: no main.py (fix: put main.py at the root)" in text
    assert "warning [w] x.txt: odd" in text


def test_profiles_and_runtimes_tables() -> None:
    profiles = [
        {
            "name": "1vcpu-2gb",
            "label": "1 vCPU, 2 GB memory",
            "vcpus": 0.7,
            "memory_bytes": 1181116006,
            "credits_per_hour": 0.07698,
            "default": True,
        }
    ]
    assert "0.7 vCPU, 1.1 GB" in render_scripts.profiles_table(profiles)
    runtimes = [
        {"language": "python", "version": "3.11.7", "path": "/usr/bin/python3.11", "default": True}
    ]
    assert "python    3.11.7" in render_scripts.runtimes_table(runtimes)


def test_api_error_takes_message_and_report() -> None:
    body = {
        "error": {
            "type": "invalid_archive",
            "message": "archive is not valid",
            "report": {
                "errors": [
                    {"level": "error", "code": "c", "message": "m", "where": "w", "fix": "f"}
                ]
            },
        }
    }
    exc = ApiError(422, body, "fallback")
    assert (exc.message, exc.type, exc.status) == ("archive is not valid", "invalid_archive", 422)
    assert exc.details == ("  error [c] w: m (fix: f)",)
    assert ApiError(500, None, "HTTP 500").message == "HTTP 500"
    assert report_lines(None) == ()
    assert finding_line("plain") == "plain"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_ticker_prints_phase_changes_only_when_not_a_terminal() -> None:
    stream = io.StringIO()
    ticker = Ticker(stream, start=0.0)
    for state in ("Deploying v1: unpacking", "Deploying v1: unpacking", "Deployed v1"):
        ticker.update(state)
    ticker.close()
    lines = stream.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["Deploying v1: unpacking", "Deployed v1"]


def test_ticker_redraws_in_place_on_a_terminal() -> None:
    stream = FakeTty()
    ticker = Ticker(stream)
    ticker.update("Deploying v1: building")
    ticker.update("Deploying v1: building")
    ticker.update("Deployed v1")
    ticker.close()
    assert stream.getvalue().count("\n") == 2
    assert "\r\033[K" in stream.getvalue()


def test_progress_draws_the_end_once() -> None:
    from daemon.cli.output import Progress

    stream = io.StringIO()
    progress = Progress("x.zip", stream)
    for done in (10, 20, 100, 100):
        progress(done, 100)
    progress.finish()
    text = stream.getvalue()
    assert text.startswith("\rx.zip [") and text.endswith("\n")
    assert text.count("100%") == 1


def test_the_replicas_table_shows_egress_traffic() -> None:
    replicas = [
        {"name": "hello-v2-r1", "state": "ready", "busy": 1,
         "egress": {"bytes_out": 2048, "bytes_in": 5 * 1024 * 1024, "open_connections": 1,
                    "idle_connections": 2, "connections": 7}},
        {"name": "hello-v2-r2", "state": "starting", "busy": 0, "egress": None},
    ]  # fmt: skip
    lines = render_scripts.replicas_table(replicas, indent="  ").splitlines()
    assert lines[0].split() == ["REPLICA", "STATE", "BUSY", "SENT", "RECEIVED", "CONNECTIONS"]
    assert lines[1].split() == ["hello-v2-r1", "ready", "1", "2.0", "KB", "5.0", "MB", "1",
                                "open,", "2", "idle,", "7", "total"]  # fmt: skip
    assert "no egress" in lines[2] and all(line.startswith("  ") for line in lines)
