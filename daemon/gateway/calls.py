"""The gateway's call routes on the lean front (daemon/gateway/front.py).

Answers exactly what the aiohttp gateway (daemon/gateway/app.py) answers, status, body
and headers, for every request the front takes (tests/daemon/gateway/test_front_diff.py
compares the two):

    POST /v1/scripts/{script}/functions/{function}   the call
    POST /v1/scripts/{script}/run                     a code step (step_calls.py)
    either with Prefer: respond-async                an asynchronous call (async_intake.py)
    GET|HEAD /healthz
    .../openapi.json and below /v1/uploads/          handed to the aiohttp app (bridge.py)
    anything else                                    405 on a known path, else 404

and uses the same state: the `Gateway`'s routes table, key checker, recorder and
limits. Per call it does the aiohttp handler's checks in the same order (the serving
version, target and dispatcher in one lookup; the key; the key's script; the function;
the body) with nothing between them: no request object, no header multidict, no URL
object on the common path.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from daemon.core.models import DEPLOYED
from daemon.gateway.app import _KNOWN, EXECUTION_HEADER, QUEUE_RETRY_AFTER_S, Gateway
from daemon.gateway.async_intake import AsyncIntake, wants_async
from daemon.gateway.bridge import AiohttpBridge
from daemon.gateway.call_paths import Targets, wants_details_of
from daemon.gateway.front_types import (
    JSON,
    Answer,
    AnswerWriter,
    BodySink,
    Request,
    Respond,
    error_answer,
)
from daemon.gateway.recorder import Call
from daemon.gateway.step_calls import (
    STEP_FUNCTION,
    StepRefusal,
    not_a_step,
    run_step,
)
from daemon.keys.checker import KeyOk, KeyRefused
from daemon.serving.call_errors import CallError
from daemon.serving.dispatcher import CallResult
from daemon.serving.replica_runner import ServingVersion

__all__ = ["FrontCalls"]

log = logging.getLogger(__name__)

_HEALTHZ = Answer(200, b'{"ok":true}', (("Content-Type", JSON),))
_CT = ("Content-Type", JSON)


class FrontCalls:
    """The front's App: routes a request, runs the call path of `gateway`."""

    def __init__(
        self,
        gateway: Gateway,
        fallback: AiohttpBridge | None = None,
        intake: AsyncIntake | None = None,
    ) -> None:
        self.gateway = gateway
        self.fallback = fallback  # aiohttp for /v1/uploads/... and /v1/executions/...
        self.intake = intake  # Prefer: respond-async (None: every call is synchronous)
        self.max_body_bytes = gateway.max_body_bytes
        self.targets = Targets()  # each request target's reading, once per target text
        self._loop = asyncio.get_running_loop()

    def bridge(self, request: Request, out: Callable[[], AnswerWriter]) -> BodySink | None:
        if self.fallback is None or not self.targets.of(request).bridged:
            return None  # the call routes and /healthz: the front's own
        return self.fallback.open(request, out())

    def handle(self, request: Request, respond: Respond) -> Answer | None:
        target = self.targets.of(request)
        path_safe = target.path_safe
        if path_safe is None:
            return error_answer(400, "bad_request", "malformed HTTP request: invalid URL")
        method = request.method
        if method == "POST":
            route = target.route
            if route is not None:
                name, function = route
                if function is not None:
                    return self.call_now(request, name, function, respond)
                self._run(self.call(request, name, None), respond)
                return None
        elif path_safe == "/healthz" and method in ("GET", "HEAD"):
            return _HEALTHZ
        return no_route(method, target.path)

    def _run(self, coro: Coroutine[Any, Any, Answer], respond: Respond) -> None:
        """The slow paths: a task of their own, answered when it ends."""
        task = self._loop.create_task(coro)
        task.add_done_callback(lambda done: respond(_task_answer(done)))

    def call_now(
        self, request: Request, name: str, function: str, respond: Respond
    ) -> Answer | None:
        """A function's call on the hot path: with a cached key and no Prefer header,
        every check runs here at once, with no coroutine around them, and the
        dispatcher calls back with the answer: no task at all (nothing of the call's
        is logged here, so no log context is bound). Anything else takes `call`, the
        same checks awaited."""
        gateway, watched = self.gateway, request.watched
        serving = gateway.routes.serving(name)
        authorization = watched.get(b"authorization")
        check = None
        if serving is not None and authorization is not None and b"prefer" not in watched:
            check = gateway.keys.cached(authorization)
        if check is None:
            self._run(self.call(request, name, function), respond)
            return None
        assert serving is not None
        if check.script != name:
            return error_answer(
                403, "forbidden", f"this API key belongs to another script, not {name!r}"
            )
        record = gateway.new_record(serving.target, function, check.key_name, bind=False)
        body = self.checked_body(request, serving, record)
        if isinstance(body, Answer):
            return body
        try:  # no task: the dispatcher calls back with the answer
            serving.dispatcher.submit(
                function,
                lambda outcome: self.answer_then_record(record, outcome, respond),
                payload_json=body,
                call_id=record.id,
            )
        except CallError as exc:  # refused before it was queued
            return self.failed(record, exc)
        return None

    async def call(self, request: Request, name: str, function: str | None) -> Answer:
        """A function's call, or with `function` None a code step's run."""
        gateway = self.gateway
        serving = gateway.routes.serving(name)
        if serving is None:
            return await self.not_serving(name)
        check = await gateway.keys.check(request.header(b"authorization"), self.client(request))
        if type(check) is not KeyOk:
            return refusal(check)  # type: ignore[arg-type]
        if check.script != name:
            return error_answer(
                403, "forbidden", f"this API key belongs to another script, not {name!r}"
            )
        # Without a Prefer header this costs one dict lookup.
        if (
            b"prefer" in request.watched
            and self.intake is not None
            and wants_async(request.header(b"prefer"))
        ):
            return await self.accept_async(request, serving, function, check.key_name)
        if function is None:
            return await self.run_step(request, serving, check.key_name)
        return await self.dispatch(request, serving, function, check.key_name)

    async def accept_async(
        self, request: Request, serving: ServingVersion, function: str | None, key: str
    ) -> Answer:
        assert self.intake is not None
        raw = request.body
        reply = await self.intake.accept(
            serving, function, key, None if raw is None else bytes(raw),
            request.header(b"idempotency-key"), request.header(b"x-callback-url"),
            wants_details_of(request),
        )  # fmt: skip
        return Answer(reply.status, reply.body, reply.headers)

    def client(self, request: Request) -> str | None:
        """The caller's address, for the key-failure throttle (as Gateway.client)."""
        return self.gateway.proxies.client(
            request.peer, lambda: request.header_all(b"x-forwarded-for")
        )

    async def dispatch(
        self, request: Request, serving: ServingVersion, function: str, key: str
    ) -> Answer:
        record = self.gateway.new_record(serving.target, function, key)
        body = self.checked_body(request, serving, record)
        if isinstance(body, Answer):
            return body
        try:
            result = await serving.dispatcher.call(function, payload_json=body, call_id=record.id)
        except CallError as exc:
            return self.failed(record, exc)
        return Answer(200, self.gateway.record_answer(record, result),
                      (_CT, (EXECUTION_HEADER, record.id)))  # fmt: skip

    def checked_body(
        self, request: Request, serving: ServingVersion, record: Call
    ) -> bytes | Answer:
        """The call's body, a JSON object, kept in its record's inputs; or the refusal
        (recorded): an unknown function (named before the body is judged), a body too
        large, not JSON, not an object."""
        gateway, function = self.gateway, record.function
        known = serving.dispatcher.functions
        if known is not None and function not in known:
            message = f"script {serving.target.script!r} has no function {function!r}"
            return self.reject(record, 404, "not_found", message)
        raw = request.body
        if raw is None:
            return self.reject(record, 413, "payload_too_large", gateway._too_large())
        body = bytes(raw)
        record.input_bytes = len(body)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self.reject(record, 400, "bad_request", f"the body is not valid JSON: {exc}")
        if type(payload) is not dict:
            return self.reject(record, 400, "bad_request", "the body must be a JSON object")
        gateway.keep_inputs(record, body)
        return body

    def answer_then_record(
        self, record: Call, outcome: CallResult | CallError, respond: Respond
    ) -> None:
        """Answer a call the dispatcher ended, then record it: the record, its metrics
        and its http log are built after the answer is written (the same values: the
        call's times were all taken before), so they are not in the call's latency.
        A failure is recorded first (its answer is the recorded document)."""
        if isinstance(outcome, CallError):
            respond(self.failed(record, outcome))
            return
        try:
            body = orjson.dumps({"result": outcome.value})
        except Exception:
            log.exception("answering call %s failed", record.id)
            respond(error_answer(500, "internal", "the gateway failed to answer"))
            return
        respond(Answer(200, body, (_CT, (EXECUTION_HEADER, record.id))))
        try:
            self.gateway.record_result(record, outcome, body)
        except Exception:
            log.exception("recording call %s failed", record.id)

    async def run_step(self, request: Request, serving: ServingVersion, key: str) -> Answer:
        """A code step's run, as daemon/gateway/step_route.py answers it."""
        gateway = self.gateway
        record = gateway.new_record(serving.target, STEP_FUNCTION, key)
        why = not_a_step(serving.target)
        if why is not None:
            return self.reject(record, 404, "not_found", why)
        raw = request.body
        if raw is None:
            return self.reject(record, 413, "payload_too_large", gateway._too_large())
        body = bytes(raw)
        record.input_bytes = len(body)
        outcome = await run_step(gateway, serving, record, body, wants_details_of(request))
        if isinstance(outcome, StepRefusal):
            return self.reject(record, outcome.status, outcome.kind, outcome.message)
        if isinstance(outcome, CallError):
            return self.failed(record, outcome)
        return Answer(outcome.status, outcome.body, (_CT, (EXECUTION_HEADER, record.id)))

    def reject(self, record: Call, status: int, kind: str, message: str) -> Answer:
        self.gateway.record_refusal(record, kind, message)
        return error_answer(status, kind, message, (EXECUTION_HEADER, record.id))

    def failed(self, record: Call, exc: CallError) -> Answer:
        doc = self.gateway.record_failure(record, exc)
        headers: tuple[tuple[str, str], ...] = (_CT, (EXECUTION_HEADER, record.id))
        if exc.http_status == 429:
            headers = (*headers, ("Retry-After", str(QUEUE_RETRY_AFTER_S)))
        return Answer(exc.http_status, orjson.dumps(doc), headers)

    async def not_serving(self, name: str) -> Answer:
        script = await asyncio.to_thread(self.gateway.store.get_script, name)
        if script is None:
            return error_answer(404, "not_found", f"no script named {name!r}")
        why = (
            "its replicas are not running"
            if script.status == DEPLOYED
            else f"it is {script.status}"
        )
        return error_answer(503, "not_deployed", f"script {name!r} does not take calls: {why}")


def refusal(check: KeyRefused) -> Answer:
    if check.status == 429:
        retry = ("Retry-After", str(max(1, math.ceil(check.retry_after))))
        return error_answer(429, "throttled", check.message, retry)
    return error_answer(401, "unauthorized", check.message, ("WWW-Authenticate", "Bearer"))


def no_route(method: str, path: str) -> Answer:
    for allowed, start, middle in _KNOWN:
        if path.startswith(start) and middle in path:
            return error_answer(
                405, "method_not_allowed", f"{path} takes {allowed}", ("Allow", allowed)
            )
    return error_answer(404, "not_found", f"no route {method} {path}")


def _task_answer(task: asyncio.Task[Answer]) -> Answer:
    if task.cancelled() or task.exception() is not None:
        return error_answer(500, "internal", "the gateway failed to answer")
    return task.result()
