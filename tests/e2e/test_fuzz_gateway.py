"""schemathesis against the gateway of a real daemon, with valid API keys: no 5xx,
and every answer conforms to the gateway's /openapi.json. This module's own daemon
serves a functions script and a code step, each with a key.

Passes: the document as served, its {script} and {function} drawn from the
deployed names (and an unknown one) as often as from any text (the refusals), so
that calls reach the replicas; then each script's own document
(GET /v1/scripts/{script}/openapi.json), whose bodies are its functions' parameters
or its step's typed inputs, so that most calls succeed."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from tests.conftest import require_root
from tests.e2e.fuzzing import fuzz, undeclared_methods
from tests.helpers import TINY_PROFILES, DaemonProcess, create_key, make_zip, running_daemon

BUDGET_S = 10  # per pass
EXAMPLES = 8
# A script's own document describes its functions' parameters by their annotations,
# which neither Python nor the gateway checks (a bool where an int is declared runs),
# and its async headers, which a synchronous call ignores: invalid examples of it
# are sent (no 5xx, answers as documented) but may be taken.
SCRIPT_DOCUMENTS_TAKE_INVALID = True
RAISED = ("422",)  # a valid body still meets a function that raises (boom, a step's typed value)
FUNCTIONS_MAIN = """\
from typing import Literal


def hello(name: str = 'world') -> str:
    return 'hello ' + name


def add(a: int, b: float = 1.5, unit: Literal['m', 's'] | None = None) -> dict:
    return {'sum': a + b, 'unit': unit}


def boom(**kwargs):
    raise ValueError('boom')
"""
STEP_TOML = '[inputs]\nname = "s"\namount = "n"\n\n[outputs]\ngreeting = "s"\ntotal = "n"\n'
STEP_MAIN = """\
outputs.greeting = f"Hello, {inputs.name}!"
outputs.total = inputs.amount
"""
SCRIPTS = {"demo": {"main.py": FUNCTIONS_MAIN}, "greet": {"main.py": STEP_MAIN,
                                                         "step.toml": STEP_TOML}}  # fmt: skip


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, build_cache: Path
) -> Iterator[tuple[DaemonProcess, dict[str, str]]]:
    require_root()
    root = Path(tmp_path_factory.mktemp("fuzz-gateway"))
    with running_daemon(root, TINY_PROFILES, build_cache) as d:
        admin = d.client()
        for name, files in SCRIPTS.items():
            admin.create(name, make_zip(files), deploy=True)
        for name in SCRIPTS:
            assert admin.wait_status(name)["status"] == "Deployed", admin.script(name)
        yield d, {name: create_key(admin, name) for name in SCRIPTS}


def _with_deployed_names(document: dict[str, Any]) -> dict[str, Any]:
    """The document with {script} and {function} also taking the deployed names."""
    names = {"script": [*SCRIPTS, "no-such-script"], "function": ["hello", "add", "boom", "no"]}
    doc = copy.deepcopy(document)
    for operations in doc["paths"].values():
        for op in operations.values():
            for param in op.get("parameters", ()):
                if param["in"] == "path" and param["name"] in names:
                    param["schema"] = {"anyOf": [{"enum": names[param["name"]]}, param["schema"]]}
    return doc


def test_fuzz_the_gateway(deployed: tuple[DaemonProcess, dict[str, str]]) -> None:
    daemon, keys = deployed
    gateway = daemon.gateway()
    document = _with_deployed_names(gateway.request("GET", "/openapi.json").json())

    def key_of(case: Any) -> dict[str, str]:
        """The key of the URL's script (another script's for an unknown one)."""
        script = (case.path_parameters or {}).get("script")  # invalid ones: not even text
        key = keys.get(script, keys["demo"]) if isinstance(script, str) else keys["demo"]
        return {"Authorization": f"Bearer {key}"}

    with requests.Session() as session:
        base = f"http://127.0.0.1:{daemon.port}"
        run = fuzz(document, session, base, max_examples=EXAMPLES, budget_s=BUDGET_S,
                   headers=key_of, accepted=RAISED)  # fmt: skip
        refused = undeclared_methods(
            document, session, base, {"Authorization": f"Bearer {keys['demo']}"}
        )
    print(f"gateway fuzz: {run.requests} requests in {run.seconds:.1f} s, "
          f"{len(run.cut)} operations cut short by the budget")  # fmt: skip
    assert not run.failures, "\n\n".join(run.failures)
    assert not refused, "\n".join(refused)
    assert gateway.request("GET", "/healthz").status == 200


def test_a_scripts_own_document(deployed: tuple[DaemonProcess, dict[str, str]]) -> None:
    daemon, keys = deployed
    gateway = daemon.gateway(keys["demo"])
    r = gateway.request("GET", "/v1/scripts/demo/openapi.json")
    assert r.status == 200, r.body
    doc = r.json()
    validate(doc)
    assert list(doc["paths"]) == [f"/v1/scripts/demo/functions/{f}" for f in
                                  ("hello", "add", "boom")]  # fmt: skip
    body = doc["paths"]["/v1/scripts/demo/functions/add"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["a"] and schema["additionalProperties"] is False
    assert schema["properties"]["b"] == {"type": "number", "default": 1.5}
    assert schema["properties"]["unit"]["anyOf"][0] == {"enum": ["m", "s"]}
    step = daemon.gateway(keys["greet"]).request("GET", "/v1/scripts/greet/openapi.json").json()
    run = step["paths"]["/v1/scripts/greet/run"]["post"]
    inputs = run["requestBody"]["content"]["application/json"]["schema"]["properties"]["inputs"]
    assert set(inputs["properties"]) == {"name", "amount"}
    assert inputs["properties"]["name"]["anyOf"][0]["required"] == ["s"]
    endpoint = daemon.client().get("/v1/scripts/demo/endpoint")  # what scriptctl shows
    (add,) = [f for f in endpoint["functions"] if f["function"] == "add"]
    assert add["parameters"] == schema
    r = gateway.request("GET", "/v1/scripts/greet/openapi.json")
    assert r.status == 403 and r.json()["error"]["type"] == "forbidden"
    r = gateway.request("GET", "/v1/scripts/demo/openapi.json", key="")
    assert r.status == 401


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_fuzz_a_scripts_own_document(
    deployed: tuple[DaemonProcess, dict[str, str]], script: str
) -> None:
    daemon, keys = deployed
    document = daemon.gateway(keys[script]).request("GET", f"/v1/scripts/{script}/openapi.json")
    with requests.Session() as session:
        run = fuzz(document.json(), session, f"http://127.0.0.1:{daemon.port}",
                   max_examples=EXAMPLES, budget_s=BUDGET_S, accepted=RAISED,
                   refuses_invalid=not SCRIPT_DOCUMENTS_TAKE_INVALID,
                   headers=lambda case: {"Authorization": f"Bearer {keys[script]}"})  # fmt: skip
    print(f"{script} fuzz: {run.requests} requests in {run.seconds:.1f} s, "
          f"{len(run.cut)} operations cut short by the budget")  # fmt: skip
    assert not run.failures, "\n\n".join(run.failures)
