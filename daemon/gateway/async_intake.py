"""Accepting an asynchronous call: `Prefer: respond-async` on a function's call or a
code step's run. One implementation for both HTTP fronts (daemon/gateway/calls.py and
the aiohttp app): each reads the request its own way, then hands the body and the
headers to `AsyncIntake.accept` and turns the `Reply` into its own answer object.

    202  {"execution_id", "status": "queued"}
         Location: /v1/executions/{id}, X-Scriptd-Execution-Id, Preference-Applied

The checks a synchronous call makes before it reaches a worker are made here too
(404 unknown function or not a step, 413, 400 not a JSON object or bad inputs), plus
the two headers of async calls: `Idempotency-Key` (1-255 visible ASCII characters;
a key used again by the same script within `async.idempotency_window_s` answers the
first call's id and status, `Idempotent-Replayed: true`) and `X-Callback-Url` (an
absolute http or https URL; whether the script's egress policy lets it through is
checked when the result is POSTed to it, and recorded with the call). A refused
request is not queued and leaves no record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from yarl import URL

from daemon.config.daemon_config import Config
from daemon.core.async_calls import NewAsyncCall
from daemon.gateway.app import EXECUTION_HEADER, JSON, Gateway
from daemon.gateway.step_calls import STEP_FUNCTION, inputs_json, not_a_step
from daemon.serving.replica_runner import ServingVersion

__all__ = ["AsyncIntake", "Reply", "wants_async"]

PREFER_ASYNC = "respond-async"
MAX_IDEMPOTENCY_KEY = 255
MAX_CALLBACK_URL = 2048

Headers = tuple[tuple[str, str], ...]


def wants_async(prefer: str | None) -> bool:
    """The Prefer header (RFC 7240) asks for an asynchronous answer."""
    if not prefer:
        return False
    return any(part.split(";", 1)[0].strip().lower() == PREFER_ASYNC for part in prefer.split(","))


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer either front can write: status, JSON body and extra headers."""

    status: int
    body: bytes
    headers: Headers = ()


def _error(status: int, kind: str, message: str) -> Reply:
    return Reply(status, orjson.dumps({"error": {"type": kind, "message": message}}),
                 (("Content-Type", JSON),))  # fmt: skip


class AsyncIntake:
    """Queues accepted calls in the store and wakes the worker loop."""

    def __init__(
        self, gateway: Gateway, config: Config, clock: Callable[[], float] = time.time
    ) -> None:
        self.gateway = gateway
        self.window_ms = int(config.async_idempotency_window_s * 1000)
        self.clock = clock
        self.wake: Callable[[], None] = lambda: None  # the worker loop sets it

    async def accept(
        self,
        serving: ServingVersion,
        function: str | None,
        key: str,
        body: bytes | None,
        idempotency_key: str | None,
        callback_url: str | None,
        details: bool = False,
    ) -> Reply:
        """Check the call as a synchronous one would be, then queue it (`function`
        None: a code step's run)."""
        refused = self._check(serving, function, body, idempotency_key, callback_url)
        if refused is not None:
            return refused
        assert body is not None
        target = serving.target
        settings = target.async_calls
        new = NewAsyncCall(
            id=self.gateway.new_id(), script_id=target.script_id,
            function=function or STEP_FUNCTION, key_name=key, body=body, details=details,
            idempotency_key=idempotency_key, callback_url=callback_url,
            max_retries=settings.retries, max_age_ms=settings.max_event_age_s * 1000,
            received_ms=int(self.clock() * 1000),
        )  # fmt: skip
        store = self.gateway.store
        call, created = await asyncio.to_thread(store.enqueue_async_call, new, self.window_ms)
        if created:
            self.wake()
        headers: Headers = (
            ("Content-Type", JSON),
            ("Location", f"/v1/executions/{call.id}"),
            (EXECUTION_HEADER, call.id),
            ("Preference-Applied", PREFER_ASYNC),
        )
        if not created:
            headers = (*headers, ("Idempotent-Replayed", "true"))
        return Reply(202, orjson.dumps({"execution_id": call.id, "status": call.status}), headers)

    def _check(
        self,
        serving: ServingVersion,
        function: str | None,
        body: bytes | None,
        idempotency_key: str | None,
        callback_url: str | None,
    ) -> Reply | None:
        target = serving.target
        if function is None:
            why = not_a_step(target)
            if why is not None:
                return _error(404, "not_found", why)
        else:
            known = serving.dispatcher.functions
            if known is not None and function not in known:
                message = f"script {target.script!r} has no function {function!r}"
                return _error(404, "not_found", message)
        if body is None:
            return _error(413, "payload_too_large", self.gateway._too_large())
        why = _body_problem(body) if function is not None else _inputs_problem(body)
        if why is None:
            why = _idempotency_problem(idempotency_key) or _callback_problem(callback_url)
        return None if why is None else _error(400, "bad_request", why)


def _body_problem(body: bytes) -> str | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"the body is not valid JSON: {exc}"
    return None if type(payload) is dict else "the body must be a JSON object"


def _inputs_problem(body: bytes) -> str | None:
    checked = inputs_json(body)
    return checked if isinstance(checked, str) else None


def _idempotency_problem(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in key):
        return f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
    return None


def _callback_problem(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parsed = URL(url)
    except ValueError:
        parsed = None
    if (
        parsed is None
        or len(url) > MAX_CALLBACK_URL
        or parsed.scheme not in ("http", "https")
        or not parsed.host
    ):
        return f"X-Callback-Url must be an absolute http:// or https:// URL (at most "\
               f"{MAX_CALLBACK_URL} characters), not {url[:100]!r}"  # fmt: skip
    return None
