"""What the admin API and the web console both do around calling a script: create and
delete API keys, build the endpoint snippets, read execution records.

Callers are the two HTTP front ends (daemon/admin/, daemon/console/); each shapes the
answer for its own medium. Key minting runs argon2, so it runs in a thread; a deleted
key is dropped from the gateway's key cache right after the delete commits, so it is
refused on its very next use.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from daemon.archive.signatures import any_object, python_parameters
from daemon.archive.steps import StepSpecError, read_step_spec
from daemon.core.errors import BadRequest, Conflict, NotFound
from daemon.core.models import DEPLOYED, Event, Script, now_iso
from daemon.gateway.snippets import (
    FORMATS,
    KEY_PLACEHOLDER,
    Format,
    gateway_base_url,
    render_endpoint,
    render_snippets,
    render_step_snippets,
)
from daemon.gateway.step_calls import STEP_FUNCTION
from daemon.keys.api_key import KeyNameError, KeyNameTaken, choose_key_name, mint_key
from daemon.lifecycle.actions import Lifecycle
from daemon.store.keys_table import ApiKeyInfo, ExecutionRow

__all__ = [
    "NewKey", "body_shapes", "build_log_tail", "create_key", "delete_key", "endpoint",
    "execution", "executions", "list_keys",
]  # fmt: skip

_MINT_ATTEMPTS = 3  # a key id collision is 2^-71 per pair: one retry is plenty
COMMENTS = {"curl": "#", "javascript": "//", "python": "#"}


@dataclass(frozen=True)
class NewKey:
    """A key just created: its stored info and the whole key, shown only this once."""

    info: ApiKeyInfo
    script: str
    key: str


async def create_key(lc: Lifecycle, actor: str, script_name: str, raw: object) -> NewKey:
    """A new key named `raw` (None: "Secret Key", then "Secret Key 2", ...)."""
    if raw is not None and not isinstance(raw, str):
        raise BadRequest(f"name = {raw!r} is not allowed: a string of 1 to 64 characters")
    script = await lc.get(script_name)
    minted = await asyncio.to_thread(mint_key)
    for attempt in range(_MINT_ATTEMPTS):
        names = await lc.ctx.db(lc.ctx.store.api_key_names, script.id)
        try:
            name = choose_key_name(raw, names)
        except KeyNameTaken as exc:
            raise Conflict(str(exc)) from None
        except KeyNameError as exc:
            raise BadRequest(str(exc), field="name") from None
        event = Event(0, script.id, now_iso(), "key_created", actor, {"key": name})
        try:
            info = await lc.ctx.db(
                lc.ctx.store.insert_api_key, script.id, minted.key_id, name, minted.hash, actor,
                event.at, event,
            )  # fmt: skip
        except KeyNameTaken as exc:
            # Another create took the name between our read and our insert: a
            # default name picks the next free one, a given name is refused.
            if raw is not None or attempt == _MINT_ATTEMPTS - 1:
                raise Conflict(str(exc)) from None
            continue
        except Conflict:  # the key id exists: mint another
            minted = await asyncio.to_thread(mint_key)
            continue
        return NewKey(info, script.name, minted.key)
    raise Conflict("could not store a new key: try again")


async def list_keys(
    lc: Lifecycle, script_name: str, search: str | None
) -> tuple[Script, list[ApiKeyInfo]]:
    """A script's keys (never their secrets) whose name contains `search`."""
    script = await lc.get(script_name)
    return script, list(await lc.ctx.db(lc.ctx.store.list_api_keys, script.id, search))


async def delete_key(lc: Lifecycle, actor: str, script_name: str, key_name: str) -> tuple[str, str]:
    """Delete the key and refuse it from its next use on: (the script's name, its id)."""
    script = await lc.get(script_name)
    event = Event(0, script.id, now_iso(), "key_deleted", actor, {"key": key_name})
    key_id = await lc.ctx.db(lc.ctx.store.delete_api_key, script.id, key_name, event)
    if key_id is None:
        raise NotFound(f"script {script.name!r} has no API key named {key_name!r}")
    lc.ctx.keys.invalidate_key(key_id)
    return script.name, str(key_id)


# --- endpoint -----------------------------------------------------------------------


def _require_deployed(script: Script) -> None:
    if script.status != DEPLOYED:
        raise Conflict(
            f"script {script.name!r} is {script.status}: its endpoint is active only while "
            f"Deployed; deploy it first (scriptctl deploy {script.name})",
            status=script.status,
        )


async def endpoint(
    lc: Lifecycle, script_name: str, formats: tuple[Format, ...] = FORMATS
) -> dict[str, Any]:
    """The snippets of every function of a Deployed script (or of its step's run)."""
    script = await lc.get(script_name)
    _require_deployed(script)
    config = lc.ctx.config
    base = gateway_base_url(config.listen_host, config.listen_port)
    step = await _step_inputs(lc, script)
    if step is not None:
        return _step_endpoint(script.name, base, step, formats)
    parameters = await _function_parameters(lc, script)
    functions: list[dict[str, Any]] = []
    for function in script.functions:
        snippets = render_snippets(script.name, function, base)
        item = {"function": function, "url": snippets.url,
                "parameters": parameters.get(function, any_object())}  # fmt: skip
        functions.append(item | {f: snippets.get(f) for f in formats})
    return {
        "script": script.name,
        "base_url": base,
        "key_placeholder": KEY_PLACEHOLDER,
        "formats": list(formats),
        "functions": functions,
        "text": render_endpoint(script.name, script.functions, base, formats),
    }


async def body_shapes(
    lc: Lifecycle, script: Script
) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """What a Deployed script's calls take: (a step's inputs, name -> type code, or None
    for functions; function -> the JSON Schema of its body, {} when unknown)."""
    step = await _step_inputs(lc, script)
    return step, ({} if step is not None else await _function_parameters(lc, script))


async def _function_parameters(lc: Lifecycle, script: Script) -> dict[str, Any]:
    """function -> the JSON Schema of its body, from the serving version's main.py
    (Python: annotations and defaults); {} when there is nothing to read."""
    if script.current_version is None or script.language != "python":
        return {}
    main = lc.ctx.state.source_dir(script.id, script.current_version) / "main.py"
    try:
        source = await lc.ctx.db(main.read_text, "utf-8")
        return await lc.ctx.db(python_parameters, source, tuple(script.functions))
    except (OSError, SyntaxError, ValueError):
        return {}


async def _step_inputs(lc: Lifecycle, script: Script) -> dict[str, str] | None:
    """The declared inputs of a Deployed code step (its serving version's step.toml),
    or None when the script is not a step."""
    if script.current_version is None:
        return None
    source = lc.ctx.state.source_dir(script.id, script.current_version)
    try:
        spec = await lc.ctx.db(read_step_spec, source)
    except (StepSpecError, OSError):
        return None
    return None if spec is None else dict(json.loads(spec)["inputs"])


def _step_endpoint(
    name: str, base: str, inputs: dict[str, str], formats: tuple[Format, ...]
) -> dict[str, Any]:
    snippets = render_step_snippets(name, base, inputs)
    item = {"function": STEP_FUNCTION, "url": snippets.url} | {f: snippets.get(f) for f in formats}
    text = "\n".join(f"{COMMENTS[f]} {name} (code step) - {f}\n{snippets.get(f)}" for f in formats)
    return {
        "script": name,
        "base_url": base,
        "key_placeholder": KEY_PLACEHOLDER,
        "formats": list(formats),
        "kind": "step",
        "functions": [item],
        "text": text,
    }


# --- executions ---------------------------------------------------------------------


async def executions(
    lc: Lifecycle,
    script_name: str,
    limit: int,
    before: str | None = None,
    status: str | None = None,
    since: str | None = None,
    function: str | None = None,
) -> tuple[Script, list[ExecutionRow]]:
    """A script's records, newest first: received before `before` and from `since` on
    (ISO times as recorded), of `status` and `function` when given."""
    script = await lc.get(script_name)
    await _flush_records(lc)
    rows = await lc.ctx.db(
        lc.ctx.store.list_executions, script.id, limit, before, status, since, function
    )
    return script, list(rows)


async def execution(lc: Lifecycle, execution_id: str) -> tuple[Script, ExecutionRow]:
    """One record and its script."""
    missing = NotFound(f"no execution with id {execution_id!r}")
    await _flush_records(lc)
    row = await lc.ctx.db(lc.ctx.store.get_execution, execution_id)
    if row is None:
        raise missing
    script = await lc.ctx.db(lc.ctx.store.get_script_by_id, row.script_id)
    if script is None:
        raise missing
    return script, row


async def _flush_records(lc: Lifecycle) -> None:
    """The calls answered so far written to the store (the gateway writes them in
    batches), so that what is read includes them."""
    if lc.ctx.flush_records is not None:
        await lc.ctx.flush_records()


# --- deploys ------------------------------------------------------------------------


async def build_log_tail(lc: Lifecycle, script: Script, number: int, max_bytes: int) -> str:
    """The last `max_bytes` of a version's build log ("" before the build starts)."""
    path = lc.ctx.state.build_log(script.id, number)

    def read() -> str:
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    return await asyncio.to_thread(read)
