"""Asynchronous calls end to end: the real daemon, real sandboxed replicas, the queue in
the store, the worker loop, and callbacks POSTed to a real aiohttp server on the host's
loopback (opened with egress.allowed_networks and egress.ports) whose HMAC signature
the test checks with the script's callback secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import require_root
from tests.e2e.test_metrics import scrape, value
from tests.helpers import (
    REPO,
    TINY_PROFILES,
    DaemonProcess,
    GatewayClient,
    create_key,
    free_port,
    make_zip,
    running_daemon,
)

MAIN = """\
import os
import time


def hello(name="world"):
    return {"message": "hello " + name}


def boom():
    raise ValueError("boom")


def flaky(tag):
    # fails the first time for a tag, then succeeds: the retry runs it again
    mark = os.path.join(os.environ["WORKSPACE_DIR"], tag)
    if not os.path.exists(mark):
        open(mark, "w").close()
        raise RuntimeError("first attempt of " + tag)
    return "second attempt of " + tag


def slow(seconds):
    time.sleep(seconds)
    return seconds
"""

STEP = {"main.py": 'outputs.greeting = "Hello, " + inputs.name\n',
        "step.toml": '[inputs]\nname = "s"\n\n[outputs]\ngreeting = "s"\n'}  # fmt: skip
ASYNC = {"Prefer": "respond-async", "Content-Type": "application/json"}


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it receives, answering `status`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status, text="ok")

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def start(self) -> None:
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.start()
    yield found
    found.stop()


def config(receiver_port: int) -> dict[str, Any]:
    return {
        **TINY_PROFILES,
        "async": {"retry_backoff_s": 0.2, "poll_s": 0.2, "callback_backoff_s": 0.2,
                  "callback_attempts": 2},
        "egress": {"allowed_networks": ["127.0.0.1/32"], "ports": [80, 443, receiver_port]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, build_cache: Path, receiver: Receiver
) -> Iterator[DaemonProcess]:
    require_root()
    root = tmp_path_factory.mktemp("async-calls")
    with running_daemon(root, config(receiver.port), build_cache) as started:
        admin = started.client()
        project = make_zip({"main.py": MAIN})
        admin.create("jobs", project, deploy=True, **{"async": {"retries": 2}})
        admin.create("quick", project, deploy=True, **{"async": {"max_event_age_s": 2}})
        admin.create("closed", project, deploy=True, egress={"policy": "off"})
        admin.create("greeter", make_zip(STEP), deploy=True)
        admin.create("shared", project, deploy=True, min_replicas=2, max_replicas=2)
        admin.create("sleepy", project, deploy=True, timeout_s=1, **{"async": {"retries": 1}})
        for name in ("jobs", "quick", "closed", "greeter", "shared", "sleepy"):
            assert admin.wait_status(name)["status"] == "Deployed"
        yield started


@pytest.fixture(scope="module")
def keys(daemon: DaemonProcess) -> dict[str, str]:
    admin = daemon.client()
    names = ("jobs", "quick", "closed", "greeter", "shared", "sleepy")
    return {name: create_key(admin, name) for name in names}


def submit(
    gw: GatewayClient, script: str, function: str, payload: Any, **headers: str
) -> tuple[str, Any]:
    path = f"/v1/scripts/{script}/functions/{function}"
    r = gw.request("POST", path, json.dumps(payload).encode(), {**ASYNC, **headers})
    assert r.status == 202, r.body
    doc = r.json()
    assert r.headers["Location"] == f"/v1/executions/{doc['execution_id']}"
    assert r.headers["X-Scriptd-Execution-Id"] == doc["execution_id"]
    return doc["execution_id"], r


def wait_for(
    gw: GatewayClient, call_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = gw.request("GET", f"/v1/executions/{call_id}")
        assert r.status == 200, r.body
        doc: dict[str, Any] = r.json()
        if done(doc):
            return doc
        assert time.monotonic() < deadline, f"still {doc} after {timeout} s"
        time.sleep(0.1)


def wait_record(daemon: DaemonProcess, record_id: str, timeout: float = 30) -> Any:
    """An execution record (they are written in batches, off the call's path)."""
    admin, deadline = daemon.client(), time.monotonic() + timeout
    while True:
        r = admin.request("GET", f"/v1/executions/{record_id}")
        if r.status == 200:
            return r.json()
        assert time.monotonic() < deadline, f"no record {record_id} after {timeout} s"
        time.sleep(0.1)


def ended(doc: dict[str, Any]) -> bool:
    return doc["status"] not in ("queued", "running")


def test_an_async_call_answers_202_then_its_result(
    daemon: DaemonProcess, keys: dict[str, str]
) -> None:
    gw = daemon.gateway(keys["jobs"])
    call_id, r = submit(gw, "jobs", "hello", {"name": "Ada"})
    assert r.json()["status"] == "queued"
    assert r.headers["Preference-Applied"] == "respond-async"
    doc = wait_for(gw, call_id, ended)
    assert doc["status"] == "succeeded", doc
    assert doc["result"] == {"message": "hello Ada"}
    assert doc["attempts"] == 1 and not doc["dead"]
    assert doc["received_at"] and doc["started_at"] and doc["ended_at"]
    # the attempt is an execution record of its own, as a synchronous call's
    record_id = doc["attempt_log"][0]["execution_id"]
    record = wait_record(daemon, record_id)
    assert record["status"] == "ok" and record["key_name"]
    # another script's key does not see it; no key is refused
    other = daemon.gateway(keys["quick"]).request("GET", f"/v1/executions/{call_id}")
    assert other.status == 404
    assert daemon.gateway().request("GET", f"/v1/executions/{call_id}").status == 401


def test_a_code_steps_run_is_asynchronous_too(daemon: DaemonProcess, keys: dict[str, str]) -> None:
    gw = daemon.gateway(keys["greeter"])
    body = json.dumps({"inputs": {"name": {"s": "Ada"}}}).encode()
    r = gw.request("POST", "/v1/scripts/greeter/run", body, ASYNC)
    assert r.status == 202, r.body
    doc = wait_for(gw, r.json()["execution_id"], ended)
    assert doc["status"] == "succeeded" and doc["function"] == "(step)", doc
    assert doc["result"]["outputs"] == {"greeting": {"s": "Hello, Ada"}}
    bad = gw.request("POST", "/v1/scripts/greeter/run", b'{"inputs": 1}', ASYNC)
    assert bad.status == 400
    wrong = gw.request("POST", "/v1/scripts/greeter/run", b'{"inputs": {"name": {"n": 1}}}',
                       ASYNC)  # fmt: skip
    doc = wait_for(gw, wrong.json()["execution_id"], ended)
    assert doc["status"] == "failed" and doc["error"]["type"] == "InputError", doc


def test_the_synchronous_checks_refuse_before_queueing(
    daemon: DaemonProcess, keys: dict[str, str]
) -> None:
    gw = daemon.gateway(keys["jobs"])
    bad = gw.request("POST", "/v1/scripts/jobs/functions/hello", b"[1]", ASYNC)
    assert bad.status == 400 and bad.json()["error"]["type"] == "bad_request"
    missing = gw.request("POST", "/v1/scripts/jobs/functions/nope", b"{}", ASYNC)
    assert missing.status == 404
    url = gw.request("POST", "/v1/scripts/jobs/functions/hello", b"{}",
                     {**ASYNC, "X-Callback-Url": "ftp://example.com/x"})  # fmt: skip
    assert url.status == 400 and "X-Callback-Url" in url.json()["error"]["message"]


def test_retries_then_success_and_a_dead_letter_run_again(
    daemon: DaemonProcess, keys: dict[str, str]
) -> None:
    gw = daemon.gateway(keys["jobs"])
    flaky_id, _ = submit(gw, "jobs", "flaky", {"tag": f"t{time.monotonic_ns()}"})
    doc = wait_for(gw, flaky_id, ended)
    assert doc["status"] == "succeeded" and doc["attempts"] == 2, doc
    assert [a["status"] for a in doc["attempt_log"]] == ["error", "ok"]

    dead_id, _ = submit(gw, "jobs", "boom", {})
    doc = wait_for(gw, dead_id, ended)
    assert doc["status"] == "failed" and doc["dead"] and doc["attempts"] == 3, doc
    assert doc["error"]["type"] == "ValueError"
    listed = scriptctl(daemon, "executions", "jobs", "--status", "dead")
    assert dead_id in [c["execution_id"] for c in listed["calls"]]
    again = scriptctl(daemon, "executions", "retry", dead_id)
    assert again["status"] == "queued" and not again["dead"]
    doc = wait_for(gw, dead_id, lambda d: ended(d) and d["attempts"] == 3)
    assert doc["status"] == "failed" and doc["dead"]
    assert len(doc["attempt_log"]) == 6  # the log keeps the first run's attempts


def test_a_timeout_is_tried_again_then_ends_timed_out(
    daemon: DaemonProcess, keys: dict[str, str]
) -> None:
    gw = daemon.gateway(keys["sleepy"])  # execution timeout 1 s, one retry
    call_id, _ = submit(gw, "sleepy", "slow", {"seconds": 5})
    doc = wait_for(gw, call_id, ended)
    assert doc["status"] == "timed_out" and doc["dead"] and doc["attempts"] == 2, doc
    assert [a["status"] for a in doc["attempt_log"]] == ["timeout", "timeout"]
    assert doc["error"]["type"] == "timeout"


def test_idempotency_key_returns_the_first_execution(
    daemon: DaemonProcess, keys: dict[str, str]
) -> None:
    gw = daemon.gateway(keys["jobs"])
    key = f"order-{time.monotonic_ns()}"
    first, r1 = submit(gw, "jobs", "hello", {"name": "one"}, **{"Idempotency-Key": key})
    second, r2 = submit(gw, "jobs", "hello", {"name": "two"}, **{"Idempotency-Key": key})
    assert first == second
    assert r2.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in r1.headers
    doc = wait_for(gw, first, ended)
    assert doc["result"] == {"message": "hello one"} and doc["idempotency_key"] == key
    third, _ = submit(gw, "jobs", "hello", {}, **{"Idempotency-Key": key + "-other"})
    assert third != first


def test_cancel_and_expiry_of_calls_waiting_for_a_worker(
    daemon: DaemonProcess, keys: dict[str, str]
) -> None:
    # quick has one worker, so async calls hold at most one at a time: the calls
    # behind a slow one wait in the queue, past quick's maximum event age of 2 s.
    gw = daemon.gateway(keys["quick"])
    slow_id, _ = submit(gw, "quick", "slow", {"seconds": 4})
    wait_for(gw, slow_id, lambda d: d["status"] == "running")
    waiting_id, _ = submit(gw, "quick", "hello", {})
    canceled_id, _ = submit(gw, "quick", "hello", {})
    r = gw.request("DELETE", f"/v1/executions/{canceled_id}")
    assert r.status == 200 and r.json()["status"] == "canceled", r.body
    again = gw.request("DELETE", f"/v1/executions/{canceled_id}")
    assert again.status == 409
    assert gw.request("DELETE", f"/v1/executions/{slow_id}").status == 409  # running
    assert wait_for(gw, slow_id, ended)["status"] == "succeeded"
    doc = wait_for(gw, waiting_id, ended)
    assert doc["status"] == "expired" and doc["dead"] and doc["attempts"] == 0, doc
    assert wait_for(gw, canceled_id, ended)["status"] == "canceled"


def test_async_calls_leave_synchronous_callers_their_workers(
    daemon: DaemonProcess, keys: dict[str, str]
) -> None:
    # shared has two one-worker replicas; async.max_worker_share 0.5: one async call
    # runs at a time, the other worker stays free for synchronous calls.
    gw = daemon.gateway(keys["shared"])
    ids = [submit(gw, "shared", "slow", {"seconds": 3})[0] for _ in range(3)]
    wait_for(gw, ids[0], lambda d: d["status"] == "running")
    statuses = [gw.request("GET", f"/v1/executions/{i}").json()["status"] for i in ids]
    assert statuses.count("running") == 1, statuses
    started = time.monotonic()
    r = gw.call("shared", "hello", {"name": "sync"})
    assert r.status == 200 and r.json()["result"] == {"message": "hello sync"}
    assert time.monotonic() - started < 2.5  # not behind a 3 s async call
    for call_id in ids:
        assert wait_for(gw, call_id, ended)["status"] == "succeeded"


def test_a_callback_is_signed_and_recorded(
    daemon: DaemonProcess, keys: dict[str, str], receiver: Receiver
) -> None:
    gw = daemon.gateway(keys["jobs"])
    url = f"http://127.0.0.1:{receiver.port}/hook"
    call_id, _ = submit(gw, "jobs", "hello", {"name": "cb"}, **{"X-Callback-Url": url})
    doc = wait_for(gw, call_id, lambda d: d.get("callback", {}).get("state") == "delivered")
    assert doc["callback"]["deliveries"][0]["status_code"] == 200
    headers, body = next((h, b) for h, b in receiver.received
                         if h.get("X-Scriptd-Execution-Id") == call_id)  # fmt: skip
    secret = scriptctl(daemon, "keys", "callback-secret", "jobs")["secret"]
    stamp = headers["X-Scriptd-Timestamp"]
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert headers["X-Scriptd-Signature"] == "v1=" + expected.hexdigest()
    assert abs(int(stamp) - time.time()) < 120
    assert headers["X-Scriptd-Status"] == "succeeded"
    assert int(headers["X-Scriptd-Duration-Ms"]) >= 0
    sent = json.loads(body)
    assert sent["execution_id"] == call_id and sent["result"] == {"message": "hello cb"}
    # a rotated secret signs the next callbacks
    rotated = scriptctl(daemon, "keys", "callback-secret", "jobs", "--rotate")["secret"]
    assert rotated != secret


def test_a_callback_leaves_through_the_scripts_egress_policy(
    daemon: DaemonProcess, keys: dict[str, str], receiver: Receiver
) -> None:
    gw = daemon.gateway(keys["closed"])  # egress off: nothing may be reached
    url = f"http://127.0.0.1:{receiver.port}/hook"
    call_id, _ = submit(gw, "closed", "hello", {}, **{"X-Callback-Url": url})
    doc = wait_for(gw, call_id, lambda d: d.get("callback", {}).get("state") == "failed")
    deliveries = doc["callback"]["deliveries"]
    assert len(deliveries) == 2  # async.callback_attempts
    assert all(d["status_code"] is None and "egress" in d["error"] for d in deliveries)
    assert not any(h.get("X-Scriptd-Execution-Id") == call_id for h, _ in receiver.received)
    # a private address not opened by egress.allowed_networks is refused too
    gw = daemon.gateway(keys["jobs"])
    closed_url = f"http://127.0.0.2:{receiver.port}/hook"
    call_id, _ = submit(gw, "jobs", "hello", {}, **{"X-Callback-Url": closed_url})
    doc = wait_for(gw, call_id, lambda d: d.get("callback", {}).get("state") == "failed")
    assert "loopback address" in doc["callback"]["deliveries"][0]["error"]


def scriptctl(daemon: DaemonProcess, *args: str) -> Any:
    env = {**os.environ, "SCRIPTD_SOCKET": str(daemon.socket)}
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "--json", *args], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_accepted_call_survives_a_restart(tmp_path: Path, build_cache: Path) -> None:
    require_root()
    # async.max_concurrency = 0: the queue is paused, the call stays queued.
    metrics_port = free_port()
    paused = {**TINY_PROFILES, "async": {"max_concurrency": 0},
              "metrics": {"listen": f"127.0.0.1:{metrics_port}"}}  # fmt: skip
    (tmp_path / "scriptd").mkdir()
    daemon = DaemonProcess(tmp_path / "scriptd", paused, build_cache).start(timeout=90)
    try:
        admin = daemon.client()
        admin.create("later", make_zip({"main.py": MAIN}), deploy=True)
        assert admin.wait_status("later")["status"] == "Deployed"
        gw = daemon.gateway(create_key(admin, "later"))
        call_id, _ = submit(gw, "later", "hello", {"name": "after restart"})
        assert gw.request("GET", f"/v1/executions/{call_id}").json()["status"] == "queued"
        # the queue's depth and its oldest call's age, as metrics
        deadline = time.monotonic() + 30
        while value(scrape(metrics_port)[1], "scriptd_async_queue_depth") != 1:
            assert time.monotonic() < deadline, "the queue's depth is not scraped"
            time.sleep(0.2)
        assert value(scrape(metrics_port)[1], "scriptd_async_queue_oldest_age_seconds") > 0
        gw.close()
        assert daemon.stop() == 0
        daemon._config = TINY_PROFILES  # the queue runs again
        daemon._new_port()
        daemon.start(timeout=90)
        gw = daemon.gateway(gw.key)
        doc = wait_for(gw, call_id, ended)
        assert doc["status"] == "succeeded", doc
        assert doc["result"] == {"message": "hello after restart"}
        # A call running when the daemon dies runs again at the next start.
        running_id, _ = submit(gw, "later", "slow", {"seconds": 2})
        wait_for(gw, running_id, lambda d: d["status"] == "running")
        gw.close()
        daemon.kill()
        daemon.start(timeout=90)
        doc = wait_for(daemon.gateway(gw.key), running_id, ended)
        assert doc["status"] == "succeeded" and doc["result"] == 2, doc
    finally:
        daemon.stop()
