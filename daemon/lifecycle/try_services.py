"""Trying a Deployed script from the web console's Test tab: the form's fields (a
function's parameters, or a code step's declared inputs) and the call itself.

The call goes through `Tryout` (daemon/gateway/tryout.py), the same path as the admin
API's try routes: the gateway's own dispatch, answers and execution records, the
record's key name "admin:<user>".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from daemon.archive.signatures import any_object
from daemon.core.errors import BadRequest, Conflict
from daemon.core.models import DEPLOYED, Script
from daemon.gateway.step_calls import STEP_FUNCTION
from daemon.gateway.tryout import TryAnswer, Tryout
from daemon.lifecycle import call_services
from daemon.lifecycle.actions import Lifecycle
from daemon.lifecycle.try_inputs import (
    Field,
    function_body,
    function_fields,
    json_body,
    step_body,
    step_fields,
)

__all__ = ["TryTargets", "try_call", "try_targets"]

Mode = Literal["typed", "json"]


@dataclass(frozen=True)
class TryTargets:
    """What can be tried: each function's fields, or the step's (under "(step)")."""

    kind: Literal["functions", "step"]
    fields: dict[str, list[Field]]

    @property
    def names(self) -> list[str]:
        return list(self.fields)


async def try_targets(lc: Lifecycle, name: str) -> tuple[Script, TryTargets | None]:
    """The script, and what of it can be tried (None unless it is Deployed)."""
    script = await lc.get(name)
    if script.status != DEPLOYED:
        return script, None
    inputs, parameters = await call_services.body_shapes(lc, script)
    if inputs is not None:
        return script, TryTargets("step", {STEP_FUNCTION: step_fields(inputs)})
    fields = {f: function_fields(parameters.get(f, any_object())) for f in script.functions}
    return script, TryTargets("functions", fields)


async def try_call(
    lc: Lifecycle,
    tryout: Tryout,
    user: str,
    name: str,
    function: str,
    mode: Mode,
    form: Mapping[str, str],
) -> TryAnswer:
    """Call `function` (a step: run it) with the body typed in `form`: its typed
    fields (mode "typed") or its JSON text in "body" (mode "json")."""
    script, targets = await try_targets(lc, name)
    if targets is None:
        raise Conflict(
            f"script {script.name!r} is {script.status}: it can be tested only while "
            f"Deployed; deploy it first (scriptctl deploy {script.name})",
            status=script.status,
        )
    if function not in targets.fields:
        raise BadRequest(f"script {script.name!r} has no function {function!r} to test")
    if mode == "json":
        body = json_body(form.get("body", ""))
    elif targets.kind == "step":
        body = step_body(targets.fields[function], form)
    else:
        body = function_body(targets.fields[function], form)
    if targets.kind == "step":
        return await tryout.run(script.name, body, user)
    return await tryout.call(script.name, function, body, user)
