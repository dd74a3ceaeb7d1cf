"""Commands that change what is live: `deploy`, `redeploy`, `undeploy` and `up`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from daemon.cli import archives, options
from daemon.cli.client import path_of
from daemon.cli.context import Context
from daemon.cli.errors import ApiError, CliError
from daemon.cli.waiting import finish_deploy

WAIT_HELP = "follow the deploy until it ends (non-zero exit if it fails)"


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("deploy", parents=[common], help="deploy a script")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.set_defaults(handler=deploy)

    p = commands.add_parser(
        "redeploy", parents=[common], help="deploy a new version of a Deployed script"
    )
    p.add_argument("name", metavar="NAME")
    options.add_script_options(p, identity=False)
    options.add_env_edits(p)
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)
    p.set_defaults(handler=redeploy)

    p = commands.add_parser(
        "undeploy", parents=[common], help="stop a Deployed script (it becomes Ready to Deploy)"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=undeploy)

    p = commands.add_parser(
        "up", parents=[common], help="pack a folder, create or redeploy the script, and wait"
    )
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--name", required=True, help="script name")
    options.add_script_options(p, identity=True, archive=False)
    options.add_env_edits(p)
    p.set_defaults(handler=up)


def deploy(ctx: Context, args: argparse.Namespace) -> int:
    script = ctx.client.call("POST", path_of("v1", "scripts", args.name, "deploy"), {})
    return finish_deploy(ctx, script, args.wait)


def redeploy(ctx: Context, args: argparse.Namespace) -> int:
    body = options.script_body(args, options.current_env(ctx.client, args, args.name))
    options.with_archive(ctx.client, args, body)
    script = ctx.client.call("POST", path_of("v1", "scripts", args.name, "redeploy"), body)
    return finish_deploy(ctx, script, args.wait)


def undeploy(ctx: Context, args: argparse.Namespace) -> int:
    script = ctx.client.call("POST", path_of("v1", "scripts", args.name, "undeploy"), {})
    ctx.show(script, lambda s: f"Undeployed {s.get('name')}: {s.get('status')}")
    return 0


def up(ctx: Context, args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise CliError(f"{args.folder} is not a folder")
    language = args.language or archives.detect_language(folder)
    existing = _find_script(ctx, args.name)
    env = None if existing is None else (existing.get("settings") or {}).get("env")
    body = options.script_body(args, env)
    body.pop("language", None)
    if existing is not None:
        _check_language(existing, language, body)
    spec = archives.step_toml(args)
    archives.check_kind(args, str(folder), spec)
    body["archive_id"] = archives.upload(ctx.client, str(folder), spec)
    if existing is None:
        body.update(name=args.name, language=language, deploy=True)
        ctx.note(f"creating {args.name} ({language}) and deploying it")
        script = ctx.client.call("POST", "/v1/scripts", body)
    else:
        script = _redeploy_existing(ctx, existing, body)
    return finish_deploy(ctx, script, wait=True)


def _check_language(existing: dict[str, Any], language: str, body: dict[str, Any]) -> None:
    """A Draft may switch language with its new project; any other status may not."""
    if language == existing.get("language"):
        return
    name, status = existing.get("name"), existing.get("status")
    if status != "Draft":
        raise CliError(
            f"{name} is a {existing.get('language')} script and the folder holds a "
            f"{language} project: the language can only change while Draft ({name} is {status})"
        )
    body["language"] = language


def _redeploy_existing(ctx: Context, existing: dict[str, Any], body: dict[str, Any]) -> Any:
    """Deployed: redeploy with the new project. Other statuses: update, then deploy
    (the daemon refuses, naming the status, when that status allows neither)."""
    name, status = str(existing["name"]), existing.get("status")
    script_path = path_of("v1", "scripts", name)
    if status == "Deployed":
        ctx.note(f"redeploying {name}")
        return ctx.client.call("POST", f"{script_path}/redeploy", body)
    ctx.note(f"updating {name} ({status}) and deploying it")
    ctx.client.call("PATCH", script_path, body)
    return ctx.client.call("POST", f"{script_path}/deploy", {})


def _find_script(ctx: Context, name: str) -> dict[str, Any] | None:
    try:
        return dict(ctx.client.get(path_of("v1", "scripts", name)))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
