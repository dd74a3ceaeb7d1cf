"""Admin routes around calling scripts: API keys, endpoint snippets, execution
records and the account's uploaded files.

Handlers are thin like admin_api's: check the request, call
daemon/lifecycle/call_services.py (shared with the web console) or
daemon.store.uploads_folder, shape the answer. Domain errors go to the one
middleware in admin_api.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata

from aiohttp import web

from daemon.admin.async_routes import async_call_json
from daemon.admin.http import CHUNK, CONFIG, body_json, caller, json_response, lifecycle
from daemon.admin.openapi import Route
from daemon.core.errors import BadRequest, PayloadTooLarge
from daemon.gateway.snippets import FORMATS, Format
from daemon.lifecycle import call_services
from daemon.lifecycle.request_checks import check_object
from daemon.lifecycle.staging import store_upload
from daemon.store import uploads_folder
from daemon.store.keys_table import iso_from_unix

__all__ = ["ROUTES"]

EXECUTIONS_DEFAULT = 50
EXECUTIONS_MAX = 1000


# --- API keys -----------------------------------------------------------------------


async def create_key(request: web.Request) -> web.Response:
    body = check_object(await body_json(request), frozenset({"name"}))
    made = await call_services.create_key(
        lifecycle(request), caller(request), request.match_info["name"], body.get("name")
    )
    return json_response({**made.info.to_json(), "script": made.script, "key": made.key}, 201)


async def list_keys(request: web.Request) -> web.Response:
    script, keys = await call_services.list_keys(
        lifecycle(request), request.match_info["name"], request.query.get("search")
    )
    return json_response({"script": script.name, "keys": [k.to_json() for k in keys]})


async def delete_key(request: web.Request) -> web.Response:
    lc, actor, script = lifecycle(request), caller(request), request.match_info["name"]
    name = unicodedata.normalize("NFC", request.match_info["key_name"]).strip()
    script, key_id = await call_services.delete_key(lc, actor, script, name)
    return json_response({"deleted": name, "id": key_id, "script": script})


# --- endpoint -----------------------------------------------------------------------


def _formats(request: web.Request) -> tuple[Format, ...]:
    raw = request.query.get("format")
    if not raw:
        return FORMATS
    wanted = tuple(f for f in FORMATS if f == raw)
    if not wanted:
        raise BadRequest(f"format = {raw!r} is not allowed: one of {', '.join(FORMATS)}")
    return wanted


async def get_endpoint(request: web.Request) -> web.Response:
    formats = _formats(request)
    body = await call_services.endpoint(lifecycle(request), request.match_info["name"], formats)
    return json_response(body)


# --- executions ---------------------------------------------------------------------


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return EXECUTIONS_DEFAULT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= EXECUTIONS_MAX:
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
    if number.isascii() and number.isdigit() and unit in _UNITS:
        return iso_from_unix(time.time() - int(number) * _UNITS[unit])
    if len(raw) >= 10 and raw[:4].isdigit() and raw[4] == "-":
        return raw
    raise BadRequest(
        f"since = {raw!r} is not allowed: a duration such as 1h, 30m, 2d, or an ISO time"
    )


async def list_executions(request: web.Request) -> web.Response:
    lc, limit = lifecycle(request), _limit(request)
    status, since = _status(request), _since(request)
    before = request.query.get("before") or None
    function = request.query.get("function") or None
    script, rows = await call_services.executions(
        lc, request.match_info["name"], limit, before, status, since, function
    )
    items = []
    for row in rows:  # the list stays light: results, logs and details are on the record
        item = row.to_json(script.name)
        del item["result"], item["logs"], item["details"]
        items.append(item)
    return json_response({"script": script.name, "executions": items})


async def get_execution(request: web.Request) -> web.Response:
    lc, execution_id = lifecycle(request), request.match_info["id"]
    call = await lc.ctx.db(lc.ctx.store.get_async_call, execution_id)
    if call is not None:  # an asynchronous call's id
        return async_call_json(call)
    script, row = await call_services.execution(lc, execution_id)
    return json_response(row.to_json(script.name))


# --- account uploads ----------------------------------------------------------------


async def list_uploads(request: web.Request) -> web.Response:
    files = await asyncio.to_thread(uploads_folder.list_files, request.app[CONFIG].uploads_dir)
    return json_response({"files": [f.to_json() for f in files]})


def _replace(request: web.Request) -> bool:
    raw = request.query.get("replace", "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise BadRequest(f"replace = {raw!r} is not allowed: true or false", field="replace")
    return raw in ("true", "1", "yes")


async def post_upload(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    limit = config.max_upload_file_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the file is larger than the upload limit of {limit} bytes")
    replace = _replace(request)
    chunks = request.content.iter_chunked(CHUNK)
    filename = request.headers.get("X-Filename")
    stored = await store_upload(config, filename, chunks, replace, quoted=True)
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
          "ExecutionList", query=("limit", "before", "status", "since", "function")),
    Route("GET", "/v1/executions/{id}", get_execution,
          "One execution record, or an asynchronous call (with async: true)", None,
          "Execution"),
    Route("GET", "/v1/uploads", list_uploads,
          "The account's files (UPLOADS_DIR, read-only in every replica)", None, "FileList"),
    Route("POST", "/v1/uploads", post_upload,
          "Upload an account file (raw body, X-Filename; ?replace=1 overwrites)", "binary",
          "File", 201, query=("replace",)),
    Route("DELETE", "/v1/uploads/{filename}", delete_upload, "Delete an account file", None,
          "Deleted"),
)  # fmt: skip
