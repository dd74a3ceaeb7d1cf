"""Code steps against the real daemon: a project with a step.toml deployed into real
sandboxed replicas and run over real HTTP (POST /v1/scripts/{script}/run), in
Python and in Node. The seed's greeting example first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, require_root
from tests.helpers import (
    REPO,
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    GatewayClient,
    Response,
    create_key,
    make_zip,
    running_daemon,
)

STEP_TOML = """\
[inputs]
name = "s"
amount = "n"

[outputs]
greeting = "s"
total = "n"
"""
PY_STEP = """\
outputs.log(f"greeting {inputs.name}")
if inputs.name == "nobody":
    outputs.greeting = "partial"
    raise ValueError("name is required")
outputs.greeting = f"Hello, {inputs.name}!"
if inputs.amount is not None:
    outputs.total = inputs.amount
if inputs.name == "wrong":
    outputs.total = "many"
"""
JS_STEP = """\
outputs.log(`greeting ${inputs.name}`);
if (inputs.name === 'nobody') {
  outputs.greeting = 'partial';
  throw new RangeError('name is required');
}
outputs.greeting = `Hello, ${inputs.name}!`;
if (inputs.name === 'wrong') outputs.total = 'many';
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    config = {
        **TINY_PROFILES,
        "steps": {"memory_mib": 128, "timeout_s": 45},
        "executions": {"inputs_bytes": 300, "outputs_bytes": 200},
    }
    with running_daemon(tmp_path_factory.mktemp("steps"), config, build_cache) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> AdminClient:
    client = daemon.client()
    client.create("greet", make_zip({"main.py": PY_STEP, "step.toml": STEP_TOML}), deploy=True)
    client.create("fns", deploy=True)  # a functions script, to refuse /run on
    for name in ("greet", "fns"):
        assert client.wait_status(name)["status"] == "Deployed", client.script(name)
    return client


@pytest.fixture(scope="module")
def gw(daemon: DaemonProcess, admin: AdminClient) -> Iterator[GatewayClient]:
    client = daemon.gateway(create_key(admin, "greet"))
    yield client
    client.close()


def run(gw: GatewayClient, script: str, inputs: Any, query: str = "", **kw: Any) -> Response:
    body = json.dumps({"inputs": inputs}).encode() if not isinstance(inputs, bytes) else inputs
    path = f"/v1/scripts/{script}/run{query}"
    return gw.request("POST", path, body, {"Content-Type": "application/json"}, **kw)


def test_the_seed_greeting_example(gw: GatewayClient) -> None:
    r = run(gw, "greet", {"name": {"s": "Ada"}})
    assert r.status == 200, r.body
    doc = r.json()
    assert doc["outputs"] == {"greeting": {"s": "Hello, Ada!"}, "total": {"n": None}}
    assert doc["execution_id"] == r.headers["X-Scriptd-Execution-Id"]
    assert "logs" not in doc


def test_details_add_the_logs_and_captured_output(gw: GatewayClient) -> None:
    doc = run(gw, "greet", {"name": {"s": "Ada"}}, "?details=1").json()
    assert [entry["message"] for entry in doc["logs"]] == ["greeting Ada"]
    assert doc["logs"][0]["ts"].endswith("Z") and doc["logs_discarded"] == 0
    assert doc["stdout"] == "" and doc["stderr"] == ""


def test_numbers_keep_every_digit_through_the_gateway(gw: GatewayClient) -> None:
    digits = "12345678901234567890.123456789"
    body = b'{"inputs":{"name":{"s":"Ada"},"amount":{"n":' + digits.encode() + b"}}}"
    r = run(gw, "greet", body)
    assert r.status == 200, r.body
    assert b'"total":{"n":' + digits.encode() + b"}" in r.body, r.body


def test_an_exception_is_422_with_the_partial_outputs(gw: GatewayClient) -> None:
    r = run(gw, "greet", {"name": {"s": "nobody"}}, "?details=1")
    assert r.status == 422, r.body
    doc = r.json()
    assert doc["error"]["type"] == "ValueError" and doc["error"]["message"] == "name is required"
    assert "main.py" in doc["error"]["traceback"]
    assert doc["outputs"] == {"greeting": {"s": "partial"}}
    assert doc["execution_id"] == r.headers["X-Scriptd-Execution-Id"]
    assert [entry["message"] for entry in doc["logs"]] == ["greeting nobody"]


def test_a_wrong_type_in_and_out_is_422_naming_the_field(gw: GatewayClient) -> None:
    wrong_in = run(gw, "greet", {"name": {"n": 3}})
    assert wrong_in.status == 422
    error = wrong_in.json()["error"]
    assert error["type"] == "InputError"
    assert 'input "name": expected s (string), received a value of type n' in error["message"]
    wrong_out = run(gw, "greet", {"name": {"s": "wrong"}, "amount": {"n": 1}})
    assert wrong_out.status == 422
    error = wrong_out.json()["error"]
    assert (
        error["type"] == "OutputError" and 'output "total": expected n (number)' in error["message"]
    )


def test_bad_bodies_are_400(gw: GatewayClient) -> None:
    assert run(gw, "greet", b"{nope").status == 400
    assert run(gw, "greet", b'{"inputs": [1]}').status == 400
    r = run(gw, "greet", b'{"inputs": {}, "extra": 1}')
    assert r.status == 400 and "extra" in r.json()["error"]["message"]


def test_keys_are_checked_as_for_functions(gw: GatewayClient, admin: AdminClient) -> None:
    assert run(gw, "greet", {}, key="sk_nope").status == 401
    other = create_key(admin, "fns")
    assert run(gw, "greet", {}, key=other).status == 403


def test_a_functions_script_has_no_run_route(daemon: DaemonProcess, admin: AdminClient) -> None:
    client = daemon.gateway(create_key(admin, "fns"))
    try:
        r = run(client, "fns", {})
        assert r.status == 404 and "not a code step" in r.json()["error"]["message"]
    finally:
        client.close()


def test_a_bad_step_toml_is_refused_at_validation(admin: AdminClient) -> None:
    bad = 'outputs = { log = "s", total = "q" }\n'
    doc = admin.create("bad-step", make_zip({"main.py": "x = 1\n", "step.toml": bad}), expect=422)
    text = json.dumps(doc)
    assert 'output name \\"log\\" is reserved' in text and "unknown type code" in text


def test_a_node_step(daemon: DaemonProcess, admin: AdminClient) -> None:
    require(shutil.which("node") is not None, "node is not installed")
    files = {"main.js": JS_STEP, "step.toml": STEP_TOML}
    admin.create("greet-js", make_zip(files), language="javascript", deploy=True)
    assert admin.wait_status("greet-js")["status"] == "Deployed", admin.script("greet-js")
    client = daemon.gateway(create_key(admin, "greet-js"))
    try:
        ok = run(client, "greet-js", {"name": {"s": "Ada"}})
        assert ok.status == 200, ok.body
        assert ok.json()["outputs"]["greeting"] == {"s": "Hello, Ada!"}
        raised = run(client, "greet-js", {"name": {"s": "nobody"}})
        assert raised.status == 422 and raised.json()["error"]["type"] == "RangeError"
        assert raised.json()["outputs"] == {"greeting": {"s": "partial"}}
    finally:
        client.close()


def scriptctl(daemon: DaemonProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCRIPTD_SOCKET"}
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--socket", str(daemon.admin_socket), *argv],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_scriptctl_run_prints_outputs_logs_and_the_execution_id(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    done = scriptctl(daemon, "run", "greet", "--input", "name=s:Ada", "--input", "amount=n:1.10")
    assert done.returncode == 0, done.stderr
    assert 'greeting = {"s": "Hello, Ada!"}' in done.stdout
    assert 'total = {"n": 1.10}' in done.stdout  # every digit, as the step answered
    assert "greeting Ada" in done.stdout and "Execution: " in done.stdout
    digits = "amount=n:12345678901234567890.123456789"
    exact = scriptctl(daemon, "--json", "run", "greet", "--input", "name=s:Bo", "--input", digits)
    assert '"n": 12345678901234567890.123456789' in exact.stdout, exact.stdout
    as_json = json.loads(scriptctl(daemon, "--json", "run", "greet", "--input", "name=s:Bo").stdout)
    assert as_json["outputs"]["greeting"] == {"s": "Hello, Bo!"}
    assert [entry["message"] for entry in as_json["logs"]] == ["greeting Bo"]


def test_scriptctl_run_shows_an_error_with_the_partial_outputs(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    done = scriptctl(daemon, "run", "greet", "--input", "name=s:nobody")
    assert done.returncode == 1
    assert "ValueError: name is required" in done.stdout
    assert 'Partial outputs:\n  greeting = {"s": "partial"}' in done.stdout
    bad = scriptctl(daemon, "run", "greet", "--input", "name")
    assert bad.returncode != 0 and "NAME=CODE:VALUE" in bad.stderr


def test_scriptctl_call_calls_a_function_without_a_key(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    done = scriptctl(daemon, "call", "fns", "hello", '{"name": "Ada"}')
    assert done.returncode == 0, done.stderr
    assert '"hello Ada"' in done.stdout
    as_json = json.loads(scriptctl(daemon, "--json", "call", "fns", "hello", "{}").stdout)
    assert as_json == {"result": "hello world"}


def test_the_step_sample_goes_up_and_runs(
    daemon: DaemonProcess, admin: AdminClient, tmp_path: Path
) -> None:
    archive = tmp_path / "sample.zip"
    got = scriptctl(daemon, "sample", "--language", "python", "--kind", "step", "-o", str(archive))
    assert got.returncode == 0, got.stderr
    folder = tmp_path / "sample"
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["main.py", "step.toml"]
        zf.extractall(folder)
    up = scriptctl(daemon, "up", str(folder), "--name", "sample-step")
    assert up.returncode == 0, up.stderr
    done = scriptctl(daemon, "--json", "run", "sample-step", "--input", "name=s:Ada")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"greeting": {"s": "Hello, Ada!"}}
    refused = scriptctl(daemon, "run", "sample-step", "--input", "name=s:")
    assert refused.returncode == 1 and "ValueError: name is required" in refused.stdout


def test_scriptctl_declares_a_step_with_input_and_output_flags(
    daemon: DaemonProcess, admin: AdminClient, tmp_path: Path
) -> None:
    folder = tmp_path / "flags"
    folder.mkdir()
    (folder / "main.py").write_text("outputs.greeting = 'Hi ' + inputs.name\n")
    missing = scriptctl(daemon, "up", str(folder), "--name", "flag-step", "--kind", "step")
    assert missing.returncode != 0 and "has no step.toml" in missing.stderr
    up = scriptctl(daemon, "up", str(folder), "--name", "flag-step", "--kind", "step",
                   "--input", "name:s", "--output", "greeting:s")  # fmt: skip
    assert up.returncode == 0, up.stderr
    done = scriptctl(daemon, "--json", "run", "flag-step", "--input", "name=s:Ada")
    assert json.loads(done.stdout)["outputs"] == {"greeting": {"s": "Hi Ada"}}
    bad = scriptctl(daemon, "up", str(folder), "--name", "flag-step-2", "--output", "log:s")
    assert bad.returncode != 0 and "reserved" in bad.stderr + bad.stdout


def test_execution_details_through_the_admin_api_and_scriptctl(
    daemon: DaemonProcess, admin: AdminClient, gw: GatewayClient
) -> None:
    body = b'{"inputs":{"name":{"s":"nobody"},"amount":{"n":1.10}}}'
    cid = run(gw, "greet", body).headers["X-Scriptd-Execution-Id"]
    record = wait_for_record(admin, cid)
    assert record["function"] == "(step)" and record["status"] == "error"
    assert record["details"]["inputs"] == {"name": {"s": "nobody"}, "amount": {"n": 1.1}}
    assert record["result"] == {"greeting": {"s": "partial"}}  # the partial outputs
    assert [x["message"] for x in record["details"]["logs"]] == ["greeting nobody"]
    assert record["details"]["logs_discarded"] == 0
    assert record["error"]["type"] == "ValueError"
    shown = scriptctl(daemon, "execution", cid)
    assert shown.returncode == 0, shown.stderr
    for section in ("Inputs", "Outputs", "Step log", "greeting nobody", "ValueError"):
        assert section in shown.stdout, shown.stdout


def wait_for_record(admin: AdminClient, cid: str, timeout: float = 10) -> Any:
    """The recorder writes in batches: poll until the record is there."""
    deadline = time.monotonic() + timeout
    while True:
        r = admin.request("GET", f"/v1/executions/{cid}")
        if r.status == 200:
            return r.json()
        assert time.monotonic() < deadline, f"no record {cid}: {r.status} {r.body!r}"
        time.sleep(0.05)


def test_the_endpoint_snippets_of_a_step_work_as_pasted(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    doc = admin.get("/v1/scripts/greet/endpoint")
    assert doc["kind"] == "step" and doc["functions"][0]["url"].endswith("/v1/scripts/greet/run")
    key = create_key(admin, "greet")
    code = doc["functions"][0]["python"].replace(doc["key_placeholder"], key)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["greeting"] == {"s": "Hello, text!"}
    if shutil.which("node"):
        js = doc["functions"][0]["javascript"].replace(doc["key_placeholder"], key)
        ran = subprocess.run(["node", "-e", js], capture_output=True, text=True, timeout=30)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["greeting"] == {"s": "Hello, text!"}
    curl = doc["functions"][0]["curl"].replace(doc["key_placeholder"], key)
    if shutil.which("curl"):
        out = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=30)
        assert json.loads(out.stdout)["outputs"]["greeting"] == {"s": "Hello, text!"}


def test_executions_filter_by_status_and_since(
    daemon: DaemonProcess, admin: AdminClient, gw: GatewayClient
) -> None:
    ok = run(gw, "greet", {"name": {"s": "Ada"}}).headers["X-Scriptd-Execution-Id"]
    failed = run(gw, "greet", {"name": {"s": "nobody"}}).headers["X-Scriptd-Execution-Id"]
    wait_for_record(admin, ok)
    wait_for_record(admin, failed)
    errors = admin.get("/v1/scripts/greet/executions?status=error&since=1h")["executions"]
    ids = {e["id"] for e in errors}
    assert failed in ids and ok not in ids
    assert all(e["status"] == "error" and "details" not in e for e in errors)
    assert admin.get("/v1/scripts/greet/executions?since=2030-01-01T00:00:00Z")["executions"] == []
    assert admin.request("GET", "/v1/scripts/greet/executions?since=soon").status == 400
    listed = scriptctl(
        daemon, "--json", "executions", "greet", "--status", "error", "--since", "1h"
    )
    assert failed in {e["id"] for e in json.loads(listed.stdout)["executions"]}


def test_the_functions_route_of_a_step_is_404(gw: GatewayClient) -> None:
    r = gw.call("greet", "anything", {})
    assert r.status == 404, r.body


def test_secret_values_are_masked_in_the_execution_record(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    secret = "s3cr3t-t0ken-value"
    main = (
        "import os\ntoken = os.environ['TOKEN']\nprint('stdout', token)\n"
        "outputs.log('log ' + token)\noutputs.greeting = 'out ' + token\n"
    )
    toml = '[inputs]\nname = "s"\n\n[outputs]\ngreeting = "s"\n'
    env = [{"key": "TOKEN", "value": secret, "secret": True}]
    admin.create("secretive", make_zip({"main.py": main, "step.toml": toml}), deploy=True, env=env)
    assert admin.wait_status("secretive")["status"] == "Deployed", admin.script("secretive")
    client = daemon.gateway(create_key(admin, "secretive"))
    try:
        r = run(client, "secretive", {"name": {"s": secret}})
        assert r.status == 200, r.body
    finally:
        client.close()
    record = wait_for_record(admin, r.headers["X-Scriptd-Execution-Id"])
    text = json.dumps(record)
    assert secret not in text, text
    assert record["result"] == {"greeting": {"s": "out ********"}}
    assert record["details"]["inputs"] == {"name": {"s": "********"}}
    assert record["details"]["logs"][0]["message"] == "log ********"
    assert "stdout ********" in record["logs"]


def test_a_step_gets_the_step_limits_and_shows_its_declaration(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    """No profile and no timeout given: steps.memory_mib (128 here, below the tiny
    profile's 256 MiB) and steps.timeout_s; the declaration is a runtime setting."""
    script = admin.script("greet")
    assert script["settings"]["kind"] == "step"
    assert script["settings"]["step"] == {
        "inputs": {"name": "s", "amount": "n"},
        "outputs": {"greeting": "s", "total": "n"},
    }
    assert script["settings"]["timeout_s"] == 45
    assert script["resources"]["memory_bytes"] == 128 << 20
    assert script["resources"]["memory_limit_bytes"] == 128 << 20
    version = admin.history("greet")["versions"][0]["config"]
    assert version["resources"]["memory_bytes"] == 128 << 20
    assert version["settings"]["step"]["outputs"] == {"greeting": "s", "total": "n"}
    shown = scriptctl(daemon, "show", "greet").stdout
    for text in ("Kind", "step", "name:s, amount:n", "greeting:s, total:n", "45 s",
                 "128.0 MB (a step's default"):  # fmt: skip
        assert text in shown, shown
    history = scriptctl(daemon, "history", "greet").stdout
    assert "timeout 45 s, memory 128.0 MB (a step's default)" in history, history
    assert "step: inputs name:s, amount:n; outputs greeting:s, total:n" in history
    functions = admin.script("fns")
    assert functions["settings"]["kind"] == "functions" and functions["settings"]["step"] is None
    assert functions["resources"]["memory_bytes"] is None
    assert functions["resources"]["memory_limit_bytes"] == 256 << 20


def test_the_step_memory_limit_is_the_replicas(daemon: DaemonProcess, admin: AdminClient) -> None:
    """200 MiB fit the tiny profile (256 MiB) but not a step's default limit (128)."""
    body = "data = bytearray(200 << 20)\nfor i in range(0, len(data), 4096):\n    data[i] = 1\n"
    toml = '[outputs]\nok = "b"\n'
    admin.create("hungry", make_zip({"main.py": body, "step.toml": toml}), deploy=True)
    assert admin.wait_status("hungry")["status"] == "Deployed", admin.script("hungry")
    client = daemon.gateway(create_key(admin, "hungry"))
    try:
        r = run(client, "hungry", {})
    finally:
        client.close()
    assert r.status == 502 and r.json()["error"]["type"] == "out_of_memory", r.body
    assert "128" in r.json()["error"]["message"], r.body


def test_a_profile_or_a_timeout_given_wins_over_the_step_defaults(admin: AdminClient) -> None:
    files = {"main.py": "outputs.x = 1\n", "step.toml": '[outputs]\nx = "n"\n'}
    admin.create("chosen", make_zip(files), profile="tiny", timeout_s=5)
    script = admin.script("chosen")
    assert script["settings"]["timeout_s"] == 5 and script["resources"]["memory_bytes"] is None
    assert script["resources"]["memory_limit_bytes"] == 256 << 20
    default = admin.create("defaulted", make_zip(files))
    assert default["resources"]["memory_bytes"] == 128 << 20
    changed = admin.call("PATCH", "/v1/scripts/defaulted", {"profile": "tiny"})
    assert changed["resources"]["memory_bytes"] is None


MEMORY_MAIN = """\
def grab(mb):
    data = bytearray(mb << 20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    return len(data)
"""


def test_each_record_has_the_peak_memory_of_its_own_call(
    daemon: DaemonProcess, admin: AdminClient, gw: GatewayClient
) -> None:
    """The worker's own memory cgroup is reset before each call (cgroup v1): a small
    call after a big one shows its own peak, not the worker's high-water mark."""
    if not sandbox_memory_is_v1():  # not a missing feature: v2 hosts record none (README)
        pytest.skip("per-call peak memory is measured where memory is a cgroup v1 hierarchy")
    admin.create("memory", make_zip({"main.py": MEMORY_MAIN}), deploy=True)
    assert admin.wait_status("memory")["status"] == "Deployed", admin.script("memory")
    client = daemon.gateway(create_key(admin, "memory"))
    try:
        ids = [client.call("memory", "grab", {"mb": mb}).headers["X-Scriptd-Execution-Id"]
               for mb in (100, 1)]  # fmt: skip
    finally:
        client.close()
    big, small = (wait_for_record(admin, cid)["peak_memory_bytes"] for cid in ids)
    assert big >= 100 << 20 and small < 50 << 20, (big, small)
    step = run(gw, "greet", {"name": {"s": "Ada"}}).headers["X-Scriptd-Execution-Id"]
    assert wait_for_record(admin, step)["peak_memory_bytes"] > 0
    shown = scriptctl(daemon, "execution", ids[0]).stdout
    # the call's 100 MiB plus what the interpreter touched meanwhile: 100.x or 101.x MB
    line = next(line for line in shown.splitlines() if line.startswith("Peak memory:"))
    assert line.split(":", 1)[1].strip() == f"{big / (1 << 20):.1f} MB", (big, shown)


def sandbox_memory_is_v1() -> bool:
    """The memory controller is a v1 hierarchy here (a line "N:memory:/...")."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    return any(line.split(":")[1] == "memory" for line in lines if line.count(":") >= 2)


def test_inputs_and_outputs_over_their_caps_are_cut_and_the_record_says_so(
    daemon: DaemonProcess, admin: AdminClient, gw: GatewayClient
) -> None:
    """executions.inputs_bytes = 300 and outputs_bytes = 200 in this module."""
    r = run(gw, "greet", {"name": {"s": "x" * 400}})
    assert r.status == 200, r.body
    record = wait_for_record(admin, r.headers["X-Scriptd-Execution-Id"])
    cut = record["details"]["cut"]
    assert cut["inputs"]["limit"] == 300 and cut["inputs"]["bytes"] > 400
    assert cut["outputs"]["limit"] == 200 and cut["outputs"]["bytes"] > 400
    assert "executions.inputs_bytes" in record["details"]["inputs"]["not_kept"]
    assert "executions.outputs_bytes" in record["result"]["not_kept"]
    assert r.json()["outputs"]["greeting"]["s"].startswith("Hello, xxx")  # the caller's: whole
    shown = scriptctl(daemon, "execution", record["id"]).stdout
    assert "Inputs (cut: " in shown and "Outputs (cut: " in shown, shown
    small = run(gw, "greet", {"name": {"s": "Ada"}}).headers["X-Scriptd-Execution-Id"]
    assert "cut" not in wait_for_record(admin, small)["details"]
