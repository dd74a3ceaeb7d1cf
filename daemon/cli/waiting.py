"""Following a deploy until its version reaches a final status.

The version started by deploy/redeploy is followed (not the script's status), so
a redeploy, during which the old version keeps serving, is followed the same way.
"""

from __future__ import annotations

import time
from typing import Any

from daemon.cli.client import path_of
from daemon.cli.context import Context
from daemon.cli.errors import EXIT_INTERRUPTED, CliError
from daemon.cli.output import Ticker

POLL_S = 0.5
LOG_TAIL_LINES = 25
DEPLOYING = "Deploying"


def wait_for_deploy(ctx: Context, script: dict[str, Any]) -> dict[str, Any]:
    """Poll until the deploy that `script` (the 202 answer) started ends; returns
    the script then. Raises CliError with the failure reason if it failed."""
    name = str(script["name"])
    number = _version(script)
    ticker = Ticker(ctx.err)
    try:
        while True:
            version = _find_version(script, number)
            ticker.update(progress_text(script, version))
            if not _deploying(script, version):
                break
            time.sleep(POLL_S)
            script = ctx.client.get(path_of("v1", "scripts", name))
    except KeyboardInterrupt:
        raise CliError(
            f"stopped following {name}; the deploy goes on in scriptd (see: scriptctl show {name})",
            exit_code=EXIT_INTERRUPTED,
        ) from None
    finally:
        ticker.close()
    _check_outcome(ctx, script, _find_version(script, number))
    return script


def progress_text(script: dict[str, Any], version: dict[str, Any] | None) -> str:
    """`Deploying v2: building` while in progress, then the final status."""
    if version is None:
        return str(script.get("status"))
    label = f"v{version.get('number')}"
    status = version.get("status")
    if status == DEPLOYING:
        phase = version.get("phase")
        return f"{DEPLOYING} {label}: {phase}" if phase else f"{DEPLOYING} {label}"
    if status == "Deployed":
        return f"Deployed {label} ({version.get('display_name')})"
    return f"{status} {label}"


def _version(script: dict[str, Any]) -> int | None:
    deployment = script.get("deployment")
    return deployment.get("number") if isinstance(deployment, dict) else None


def _find_version(script: dict[str, Any], number: int | None) -> dict[str, Any] | None:
    deployment = script.get("deployment")
    if isinstance(deployment, dict) and (number is None or deployment.get("number") == number):
        return deployment
    return None


def _deploying(script: dict[str, Any], version: dict[str, Any] | None) -> bool:
    # Both: the answer may show the version ended a moment before the script's own status
    # (a redeploy's script says Deploying until the switch is recorded).
    if version is not None and version.get("status") == DEPLOYING:
        return True
    return script.get("status") == DEPLOYING


def _check_outcome(ctx: Context, script: dict[str, Any], version: dict[str, Any] | None) -> None:
    status = version.get("status") if version else script.get("status")
    if status == "Deployed":
        return
    name = script.get("name")
    if version is None:
        raise CliError(f"deploy of {name} did not end Deployed: it is {status}", body=script)
    reason = version.get("failure_reason") or "no reason given"
    reason_line = reason.strip().splitlines()[-1] if reason.strip() else reason
    _print_log_tail(ctx, str(name), version.get("number"))
    still = script.get("status")
    serving = f"; the script is {still}" if still and still != status else ""
    raise CliError(
        f"deploy of {name} v{version.get('number')} ended {status}: {reason_line}{serving}",
        body=script,
    )


def _print_log_tail(ctx: Context, name: str, number: Any) -> None:
    """The end of the build log on stderr; a missing log is not worth a second error."""
    try:
        log = ctx.client.text(path_of("v1", "scripts", name, "versions", number, "log"))
    except CliError:
        return
    lines = log.rstrip().splitlines()[-LOG_TAIL_LINES:]
    if not lines:
        return
    ctx.err.write(f"--- build log of {name} v{number} (last {len(lines)} lines) ---\n")
    ctx.err.write("\n".join(lines) + "\n---\n")


def finish_deploy(ctx: Context, script: dict[str, Any], wait: bool) -> int:
    """After a 202: either follow the deploy to its end, or say how to follow it."""
    if wait:
        script = wait_for_deploy(ctx, script)
        ctx.show(script, _deployed_text)
        return 0
    number = (script.get("deployment") or {}).get("number")
    started = f"v{number}" if number is not None else "a new version"
    ctx.show(
        script,
        lambda s: (
            f"Deploying {s.get('name')} {started} (follow it with: scriptctl show {s.get('name')})"
        ),
    )
    return 0


def _deployed_text(script: dict[str, Any]) -> str:
    deployment = script.get("deployment") or {}
    functions = ", ".join(script.get("functions") or ()) or "-"
    return (
        f"{script.get('name')} v{deployment.get('number')} ({deployment.get('display_name')}) "
        f"is {deployment.get('status')}; functions: {functions}"
    )
