"""schemathesis against a real daemon: every operation of an OpenAPI document, with
examples generated from its schemas (valid ones, then invalid ones), each answer
checked for no 5xx and for conforming to the document (status, content type,
headers, body).

Bounded for CI: `max_examples` per operation and mode, and a time budget for the
whole run (operations left when it is spent are named in the result, not tried).
The examples are derandomized, so CI runs the same ones every time; set
SCRIPTD_FUZZ_EXAMPLES=N to try N per operation instead, SCRIPTD_FUZZ_BUDGET_S=S for
the time, SCRIPTD_FUZZ_RANDOM=1 to draw new ones, SCRIPTD_FUZZ_VERBOSE=1 to print
each operation's count and time.

The checks: no 5xx; status, content type, headers and body as documented; what
the document allows is accepted (never a 400: schemathesis' positive_data_acceptance)
and what it does not allow is refused (negative_data_rejection); a keyed operation
refuses the request without its key or with a wrong one (ignored_auth, once per
operation); a method a path does not declare answers 405 with Allow
(unsupported_method, `undeclared_methods`). schemathesis' stateful checks
(use_after_free, ensure_resource_availability) need its stateful phase and links
between operations, which these documents do not declare: they are not run.

The admin API is reached over its unix socket through `UnixSocketAdapter`, a
requests adapter (schemathesis sends with a requests session).
"""

from __future__ import annotations

import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,  # what the document allows is taken (never a 400)
    negative_data_rejection,  # what it does not allow is refused (never a 2xx)
]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
POSITIVE_STATUSES = ("2xx", "401", "403", "404", "409", "429", "503")  # never 400 or 5xx
REQUEST_TIMEOUT_S = 30


class _UnixConnection(HTTPConnection):
    def __init__(self, socket_path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)  # type: ignore[arg-type]
        sock.connect(self.socket_path)
        return sock


class _UnixPool(HTTPConnectionPool):
    def __init__(self, socket_path: str) -> None:
        super().__init__("localhost", timeout=REQUEST_TIMEOUT_S)
        self.socket_path = socket_path

    def _new_conn(self) -> HTTPConnection:
        return _UnixConnection(self.socket_path, REQUEST_TIMEOUT_S)


class UnixSocketAdapter(HTTPAdapter):
    """Sends every request of the session it is mounted on to one unix socket."""

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.pool = _UnixPool(socket_path)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> HTTPConnectionPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


def unix_session(socket_path: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://localhost", UnixSocketAdapter(socket_path))
    return session


@dataclass
class FuzzRun:
    """What a run found: one line per failing operation and mode; the operations
    whose share of the time ended before their examples did; how many requests it
    sent and how long it took."""

    failures: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    keys_probed: set[str] = field(default_factory=set)  # operations whose key was checked


def fuzz(
    document: dict[str, Any],
    session: requests.Session,
    base_url: str,
    *,
    max_examples: int,
    budget_s: float,
    headers: Callable[[Any], Mapping[str, str]] | None = None,
    skip: Callable[[Any], bool] | None = None,
    accepted: tuple[str, ...] = (),
    refuses_invalid: bool = True,
) -> FuzzRun:
    """Fuzz every operation of `document`; `headers(case)` adds headers to a request
    (an API key), `skip(case)` leaves a generated example out (one that would hold
    the connection past the budget, or one whose body breaks a rule JSON Schema
    cannot say). Each operation and mode gets an equal share of the time left, and
    at least one example: on a loaded machine every operation is tried, with fewer
    examples. `accepted`: statuses a valid request may also get (a function that
    raises answers 422 to a valid body). `refuses_invalid=False`: invalid examples are
    still sent (no 5xx, answers as documented) but may be taken (a script's own
    document: Python does not check annotations, and neither does the gateway)."""
    run = FuzzRun()
    examples = int(os.environ.get("SCRIPTD_FUZZ_EXAMPLES", max_examples))
    budget_s = float(os.environ.get("SCRIPTD_FUZZ_BUDGET_S", budget_s))
    statuses = [*POSITIVE_STATUSES, *accepted]
    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": statuses}}}
    )
    schema = schemathesis.openapi.from_dict(document, config=config)  # seconds: not counted
    work = [(op.ok(), mode) for op in schema.get_all_operations() for mode in _modes(op.ok())]
    start = time.monotonic()
    for done, (operation, mode) in enumerate(work):
        label = f"{operation.label} ({mode.value})"
        left = start + budget_s - time.monotonic()
        until = time.monotonic() + max(left, 0) / (len(work) - done)
        checks = (
            CHECKS if refuses_invalid else [c for c in CHECKS if c is not negative_data_rejection]
        )
        fuzz_one = _Fuzz(session, base_url, headers, skip, until, run.keys_probed, checks)
        t0 = time.monotonic()
        error = fuzz_one.operation(operation, mode, examples)
        if os.environ.get("SCRIPTD_FUZZ_VERBOSE"):
            print(f"{label}: {fuzz_one.requests} requests in {time.monotonic() - t0:.2f} s")
        run.requests += fuzz_one.requests
        if fuzz_one.out_of_time:
            run.cut.append(label)
        if error is not None:
            run.failures.append(f"{label}: {error}")
    run.seconds = time.monotonic() - start
    return run


def _modes(operation: Any) -> tuple[GenerationMode, ...]:
    """Invalid examples only where there is something to break, a JSON body or a
    query: for a path parameter or a binary body that takes any text there is none,
    and looking for one costs hundreds of rejected draws."""
    raw = operation.definition.raw
    json_body = "application/json" in raw.get("requestBody", {}).get("content", {})
    if json_body or any(p.get("in") == "query" for p in raw.get("parameters", ())):
        return MODES
    return MODES[:1]


WRONG_KEY = "Bearer sk_0000000000000000_wrongwrongwrongwrongwrongwrong"


def undeclared_methods(
    document: dict[str, Any],
    session: requests.Session,
    base_url: str,
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """schemathesis' unsupported_method, for every path at once (its coverage phase,
    which sends these, costs seconds of generation per operation): each method of
    METHODS that a path does not declare answers 405 with the declared ones in Allow.
    Path parameters are "x" (a 405 comes before any lookup)."""
    failures = []
    for path, operations in document["paths"].items():
        declared = {m.upper() for m in operations}
        url = base_url + re.sub(r"\{\w+\}", "x", path)
        for method in sorted(set(METHODS) - declared - ({"HEAD"} if "GET" in declared else set())):
            answer = session.request(method, url, headers=dict(headers or {}),
                                     timeout=REQUEST_TIMEOUT_S)  # fmt: skip
            allow = {m.strip() for m in answer.headers.get("Allow", "").split(",") if m.strip()}
            if answer.status_code != 405 or not declared <= allow:
                failures.append(f"{method} {path}: {answer.status_code}, Allow: {sorted(allow)}, "
                                f"declared {sorted(declared)}")  # fmt: skip
    return failures


class _OutOfTime(Exception):
    """An operation's share of the budget is spent: the examples it had are its run."""


@dataclass
class _Fuzz:
    session: requests.Session
    base_url: str
    headers: Callable[[Any], Mapping[str, str]] | None
    skip: Callable[[Any], bool] | None
    until: float  # monotonic time: no new example after it
    keys_probed: set[str]
    checks: list[Any]
    requests: int = 0
    out_of_time: bool = False

    def operation(self, operation: Any, mode: GenerationMode, examples: int) -> str | None:
        """The first failure of `operation`'s examples in `mode`, or None."""

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure shown
            derandomize=not os.environ.get("SCRIPTD_FUZZ_RANDOM"),
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        def one(case: Any) -> None:
            self.send(case)

        try:
            one()
        except _OutOfTime:
            self.out_of_time = True
        except Unsatisfiable:
            return None  # nothing of it can be made invalid (a path parameter of any text)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is Base
            if isinstance(exc, AssertionError | BaseExceptionGroup):
                return f"{type(exc).__name__}: {exc}"
            # Not a check's failure: where it came from (the fuzzer itself, or the client).
            return "".join(traceback.format_exception(exc)[-12:])
        return None

    def send(self, case: Any) -> None:
        if self.requests and time.monotonic() > self.until:
            raise _OutOfTime
        if self.skip is not None and self.skip(case):
            return
        self.requests += 1
        extra = dict(self.headers(case)) if self.headers is not None else {}
        response = case.call_and_validate(
            session=self.session, base_url=self.base_url, headers=extra, checks=self.checks,
            timeout=REQUEST_TIMEOUT_S,
        )  # fmt: skip
        label = case.operation.label
        if (
            200 <= response.status_code < 300
            and label not in self.keys_probed
            and case.operation.definition.raw.get("security")
        ):
            self.keys_probed.add(label)
            self.refused_without_its_key(case)

    def refused_without_its_key(self, case: Any) -> None:
        """schemathesis' ignored_auth, once per operation: the request that a key
        let through, again without a key and with a wrong one: 401 (or 429, once
        this address has failed too often: the gateway's throttle)."""
        for key in (None, WRONG_KEY):
            extra = {"Authorization": key} if key else {}
            self.requests += 1
            answer = case.call(session=self.session, base_url=self.base_url, headers=extra,
                               timeout=REQUEST_TIMEOUT_S)  # fmt: skip
            assert answer.status_code in (401, 429), (
                f"{case.operation.label} with {'a wrong key' if key else 'no key'} answered "
                f"{answer.status_code}, not 401 (or 429): {answer.text[:300]}\n"
                + case.as_curl_command()
            )
