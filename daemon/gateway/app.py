"""The public HTTP gateway on `gateway.listen`: call a deployed script's function.

    POST /v1/scripts/{script}/functions/{function}   Authorization: Bearer <key>
         body: a JSON object -> 200 {"result": ...}
    POST /v1/scripts/{script}/run                     a code step (daemon/gateway/step_route.py)
    PUT  /v1/uploads/{filename}                       (daemon/gateway/uploads_route.py)
    GET  /healthz
    GET  /openapi.json                                this API (daemon/gateway/openapi.py)
    GET  /v1/scripts/{script}/openapi.json            one script's (script_openapi.py)

Checks, in this order, each cheaper than the next: the script serves (one dict
lookup in `Routes`; otherwise the store says 404 unknown script or 503 not
deployed), the API key (`KeyChecker`: 401, 429 throttled), the key belongs to the
URL's script (403), the body (413 too large, 400 not a JSON object), then the
dispatcher (404 unknown function, 429 queue full, 503, 504 timeout, 422 the
function raised, 502 out of memory / worker crashed). Errors are
`{"error": {"type", "message", ...}}`.

Every call that got past the key check has an execution id, returned in the
`X-Scriptd-Execution-Id` header and recorded (daemon/gateway/recorder.py) with status
ok / error / timeout / oom / crashed / rejected. Calls refused before that (no
script, not deployed, bad or foreign key) are not recorded: an unauthenticated
client must not be able to fill the store.

The key-failure throttle is keyed on the client's address: the peer's, or the one a
trusted proxy names (daemon/gateway/client_address.py).

The hot path holds no SQLite, no thread hop for a cached key and no logging.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from daemon.core import log_context
from daemon.core.models import DEPLOYED
from daemon.gateway.client_address import Network, TrustedProxies
from daemon.gateway.openapi import EXECUTION_HEADER, ROUTES, known_paths, openapi_document
from daemon.gateway.recorder import Call, ExecutionRecorder
from daemon.gateway.script_openapi import ScriptDocuments
from daemon.gateway.serving_table import Routes
from daemon.keys.checker import KeyChecker, KeyOk, KeyRefused
from daemon.serving.call_errors import CallError, FunctionError, OutOfMemory
from daemon.serving.dispatcher import CallResult
from daemon.serving.replica_runner import ServingVersion
from daemon.serving.target import RunTarget
from daemon.store.database import Store

__all__ = ["EXECUTION_HEADER", "Gateway", "make_gateway"]

JSON = "application/json"
QUEUE_RETRY_AFTER_S = 1


def error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps({"error": {"type": kind, "message": message}})
    return web.Response(body=body, status=status, headers={"Content-Type": JSON, **(headers or {})})


# Statuses of a call whose worker was killed or died: its connections go with it.
KILLED = frozenset({"timeout", "oom", "crashed"})


class Gateway:
    """The state behind the gateway's handlers."""

    def __init__(
        self,
        routes: Routes,
        keys: KeyChecker,
        store: Store,
        recorder: ExecutionRecorder,
        max_body_bytes: int,
        trusted_proxies: tuple[Network, ...] = (),
        http_logs: Callable[[str, int | None], dict[str, Any] | None] | None = None,
        close_connections: Callable[[str, int | None], None] | None = None,
    ) -> None:
        self.routes = routes
        self.keys = keys
        self.store = store
        self.recorder = recorder
        self.max_body_bytes = max_body_bytes
        self.proxies = TrustedProxies(trusted_proxies)  # whose address a call is
        # (replica, worker's egress lane) -> the HTTP log that worker gathered since it
        # was last asked (daemon/egress)
        self.http_logs = http_logs
        # (replica, lane) -> end the worker's outbound connections (a killed worker's
        # must not linger)
        self.close_connections = close_connections
        # Execution ids: unique across restarts (start time and randomness), cheap per call.
        self._prefix = f"{int(time.time()):x}{secrets.token_hex(3)}-"
        self._ids = itertools.count(1)
        self.documents = ScriptDocuments()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"ok":true}', headers={"Content-Type": JSON})

    async def script_openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of the URL's script, for a key of that script."""
        admitted = await self.admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        body = await self.documents.document(admitted[0].target)
        return web.Response(body=body, headers={"Content-Type": JSON})

    async def call(self, request: web.Request) -> web.Response:
        admitted = await self.admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        return await self.dispatch(request, *admitted)

    async def admit(self, request: web.Request) -> tuple[ServingVersion, str] | web.Response:
        """(what serves the URL's script, the key's name), or the refusal: not
        serving (404/503), no or bad key (401/429), another script's key (403)."""
        name = request.match_info["script"]
        serving = self.routes.serving(name)
        if serving is None:
            return await self.not_serving(name)
        check = await self.keys.check(request.headers.get("Authorization"), self.client(request))
        if type(check) is not KeyOk:
            return refusal(check)  # type: ignore[arg-type]
        if check.script != name:
            return error_response(
                403, "forbidden", f"this API key belongs to another script, not {name!r}"
            )
        return serving, check.key_name

    async def read_body(self, request: web.Request, record: Call) -> bytes | web.Response:
        """The body within gateway.max_body_bytes, or the 413 (recorded)."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self.reject(record, 413, "payload_too_large", self._too_large())
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self.reject(record, 413, "payload_too_large", self._too_large())
        record.input_bytes = len(raw)
        return raw

    def client(self, request: web.Request) -> str | None:
        """The caller's address, for the key-failure throttle."""
        headers = request.headers
        return self.proxies.client(request.remote, lambda: headers.getall("X-Forwarded-For", ()))

    async def dispatch(
        self, request: web.Request, serving: ServingVersion, key: str
    ) -> web.Response:
        function = request.match_info["function"]
        record = self.new_record(serving.target, function, key)
        # An unknown function is named before the body is read or judged.
        unknown = self.unknown_function(record, serving, function)
        if unknown is not None:
            return unknown
        raw = await self.read_body(request, record)
        if isinstance(raw, web.Response):
            return raw
        return await self.dispatch_body(record, serving, function, raw)

    def unknown_function(
        self, record: Call, serving: ServingVersion, function: str
    ) -> web.Response | None:
        """The 404 (recorded) of a function the serving version does not have."""
        known = serving.dispatcher.functions
        if known is None or function in known:
            return None
        message = f"script {serving.target.script!r} has no function {function!r}"
        return self.reject(record, 404, "not_found", message)

    async def dispatch_body(
        self, record: Call, serving: ServingVersion, function: str, raw: bytes
    ) -> web.Response:
        """Call `function` with the request body `raw`, read within the limit already."""
        dispatcher, cid = serving.dispatcher, record.id
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self.reject(record, 400, "bad_request", f"the body is not valid JSON: {exc}")
        if type(payload) is not dict:
            return self.reject(record, 400, "bad_request", "the body must be a JSON object")
        self.keep_inputs(record, raw)
        try:
            result = await dispatcher.call(function, payload_json=raw, call_id=cid)
        except CallError as exc:
            return self.failed(record, exc)
        body = self.record_answer(record, result)
        return web.Response(body=body, headers={"Content-Type": JSON, EXECUTION_HEADER: cid})

    # --- the execution record of a call: one implementation for both HTTP fronts ---
    def new_id(self) -> str:
        """A fresh execution id (of a call, or of an asynchronous call)."""
        return f"{self._prefix}{next(self._ids):x}"

    def new_record(
        self, target: RunTarget, function: str, key: str | None, bind: bool = True
    ) -> Call:
        """A call's record, "rejected" until it is answered; its id is the call's.
        `bind`: the caller is the call's own task, and what it logs names the call
        (daemon/core/log_context.py)."""
        cid = f"{self._prefix}{next(self._ids):x}"
        record = Call(cid, target.script_id, target.version, function, key, "rejected",
                      time.time(), None, None, None, 0)  # fmt: skip
        record.secrets = target.secret_values  # masked in what is recorded
        record.script = target.script
        if bind:
            log_context.bind(script=target.script, version=target.version, execution_id=cid)
        return record

    def keep_inputs(self, record: Call, inputs_json: bytes) -> None:
        """The record's details start with the call's inputs (a function's payload)."""
        self.recorder.keep_inputs(record, orjson.Fragment(inputs_json), len(inputs_json))

    def record_answer(self, record: Call, result: CallResult) -> bytes:
        """Record a call that returned; the answer's body."""
        body = orjson.dumps({"result": result.value})
        self.record_result(record, result, body)
        return body

    def record_result(self, record: Call, result: CallResult, body: bytes) -> None:
        """Record a call that returned, answered with `body` ({"result": ...}): the
        front calls it after it wrote the answer, so the record is not in its latency."""
        value = result.value
        record.status = "ok"
        record.queue_ms, record.run_ms = result.queue_ms, result.run_ms
        record.cpu_ms = result.cpu_ms
        record.peak_memory_bytes = result.frame.get("peak_memory_bytes")
        if value is not None:  # its JSON is the answer's, between {"result": and }
            self.recorder.keep_result(record, orjson.Fragment(body[10:-1]), len(body) - 11)
        record.stdout, record.stderr = result.stdout, result.stderr
        record.http_log = self.http_log(result.replica, result.egress_lane, result.shared)
        self.recorder.record(record)

    def record_refusal(self, record: Call, kind: str, message: str) -> None:
        """Record a call refused before it reached a worker."""
        record.error = {"type": kind, "message": message}
        self.recorder.record(record)

    def record_failure(self, record: Call, exc: CallError) -> dict[str, Any]:
        """Record a call that failed (and end a killed worker's outbound connections);
        the answer's JSON document."""
        record.status = exc.status
        record.queue_ms, record.run_ms = exc.queue_ms, exc.run_ms
        doc: dict[str, Any] = exc.to_json()
        error = dict(doc["error"])
        record.stdout = str(error.pop("stdout", "") or "")
        record.stderr = str(error.pop("stderr", "") or "")
        record.error = error
        if isinstance(exc, FunctionError):
            record.cpu_ms = exc.frame.get("cpu_ms")
            record.peak_memory_bytes = exc.frame.get("peak_memory_bytes")
        elif isinstance(exc, OutOfMemory):
            record.peak_memory_bytes = exc.extra.get("memory_limit_bytes")
        if exc.status in KILLED and self.close_connections and exc.replica is not None:
            self.close_connections(exc.replica, exc.egress_lane)
        record.http_log = self.http_log(exc.replica, exc.egress_lane, exc.shared)
        self.recorder.record(record)
        return doc

    def http_log(
        self, replica: str | None, lane: int | None = None, shared: bool = False
    ) -> dict[str, Any] | None:
        """The outbound HTTP log the worker (of `replica`, on egress `lane`) gathered
        since it was last asked; `shared`: other calls ran on that worker meanwhile
        (concurrency > 1), so some of its requests may be theirs, and it says so."""
        if self.http_logs is None or replica is None:
            return None
        log = self.http_logs(replica, lane)
        if shared and log is not None:
            log["shared"] = True
        return log

    def _too_large(self) -> str:
        return f"the body is larger than {self.max_body_bytes} bytes (gateway.max_body_bytes)"

    def reject(self, record: Call, status: int, kind: str, message: str) -> web.Response:
        self.record_refusal(record, kind, message)
        return error_response(status, kind, message, {EXECUTION_HEADER: record.id})

    def failed(self, record: Call, exc: CallError) -> web.Response:
        doc = self.record_failure(record, exc)
        headers = {"Content-Type": JSON, EXECUTION_HEADER: record.id}
        if exc.http_status == 429:
            headers["Retry-After"] = str(QUEUE_RETRY_AFTER_S)
        return web.Response(body=orjson.dumps(doc), status=exc.http_status, headers=headers)

    async def not_serving(self, name: str) -> web.Response:
        """404 or 503: the slow path of a script without serving replicas."""
        script = await asyncio.to_thread(self.store.get_script, name)
        if script is None:
            return error_response(404, "not_found", f"no script named {name!r}")
        if script.status == DEPLOYED:
            why = "its replicas are not running"
        else:
            why = f"it is {script.status}"
        return error_response(503, "not_deployed", f"script {name!r} does not take calls: {why}")


_KNOWN = known_paths(ROUTES)


async def no_route(request: web.Request) -> web.Response:
    """Every other request: 405 on a known path, else 404, as JSON like every error."""
    path = request.path
    for method, start, middle in _KNOWN:
        if path.startswith(start) and middle in path:
            return error_response(
                405, "method_not_allowed", f"{path} takes {method}", {"Allow": method}
            )
    return error_response(404, "not_found", f"no route {request.method} {path}")


def refusal(check: KeyRefused) -> web.Response:
    """401 (with the scheme to use, RFC 6750) or 429 throttled (with when to retry)."""
    if check.status == 429:
        retry = {"Retry-After": str(max(1, math.ceil(check.retry_after)))}
        return error_response(429, "throttled", check.message, retry)
    return error_response(401, "unauthorized", check.message, {"WWW-Authenticate": "Bearer"})


GATEWAY = web.AppKey("gateway", Gateway)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_gateway(
    gateway: Gateway, uploads: Any = None, steps: Any = None, async_routes: Any = None
) -> web.Application:
    """The aiohttp app, its routes taken from the table of daemon/gateway/openapi.py.
    `uploads` is the account uploads handler (uploads_route.py), `steps` the code
    steps' run route (step_route.py), `async_routes` the asynchronous calls'
    (async_routes.py: it wraps the two call routes and serves /v1/executions/{id});
    without them their routes are not served."""
    # read() stops at the body limit; uploads stream past it on their own route.
    app = web.Application(client_max_size=gateway.max_body_bytes)
    app[GATEWAY] = gateway
    run = steps.run if steps is not None else None
    handlers: dict[str, Handler | None] = {
        "healthz": gateway.healthz,
        "call": gateway.call,
        "script_openapi": gateway.script_openapi,
        "run": run,
        "upload": uploads.put if uploads is not None else None,
        "execution": None,
        "cancel_execution": None,
    }
    if async_routes is not None:
        handlers.update(call=async_routes.call, execution=async_routes.get,
                        cancel_execution=async_routes.delete)  # fmt: skip
        handlers["run"] = async_routes.run if run is not None else None
    served = tuple(route for route in ROUTES if route.operation == "openapi"
                   or handlers[route.operation] is not None)  # fmt: skip
    document = orjson.dumps(openapi_document(served))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, headers={"Content-Type": JSON})

    handlers["openapi"] = openapi
    for route in served:
        handler = handlers[route.operation]
        assert handler is not None
        if route.method == "GET":
            app.router.add_get(route.path, handler)  # and HEAD
        else:
            app.router.add_route(route.method, route.path, handler)
    app.router.add_route("*", "/{tail:.*}", no_route)  # last: only what nothing else took
    return app
