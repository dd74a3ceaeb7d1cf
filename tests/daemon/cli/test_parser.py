"""scriptctl's argument parsing and how options become API request bodies."""

from __future__ import annotations

import argparse

import pytest

from daemon.cli.client import DEFAULT_SOCKET, path_of, resolve_socket
from daemon.cli.cmd_scripts import version_number
from daemon.cli.main import build_parser, main
from daemon.cli.options import env_pair, script_body


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_global_options_work_before_and_after_the_command() -> None:
    before = parse("--socket", "/s", "--json", "list")
    after = parse("list", "--socket", "/s", "--json")
    for args in (before, after):
        assert (args.socket, args.json, args.command) == ("/s", True, "list")
    plain = parse("list")
    assert (plain.socket, plain.json) == (None, False)


def test_socket_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRIPTD_SOCKET", raising=False)
    assert resolve_socket(None) == DEFAULT_SOCKET
    monkeypatch.setenv("SCRIPTD_SOCKET", "/env.sock")
    assert resolve_socket(None) == "/env.sock"
    assert resolve_socket("/flag.sock") == "/flag.sock"


def test_create_options_become_the_api_body() -> None:
    args = parse(
        "create",
        "hello",
        "--language",
        "python",
        "--archive",
        "p.zip",
        "--description",
        "hi",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--secret-env",
        "T=s",
        "--timeout",
        "60",
        "--min-replicas",
        "1",
        "--max-replicas",
        "3",
        "--cpu-target",
        "50",
        "--profile",
        "2vcpu-4gb",
        "--language-version",
        "3.11",
    )
    assert script_body(args) == {
        "description": "hi",
        "language": "python",
        "language_version": "3.11",
        "timeout_s": 60,
        "min_replicas": 1,
        "max_replicas": 3,
        "cpu_target": 50,
        "profile": "2vcpu-4gb",
        "env": [
            {"key": "A", "value": "1", "secret": False},
            {"key": "B", "value": "x=y", "secret": False},
            {"key": "T", "value": "s", "secret": True},
        ],
    }


def test_update_sends_only_what_was_given() -> None:
    assert script_body(parse("update", "hello", "--timeout", "40")) == {"timeout_s": 40}
    assert script_body(parse("update", "hello", "--new-name", "hi")) == {"name": "hi"}
    assert script_body(parse("update", "hello", "--clear-env")) == {"env": []}


def test_redeploy_cannot_change_identity() -> None:
    args = parse("redeploy", "hello", "--description", "d", "--wait")
    assert script_body(args) == {"description": "d"} and args.wait
    with pytest.raises(SystemExit):
        parse("redeploy", "hello", "--language", "python")


def test_env_pairs() -> None:
    assert env_pair("K=") == ("K", "")
    assert env_pair("K=a=b") == ("K", "a=b")
    for bad in ("K", "=v", " =v"):
        with pytest.raises(argparse.ArgumentTypeError):
            env_pair(bad)


def test_version_numbers() -> None:
    assert version_number("3") == 3
    assert version_number("v12") == 12
    for bad in ("0", "x", "v", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            version_number(bad)


def test_api_paths_are_escaped() -> None:
    assert path_of("v1", "scripts", "a/b", "versions", 2) == "/v1/scripts/a%2Fb/versions/2"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["create", "x", "--archive", "a.zip"], "the following arguments are required: --language"),
        (["create", "x", "--language", "ruby", "--archive", "a"], "invalid choice: 'ruby'"),
        (["update", "x", "--timeout", "soon"], "invalid int value: 'soon'"),
        (["update", "x", "--env", "NOEQUALS"], "expected KEY=VALUE"),
        (["rename-version", "x", "vv", "n"], "expected a version number"),
        (["export", "x"], "the following arguments are required: -o/--output"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("scriptctl: error: ") and expected in err


def test_every_command_has_json_and_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    expected = {
        "validate",
        "create",
        "update",
        "deploy",
        "redeploy",
        "undeploy",
        "delete",
        "export",
        "list",
        "show",
        "history",
        "rename-version",
        "profiles",
        "runtimes",
        "sample",
        "up",
    }
    assert expected <= set(sub.choices)
    for name, command in sub.choices.items():
        assert "--json" in command.format_usage(), name


CURRENT = [
    {"key": "A", "value": "1", "secret": False},
    {"key": "TOKEN", "value": "********", "secret": True},
    {"key": "OLD", "value": "x", "secret": False},
]


def test_env_edits_keep_untouched_variables_and_masked_secrets() -> None:
    args = parse("update", "hello", "--env", "A=2", "--env", "NEW=n", "--unset-env", "OLD")
    assert script_body(args, CURRENT)["env"] == [
        {"key": "A", "value": "2", "secret": False},
        {"key": "TOKEN", "value": "********", "secret": True},
        {"key": "NEW", "value": "n", "secret": False},
    ]


def test_clear_env_starts_from_nothing() -> None:
    args = parse("redeploy", "hello", "--clear-env", "--secret-env", "K=v")
    assert script_body(args, CURRENT)["env"] == [{"key": "K", "value": "v", "secret": True}]


def test_no_env_option_leaves_env_alone() -> None:
    assert "env" not in script_body(parse("update", "hello", "--timeout", "31"), CURRENT)


def test_the_cli_path_imports_nothing_heavy() -> None:
    """Startup stays fast: no aiohttp, no daemon modules beyond daemon.cli and the plain
    models of daemon.core (the table of languages)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, daemon.cli.main; print(json.dumps("
        "sorted(m for m in sys.modules if m.startswith(('aiohttp', 'daemon', 'orjson')))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    allowed = ("daemon.cli", "daemon.core")
    assert all(m == "daemon" or m.startswith(allowed) for m in loaded), loaded


def test_egress_options_become_the_egress_body() -> None:
    args = parse("create", "hi", "--language", "python", "--archive", "x.zip",
                 "--egress", "allowlist", "--allow-host", "api.example.com",
                 "--allow-host", "*.x.org:8443")  # fmt: skip
    assert script_body(args)["egress"] == {
        "policy": "allowlist",
        "allow_hosts": ["api.example.com", "*.x.org:8443"],
    }
    for command in (("update", "hi"), ("redeploy", "hi"), ("up", "dir", "--name", "hi")):
        body = script_body(parse(*command, "--egress-inspect", "off"))
        assert body["egress"] == {"inspect": False}
    assert "egress" not in script_body(parse("update", "hi", "--timeout", "40"))


def test_async_options_become_the_async_body() -> None:
    args = parse("create", "hi", "--language", "python", "--archive", "x.zip",
                 "--retries", "2", "--max-event-age", "600")  # fmt: skip
    assert script_body(args)["async"] == {"retries": 2, "max_event_age_s": 600}
    for command in (("update", "hi"), ("redeploy", "hi"), ("up", "dir", "--name", "hi")):
        assert script_body(parse(*command, "--retries", "0"))["async"] == {"retries": 0}
    assert "async" not in script_body(parse("update", "hi", "--timeout", "40"))
    assert parse("keys", "callback-secret", "hi", "--rotate").rotate
    assert parse("executions", "retry", "abc-1").id == "abc-1"
    assert parse("executions", "hi", "--status", "dead").status == "dead"


def test_secret_grants_become_the_secrets_body() -> None:
    args = parse("create", "hi", "--language", "python", "--archive", "x.zip",
                 "--secret", "API_TOKEN", "--secret", "DB_URL")  # fmt: skip
    assert script_body(args)["secrets"] == ["API_TOKEN", "DB_URL"]
    for command in (("update", "hi"), ("redeploy", "hi"), ("up", "dir", "--name", "hi")):
        assert script_body(parse(*command, "--secret", "X"))["secrets"] == ["X"]
        assert script_body(parse(*command, "--clear-secrets"))["secrets"] == []
    assert "secrets" not in script_body(parse("update", "hi", "--timeout", "40"))
    assert parse("secrets", "set", "API_TOKEN", "--file", "v.txt").file.name == "v.txt"
