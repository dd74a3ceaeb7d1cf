"""`GET /v1/scripts/{script}/openapi.json`: one Deployed script's own OpenAPI document.

The gateway's document (openapi.py) with the call route written out once per
function of the script, its body the function's parameters (Python: from the
annotations and defaults of main.py, daemon/archive/signatures.py; JavaScript: any
object), or for a code step its /run with the declared inputs and outputs, each a
typed value of its declared type code. Built once per version: main.py is read in a
thread, then the document is kept while that version serves.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import orjson

from daemon.archive.signatures import any_object, python_parameters
from daemon.gateway.openapi import ROUTES, openapi_document
from daemon.serving.target import RunTarget

__all__ = ["ScriptDocuments"]

S = dict[str, Any]
_CALL = "/v1/scripts/{script}/functions/{function}"
_RUN = "/v1/scripts/{script}/run"
_SCALARS: dict[str, S] = {
    "s": {"type": "string"},
    "n": {"type": "number"},
    "b": {"type": "boolean"},
    "d": {"type": "string", "format": "date"},
    "dt": {"type": "string", "format": "date-time"},
    "p": {"type": "string"},
    "u": {"type": "string", "format": "uuid"},
}


class ScriptDocuments:
    """The documents of the versions that serve, by (script, version)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, int], bytes] = {}

    async def document(self, target: RunTarget) -> bytes:
        key = (target.script, target.version)
        doc = self._kept.get(key)
        if doc is None:
            doc = await asyncio.to_thread(lambda: orjson.dumps(script_document(target)))
            # Older versions of the script no longer serve: their documents go.
            self._kept = {k: v for k, v in self._kept.items() if k[0] != target.script}
            self._kept[key] = doc
        return doc


def script_document(target: RunTarget) -> S:
    base = openapi_document(ROUTES)
    if target.step_spec is not None:
        paths = {_RUN.replace("{script}", target.script): _step_path(base, target.step_spec)}
    else:
        bodies = _bodies(target)
        paths = {
            _CALL.replace("{script}", target.script).replace("{function}", name): _call_path(
                base, name, bodies.get(name, any_object())
            )
            for name in target.functions
        }
    return {
        **base,
        "info": {
            "title": f"scriptd: {target.script} (v{target.version})",
            "version": str(target.version),
            "description": f"The {'code step' if target.step_spec else 'functions'} of "
            f"{target.script}, version {target.version}; the gateway's own routes are "
            "in /openapi.json.",
        },
        "paths": paths,
    }


def _bodies(target: RunTarget) -> dict[str, S]:
    if target.language != "python":
        return {}
    try:
        source = (target.source_dir / "main.py").read_text(encoding="utf-8")
        return python_parameters(source, target.functions)
    except (OSError, SyntaxError, ValueError):
        return {}  # validated at deploy; a file gone since gives the generic body


def _operation(base: S, path: str, method: str) -> S:
    op: S = copy.deepcopy(base["paths"][path][method])
    op["parameters"] = [p for p in op["parameters"] if p["in"] != "path"]
    return op


def _call_path(base: S, function: str, body: S) -> S:
    op = _operation(base, _CALL, "post")
    op["operationId"] = f"call_{function}"
    op["summary"] = f"Call {function}"
    op["requestBody"]["content"]["application/json"]["schema"] = body
    return {"post": op}


def _step_path(base: S, spec_json: str) -> S:
    spec = json.loads(spec_json)
    op = _operation(base, _RUN, "post")
    inputs = _typed_object(spec.get("inputs", {}))
    op["requestBody"]["content"]["application/json"]["schema"] = {
        "type": "object",
        "properties": {"inputs": inputs},
        "additionalProperties": False,
    }
    result = copy.deepcopy(base["components"]["schemas"]["StepResult"])
    result["properties"]["outputs"] = _typed_object(spec.get("outputs", {}))
    for status in ("200", "422"):
        op["responses"][status]["content"]["application/json"]["schema"] = result
    return {"post": op}


def _typed_object(declared: dict[str, str]) -> S:
    return {
        "type": "object",
        "properties": {name: _typed(code) for name, code in declared.items()},
        "additionalProperties": False,
    }


def _typed(code: str) -> S:
    """A typed value of type `code` (or null): {code: value}."""
    value = _SCALARS.get(code, {})
    if code.startswith("a[") and code[2:-1] in _SCALARS:
        value = {"type": "array", "items": _SCALARS[code[2:-1]]}
    value = {"anyOf": [value, {"type": "null"}]} if value else {}
    shaped = {
        "type": "object",
        "properties": {code: value},
        "required": [code],
        "additionalProperties": False,
        "description": f"a typed value of type {code}",
    }
    return {"anyOf": [shaped, {"type": "null"}]}
