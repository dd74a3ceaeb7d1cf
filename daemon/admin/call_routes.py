"""Admin routes around calling scripts: API keys, endpoint snippets, execution
records and the account's uploaded files.

Handlers are thin like admin_api's: check the request, call the store (in a
thread) or daemon.store.uploads_folder, shape the answer. Domain errors go to the one
middleware in admin_api. Key minting runs argon2, so it runs in a thread; a
deleted key is dropped from the gateway's key cache right after the delete
commits, so it is refused on its very next use.
"""

from __future__ import annotations

import asyncio
import json
import time
import unicodedata
from typing import Any

from aiohttp import web

from daemon.admin.http import CHUNK, CONFIG, body_json, caller, json_response, lifecycle
from daemon.admin.openapi import Route
from daemon.archive.signatures import any_object, python_parameters
from daemon.archive.steps import StepSpecError, read_step_spec
from daemon.core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
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
from daemon.lifecycle.request_checks import check_object
from daemon.store import uploads_folder
from daemon.store.keys_table import iso_from_unix

__all__ = ["ROUTES"]

EXECUTIONS_DEFAULT = 50
EXECUTIONS_MAX = 1000
_MINT_ATTEMPTS = 3  # a key id collision is 2^-71 per pair: one retry is plenty


# --- API keys -----------------------------------------------------------------------


async def create_key(request: web.Request) -> web.Response:
    lc, actor = lifecycle(request), caller(request)
    body = check_object(await body_json(request), frozenset({"name"}))
    raw = body.get("name")
    if raw is not None and not isinstance(raw, str):
        raise BadRequest(f"name = {raw!r} is not allowed: a string of 1 to 64 characters")
    script = await lc.get(request.match_info["name"])
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
        return json_response({**info.to_json(), "script": script.name, "key": minted.key}, 201)
    raise Conflict("could not store a new key: try again")


async def list_keys(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    script = await lc.get(request.match_info["name"])
    keys = await lc.ctx.db(lc.ctx.store.list_api_keys, script.id, request.query.get("search"))
    return json_response({"script": script.name, "keys": [k.to_json() for k in keys]})


async def delete_key(request: web.Request) -> web.Response:
    lc, actor = lifecycle(request), caller(request)
    script = await lc.get(request.match_info["name"])
    name = unicodedata.normalize("NFC", request.match_info["key_name"]).strip()
    event = Event(0, script.id, now_iso(), "key_deleted", actor, {"key": name})
    key_id = await lc.ctx.db(lc.ctx.store.delete_api_key, script.id, name, event)
    if key_id is None:
        raise NotFound(f"script {script.name!r} has no API key named {name!r}")
    forget_key(lc, key_id)
    return json_response({"deleted": name, "id": key_id, "script": script.name})


def forget_key(lc: Lifecycle, key_id: str) -> None:
    """Drop a deleted key from the gateway's cache (it is refused from now on)."""
    lc.ctx.keys.invalidate_key(key_id)


# --- endpoint -----------------------------------------------------------------------


def _formats(request: web.Request) -> tuple[Format, ...]:
    raw = request.query.get("format")
    if not raw:
        return FORMATS
    wanted = tuple(f for f in FORMATS if f == raw)
    if not wanted:
        raise BadRequest(f"format = {raw!r} is not allowed: one of {', '.join(FORMATS)}")
    return wanted


def _require_deployed(script: Script) -> None:
    if script.status != DEPLOYED:
        raise Conflict(
            f"script {script.name!r} is {script.status}: its endpoint is active only while "
            f"Deployed; deploy it first (scriptctl deploy {script.name})",
            status=script.status,
        )


async def get_endpoint(request: web.Request) -> web.Response:
    formats = _formats(request)
    script = await lifecycle(request).get(request.match_info["name"])
    _require_deployed(script)
    config = request.app[CONFIG]
    base = gateway_base_url(config.listen_host, config.listen_port)
    step = await _step_inputs(lifecycle(request), script)
    if step is not None:
        return json_response(_step_endpoint(script.name, base, step, formats))
    parameters = await _function_parameters(lifecycle(request), script)
    functions: list[dict[str, Any]] = []
    for function in script.functions:
        snippets = render_snippets(script.name, function, base)
        item = {"function": function, "url": snippets.url,
                "parameters": parameters.get(function, any_object())}  # fmt: skip
        functions.append(item | {f: snippets.get(f) for f in formats})
    text = render_endpoint(script.name, script.functions, base, formats)
    body = {
        "script": script.name,
        "base_url": base,
        "key_placeholder": KEY_PLACEHOLDER,
        "formats": list(formats),
        "functions": functions,
        "text": text,
    }
    return json_response(body)


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


COMMENTS = {"curl": "#", "javascript": "//", "python": "#"}


# --- executions ---------------------------------------------------------------------


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return EXECUTIONS_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= EXECUTIONS_MAX:
        raise BadRequest(f"limit = {raw!r} is not allowed: an integer from 1 to {EXECUTIONS_MAX}")
    return int(raw)


STATUSES = ("ok", "error", "timeout", "oom", "crashed", "rejected")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _status(request: web.Request) -> str | None:
    raw = request.query.get("status") or None
    if raw is not None and raw not in STATUSES:
        raise BadRequest(f"status = {raw!r} is not allowed: one of {', '.join(STATUSES)}")
    return raw


def _since(request: web.Request) -> str | None:
    """?since= as the ISO time the records are compared with: a duration back from
    now (30s, 15m, 1h, 2d) or an ISO time as listed."""
    raw = request.query.get("since") or None
    if raw is None:
        return None
    number, unit = raw[:-1], raw[-1:]
    if number.isdigit() and unit in _UNITS:
        return iso_from_unix(time.time() - int(number) * _UNITS[unit])
    if len(raw) >= 10 and raw[:4].isdigit() and raw[4] == "-":
        return raw
    raise BadRequest(
        f"since = {raw!r} is not allowed: a duration such as 1h, 30m, 2d, or an ISO time"
    )


async def list_executions(request: web.Request) -> web.Response:
    lc, limit = lifecycle(request), _limit(request)
    status, since = _status(request), _since(request)
    script = await lc.get(request.match_info["name"])
    before = request.query.get("before") or None
    rows = await lc.ctx.db(lc.ctx.store.list_executions, script.id, limit, before, status, since)
    items = []
    for row in rows:  # the list stays light: results, logs and details are on the record
        item = row.to_json(script.name)
        del item["result"], item["logs"], item["details"]
        items.append(item)
    return json_response({"script": script.name, "executions": items})


async def get_execution(request: web.Request) -> web.Response:
    lc, execution_id = lifecycle(request), request.match_info["id"]
    missing = NotFound(f"no execution with id {execution_id!r}")
    row = await lc.ctx.db(lc.ctx.store.get_execution, execution_id)
    if row is None:
        raise missing
    script = await lc.ctx.db(lc.ctx.store.get_script_by_id, row.script_id)
    if script is None:
        raise missing
    return json_response(row.to_json(script.name))


# --- account uploads ----------------------------------------------------------------


async def list_uploads(request: web.Request) -> web.Response:
    files = await asyncio.to_thread(uploads_folder.list_files, request.app[CONFIG].uploads_dir)
    return json_response({"files": [f.to_json() for f in files]})


async def post_upload(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    root, limit = config.uploads_dir, config.max_upload_file_bytes
    name = uploads_folder.file_name(request.headers.get("X-Filename"), quoted=True)
    replace = request.query.get("replace", "") in ("1", "true", "yes")
    too_large = f"the file is larger than the upload limit of {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(too_large)
    temporary, sink = await asyncio.to_thread(uploads_folder.open_temporary, root)
    try:
        with sink:
            size, buffer = 0, bytearray()
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(too_large)
                buffer += chunk
                if len(buffer) >= CHUNK:  # one thread hop per MiB, not per read
                    await asyncio.to_thread(sink.write, bytes(buffer))
                    buffer.clear()
            await asyncio.to_thread(sink.write, bytes(buffer))
        stored = await asyncio.to_thread(
            uploads_folder.commit, temporary, root, name, replace, config.max_upload_total_bytes
        )
    except BaseException:
        await asyncio.to_thread(uploads_folder.abandon, temporary)
        raise
    return json_response(stored.to_json(), 201)


async def delete_upload(request: web.Request) -> web.Response:
    name = uploads_folder.file_name(request.match_info["filename"])
    await asyncio.to_thread(uploads_folder.delete_file, request.app[CONFIG].uploads_dir, name)
    return json_response({"deleted": name})


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/scripts/{name}/keys", create_key,
          "Create an API key ({name}? default 'Secret Key'); the whole key is shown only here",
          "KeyInput", "NewKey", 201),
    Route("GET", "/v1/scripts/{name}/keys", list_keys, "A script's API keys (never the secret)",
          None, "KeyList", query=("search",)),
    Route("DELETE", "/v1/scripts/{name}/keys/{key_name}", delete_key,
          "Delete an API key; it is refused at once", None, "KeyDeleted"),
    Route("GET", "/v1/scripts/{name}/endpoint", get_endpoint,
          "Endpoint snippets (cURL, JavaScript, Python) per function; only while Deployed",
          None, "Endpoint", query=("format",)),
    Route("GET", "/v1/scripts/{name}/executions", list_executions,
          "A script's execution records, newest first (no results, logs or details)", None,
          "ExecutionList", query=("limit", "before", "status", "since")),
    Route("GET", "/v1/executions/{id}", get_execution, "One execution record", None,
          "Execution"),
    Route("GET", "/v1/uploads", list_uploads,
          "The account's files (UPLOADS_DIR, read-only in every replica)", None, "FileList"),
    Route("POST", "/v1/uploads", post_upload,
          "Upload an account file (raw body, X-Filename; ?replace=1 overwrites)", "binary",
          "File", 201, query=("replace",)),
    Route("DELETE", "/v1/uploads/{filename}", delete_upload, "Delete an account file", None,
          "Deleted"),
)  # fmt: skip
