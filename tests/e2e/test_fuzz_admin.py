"""schemathesis against the admin API of a real daemon over its unix socket: no 5xx,
and every answer conforms to the admin API's own /openapi.json. The daemon is this
module's own (destructive calls, DELETE among them, reach nothing else), with a
script and a key, so that the lists it answers are not empty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fuzzing import fuzz, undeclared_methods, unix_session
from tests.helpers import DaemonProcess, create_key, running_daemon

BUDGET_S = 10
EXAMPLES = 4


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(Path(tmp_path_factory.mktemp("fuzz-admin"))) as d:
        admin = d.client()
        admin.create("demo")
        create_key(admin, "demo")
        yield d


def _left_out(case: Any) -> bool:
    """Examples that would hold the socket past the budget (a log that follows), and
    bodies that break a rule the document cannot say in JSON Schema (its
    input_schemas.py lists them; each is a 400 that names it)."""
    if case.query and str(case.query.get("follow", "")).lower() in ("true", "1"):
        return True
    body = case.body if isinstance(case.body, dict) else {}
    env = body.get("env") if isinstance(body.get("env"), list) else []
    keys = [e.get("key") for e in env if isinstance(e, dict)]
    secrets = body.get("secrets") if isinstance(body.get("secrets"), list) else []
    replicas = body.get("min_replicas"), body.get("max_replicas")
    egress = body.get("egress") if isinstance(body.get("egress"), dict) else {}
    name = body.get("name")
    return (
        len(set(keys)) < len(keys)  # a key twice
        or bool(set(keys) & set(secrets))  # an env key that is a granted secret too
        or (all(isinstance(r, int) for r in replicas) and replicas[0] > replicas[1])  # type: ignore[operator]
        or (egress.get("policy") == "allowlist" and not egress.get("allow_hosts"))
        or ("language" in body and "archive_id" not in body)  # a new language, same archive
        or (isinstance(name, str) and "keys" in case.path and not name.strip().isprintable())
    )


def test_fuzz_the_admin_api(daemon: DaemonProcess) -> None:
    document = daemon.client().get("/openapi.json")
    with unix_session(str(daemon.socket)) as session:
        run = fuzz(document, session, "http://localhost", max_examples=EXAMPLES,
                   budget_s=BUDGET_S, skip=_left_out)  # fmt: skip
        refused = undeclared_methods(document, session, "http://localhost")
    print(f"admin fuzz: {run.requests} requests in {run.seconds:.1f} s, "
          f"{len(run.cut)} operations cut short by the budget")  # fmt: skip
    assert not run.failures, "\n\n".join(run.failures)
    assert not refused, "\n".join(refused)
    assert daemon.answers(), f"the daemon stopped answering:\n{daemon.log()[-4000:]}"
