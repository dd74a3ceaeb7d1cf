"""The script options shared by create, update, redeploy and up, and how they
become the JSON body of the admin API (only the options given are sent, so the
daemon's defaults and the script's current values stay in charge of the rest)."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli import archives
from daemon.cli.client import AdminClient, path_of
from daemon.cli.errors import CliError
from daemon.core.models import LANGUAGES

# option dest -> API field, for the plain values copied as they are.
PLAIN_FIELDS = {
    "description": "description",
    "new_name": "name",
    "language": "language",
    "language_version": "language_version",
    "timeout": "timeout_s",
    "min_replicas": "min_replicas",
    "max_replicas": "max_replicas",
    "cpu_target": "cpu_target",
    "profile": "profile",
    "concurrency": "concurrency",
    "workers_per_replica": "workers_per_replica",
}


def env_pair(text: str) -> tuple[str, str]:
    """`KEY=VALUE` -> (KEY, VALUE); the value may itself hold `=` or be empty."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_script_options(
    parser: argparse.ArgumentParser,
    *,
    identity: bool,
    archive: bool = True,
    archive_required: bool = False,
    language_required: bool = False,
) -> None:
    """Options describing a script. `identity` adds language / language version
    (only settable at create, or on a Draft); `archive` adds --archive."""
    if identity:
        parser.add_argument(
            "--language", choices=LANGUAGES, required=language_required, help="base language"
        )
        parser.add_argument(
            "--language-version",
            metavar="V",
            help="interpreter version (default: the host's default)",
        )
    if archive:
        parser.add_argument(
            "--archive",
            metavar="ARCHIVE|DIR",
            required=archive_required,
            help="project as .zip/.tar/.tar.gz file, or a folder to pack",
        )
    parser.add_argument("--description", metavar="D")
    parser.add_argument(
        "--env",
        metavar="KEY=VALUE",
        type=env_pair,
        action="append",
        default=[],
        help="environment variable (repeatable)",
    )
    parser.add_argument(
        "--secret-env",
        metavar="KEY=VALUE",
        type=env_pair,
        action="append",
        default=[],
        help="secret environment variable, masked on read (repeatable)",
    )
    parser.add_argument("--timeout", metavar="S", type=int, help="execution timeout in seconds")
    parser.add_argument("--min-replicas", metavar="N", type=int)
    parser.add_argument("--max-replicas", metavar="N", type=int)
    parser.add_argument(
        "--cpu-target", metavar="P", type=int, help="average CPU utilization target in percent"
    )
    parser.add_argument("--profile", metavar="P", help="hardware profile (see `profiles`)")
    parser.add_argument("--concurrency", metavar="N", type=int,
                        help="calls in flight per worker, 1 to 64 (default 1): async functions "
                        "run as tasks, sync ones in a thread pool of N")  # fmt: skip
    parser.add_argument("--workers-per-replica", metavar="N", type=int,
                        help="worker processes per replica, 1 to 16 (default: one per whole "
                        "vCPU of the profile)")  # fmt: skip
    parser.add_argument("--kind", choices=("functions", "step"),
                        help="step: main is a code step's body (needs step.toml or --input/"
                        "--output); default: what the project says")  # fmt: skip
    for flag, dest, example in (
        ("--input", "step_inputs", "name:s"),
        ("--output", "step_outputs", "greeting:s"),
    ):
        what = f"a code step's {flag[2:]}, e.g. {example} (repeatable)"
        parser.add_argument(
            flag, dest=dest, metavar="NAME:CODE", action="append", default=[], help=what
        )
    parser.add_argument(
        "--egress",
        choices=("off", "public", "allowlist"),
        help="outbound HTTP: none, public addresses, or only the --allow-host hosts",
    )
    parser.add_argument(
        "--allow-host",
        metavar="PATTERN",
        action="append",
        default=[],
        help="host the allowlist lets through: api.example.com, *.example.com, "
        "optionally :PORT (repeatable; replaces the list)",
    )
    parser.add_argument(
        "--secret",
        dest="grant_secret",
        metavar="NAME",
        action="append",
        default=[],
        help="grant the account's secret NAME: the script sees it as env variable NAME "
        "(repeatable; replaces the granted list)",
    )
    parser.add_argument(
        "--clear-secrets", action="store_true", help="grant no secrets (revoke all)"
    )
    parser.add_argument(
        "--retries",
        metavar="N",
        type=int,
        help="asynchronous calls: attempts after a failed one, 0 to 2 (default 0)",
    )
    parser.add_argument(
        "--max-event-age",
        metavar="S",
        type=int,
        help="asynchronous calls: seconds a call may wait before it expires (default 21600)",
    )
    parser.add_argument(
        "--egress-inspect",
        choices=("on", "off"),
        help="off: HTTPS is not intercepted, and logged as host, port, bytes, duration",
    )


def add_env_edits(parser: argparse.ArgumentParser) -> None:
    """For commands that change an existing script: --env/--secret-env set or replace
    those keys and keep the others (secrets included); these two edit further."""
    parser.add_argument(
        "--unset-env",
        metavar="KEY",
        action="append",
        default=[],
        help="remove this environment variable (repeatable)",
    )
    parser.add_argument(
        "--clear-env",
        action="store_true",
        help="start from no environment variables (then apply --env/--secret-env)",
    )


def env_edited(args: argparse.Namespace) -> bool:
    """True when the command changes the env list of an existing script."""
    edits = (args.env, args.secret_env, getattr(args, "unset_env", None))
    return any(edits) or bool(getattr(args, "clear_env", False))


def env_list(
    args: argparse.Namespace, current: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]] | None:
    """The env list to send, or None when the command leaves it as it is.

    `current` is the script's list as read (secrets masked): sending a masked
    secret back keeps its value, so untouched variables survive the edit."""
    if not env_edited(args):
        return None
    start = [] if getattr(args, "clear_env", False) else list(current or [])
    unset = set(getattr(args, "unset_env", None) or ())
    merged = {e["key"]: e for e in start if e.get("key") not in unset}
    for pairs, secret in ((args.env, False), (args.secret_env, True)):
        for key, value in pairs:
            merged[key] = {"key": key, "value": value, "secret": secret}
    return list(merged.values())


def script_body(
    args: argparse.Namespace, current_env: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every given option as its API field (the archive is handled by with_archive)."""
    body: dict[str, Any] = {}
    for dest, field in PLAIN_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            body[field] = value
    env = env_list(args, current_env)
    if env is not None:
        body["env"] = env
    egress = egress_body(args)
    if egress:
        body["egress"] = egress
    async_calls = async_body(args)
    if async_calls:
        body["async"] = async_calls
    if getattr(args, "grant_secret", None) or getattr(args, "clear_secrets", False):
        body["secrets"] = list(args.grant_secret)
    return body


def async_body(args: argparse.Namespace) -> dict[str, Any]:
    """Only the async-call options given (the daemon keeps the other as it is)."""
    doc: dict[str, Any] = {}
    if getattr(args, "retries", None) is not None:
        doc["retries"] = args.retries
    if getattr(args, "max_event_age", None) is not None:
        doc["max_event_age_s"] = args.max_event_age
    return doc


def egress_body(args: argparse.Namespace) -> dict[str, Any]:
    """Only the egress options given (the daemon keeps the others as they are)."""
    egress: dict[str, Any] = {}
    if getattr(args, "egress", None):
        egress["policy"] = args.egress
    if getattr(args, "allow_host", None):
        egress["allow_hosts"] = list(args.allow_host)
    if getattr(args, "egress_inspect", None):
        egress["inspect"] = args.egress_inspect == "on"
    return egress


def current_env(client: AdminClient, args: argparse.Namespace, name: str) -> list[dict[str, Any]]:
    """The script's env list as read, fetched only when the command edits it."""
    if not env_edited(args) or getattr(args, "clear_env", False):
        return []
    script = client.get(path_of("v1", "scripts", name))
    return list((script.get("settings") or {}).get("env") or [])


def with_archive(client: AdminClient, args: argparse.Namespace, body: dict[str, Any]) -> None:
    """Upload --archive (file or folder) when given, and name it in the body; a code
    step's --input/--output go into it as its step.toml."""
    spec = archives.step_toml(args)
    if getattr(args, "archive", None):
        archives.check_kind(args, args.archive, spec)
        body["archive_id"] = archives.upload(client, args.archive, spec)
    elif spec is not None or getattr(args, "kind", None):
        raise CliError("--kind, --input and --output describe the project: give --archive too")
