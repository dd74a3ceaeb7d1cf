"""Endpoint snippets: their text, and each one run for real (sh, bash, curl,
node as CommonJS and as an ES module, the system python3) against a small
aiohttp server on 127.0.0.1 that checks the key and echoes the body."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from daemon.gateway.snippets import (
    KEY_PLACEHOLDER,
    endpoint_url,
    gateway_base_url,
    render_endpoint,
    render_snippets,
)
from tests.conftest import require

KEY = (
    "sk_"
    + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
    + "_"
    + base64.urlsafe_b64encode(b"\xfb\xff" + os.urandom(30)).rstrip(b"=").decode()
)  # starts "-_" after the id: the characters that could need quoting do appear

PAYLOADS: dict[str, dict[str, Any]] = {
    "plain": {"name": "Ada", "times": 3},
    "empty": {},
    "shell": {
        "text": 'O\'Brien said "hi" $HOME `id` $(id) \\ \\n !! ; | & > < * ? ~ # %s {}',
        "quote": "'",
        "quotes": "''\"\"'",
    },
    "unicode": {"grüße": "日本語 😀 \u2028 \u2029 \u0085 \t tab \n newline \x00 nul \x7f"},
    "nested": {"list": [1, -2.5, 1e100, True, False, None, "x", [], {}], "obj": {"a": {"b": [{}]}}},
    "js_traps": {"__proto__": {"polluted": True}, "big": 2**63 + 1, "neg": -(2**60)},
}
FUNCTIONS = ("greet", "$go", "grüße")


@dataclass
class Seen:
    calls: list[dict[str, Any]] = field(default_factory=list)


SEEN = web.AppKey("seen", Seen)


async def echo(request: web.Request) -> web.Response:
    seen: Seen = request.app[SEEN]
    call: dict[str, Any] = dict(request.match_info)
    call["authorization"] = request.headers.get("Authorization")
    seen.calls.append(call)
    if call["authorization"] != f"Bearer {KEY}":
        call["status"] = 401
        return web.json_response(
            {"error": {"type": "unauthorized", "message": "bad key"}}, status=401
        )
    if request.content_type != "application/json":
        call["status"] = 400
        return web.json_response({"error": {"type": "bad_request", "message": "json"}}, status=400)
    call["body"] = body = json.loads(await request.text())
    call["status"] = 200
    return web.json_response({"result": body})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Seen]]:
    app = web.Application()
    app[SEEN] = seen = Seen()
    app.router.add_post("/v1/scripts/{script}/functions/{function}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def tool(name: str) -> str:
    path = shutil.which(name, path="/usr/bin:/bin:/usr/local/bin")
    require(path is not None, f"needs {name} on the host")
    assert path is not None
    return path


async def run(argv: list[str], tmp_path: Path, stdin: str | None = None) -> tuple[int, str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}  # no proxies
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def runners(tmp_path: Path) -> dict[str, list[str]]:
    return {
        "sh": [tool("sh"), "-c"],
        "bash": [tool("bash"), "-c"],
        "node-cjs": [tool("node"), str(tmp_path / "snippet.cjs")],
        "node-esm": [tool("node"), str(tmp_path / "snippet.mjs")],
        "python": [tool("python3"), "-I", str(tmp_path / "snippet.py")],
    }


async def run_snippet(kind: str, code: str, tmp_path: Path) -> tuple[int, str, str]:
    argv = runners(tmp_path)[kind]
    if kind in ("sh", "bash"):
        tool("curl")
        return await run([*argv, code], tmp_path)
    Path(argv[-1]).write_text(code, encoding="utf-8")
    return await run(argv, tmp_path)


def snippet_for(kind: str, script: str, function: str, base: str, payload: dict[str, Any]) -> str:
    snippets = render_snippets(script, function, base, payload)
    fmt = {"sh": "curl", "bash": "curl", "python": "python"}.get(kind, "javascript")
    code = snippets.get(fmt)  # type: ignore[arg-type]
    assert code.count(KEY_PLACEHOLDER) == 1
    return code.replace(KEY_PLACEHOLDER, KEY)


@pytest.mark.parametrize("kind", ["sh", "bash", "node-cjs", "node-esm", "python"])
@pytest.mark.parametrize("name", list(PAYLOADS))
async def test_snippet_runs_as_pasted(
    server: tuple[str, Seen], tmp_path: Path, kind: str, name: str
) -> None:
    base, seen = server
    payload = PAYLOADS[name]
    code = snippet_for(kind, "hello-world", "greet", base, payload)
    code_rc, out, err = await run_snippet(kind, code, tmp_path)
    assert code_rc == 0, err
    [call] = seen.calls
    assert call["status"] == 200
    assert (call["script"], call["function"]) == ("hello-world", "greet")
    assert call["body"] == payload
    printed = json.loads(out)
    echoed = printed["result"] if kind in ("sh", "bash") else printed
    if name != "js_traps" or not kind.startswith("node"):
        assert echoed == payload  # node prints numbers past 2^53 rounded; the server got them exact


@pytest.mark.parametrize("kind", ["sh", "node-cjs", "python"])
@pytest.mark.parametrize("function", FUNCTIONS)
async def test_function_names_reach_the_server(
    server: tuple[str, Seen], tmp_path: Path, kind: str, function: str
) -> None:
    base, seen = server
    code = snippet_for(kind, "hello", function, base, {"x": 1})
    rc, _, err = await run_snippet(kind, code, tmp_path)
    assert rc == 0, err
    assert [(c["function"], c["status"]) for c in seen.calls] == [(function, 200)]


@pytest.mark.parametrize("kind", ["node-cjs", "python"])
async def test_a_refused_key_exits_non_zero_with_the_error(
    server: tuple[str, Seen], tmp_path: Path, kind: str
) -> None:
    base, seen = server
    code = render_snippets("hello", "greet", base, {}).get(
        "python" if kind == "python" else "javascript"
    )
    rc, out, err = await run_snippet(kind, code, tmp_path)  # placeholder left in
    assert rc == 1
    assert "HTTP 401" in err and "bad key" in err
    assert out == ""
    assert seen.calls[0]["authorization"] == f"Bearer {KEY_PLACEHOLDER}"


async def test_endpoint_text_for_one_function_and_format_pipes_into_the_interpreter(
    server: tuple[str, Seen], tmp_path: Path
) -> None:
    base, seen = server
    payloads = {"greet": {"name": "Ada"}}
    for fmt, argv in (
        ("curl", ["sh"]),
        ("python", ["python3", "-I", "-"]),
        ("javascript", ["node"]),
    ):
        text = render_endpoint("hello", ["greet"], base, [fmt], payloads)  # type: ignore[list-item]
        rc, out, err = await run(
            [tool(argv[0]), *argv[1:]], tmp_path, text.replace(KEY_PLACEHOLDER, KEY)
        )
        assert rc == 0, err
        assert "Ada" in out
    assert [c["status"] for c in seen.calls] == [200, 200, 200]


def test_endpoint_text_lists_every_function_and_format() -> None:
    text = render_endpoint("hello", ["a", "b"], "http://127.0.0.1:8080")
    for heading in (
        "# hello.a - cURL",
        "// hello.a - JavaScript (Node.js 18+)",
        "# hello.b - Python",
    ):
        assert heading in text
    assert text.count(KEY_PLACEHOLDER) == 6


def test_javascript_has_no_top_level_await() -> None:
    js = render_snippets("hello", "greet", "http://127.0.0.1:8080", {"a": 1}).javascript
    top_level = [line for line in js.splitlines() if line and not line.startswith((" ", "}", ")"))]
    assert not any("await" in line for line in top_level)


def test_python_snippet_imports_only_the_standard_library() -> None:
    py = render_snippets("hello", "greet", "http://127.0.0.1:8080").python
    imports = {line.split()[1] for line in py.splitlines() if line.startswith("import ")}
    assert imports == {"json", "urllib.error", "urllib.request"}


@pytest.mark.parametrize(
    ("base", "function", "url"),
    [
        ("http://127.0.0.1:8080", "greet", "http://127.0.0.1:8080/v1/scripts/s1/functions/greet"),
        ("http://127.0.0.1:8080/", "$go", "http://127.0.0.1:8080/v1/scripts/s1/functions/$go"),
        ("https://api.example.com/scriptd/", "grüße",
         "https://api.example.com/scriptd/v1/scripts/s1/functions/gr%C3%BC%C3%9Fe"),
        ("http://[::1]:9", "f", "http://[::1]:9/v1/scripts/s1/functions/f"),
    ],
)  # fmt: skip
def test_endpoint_url(base: str, function: str, url: str) -> None:
    assert endpoint_url(base, "s1", function) == url


@pytest.mark.parametrize(
    "base",
    [
        "",
        "127.0.0.1:8080",
        "ftp://x",
        "http://x/'$(id)'",
        "http://x y",
        "http://x/?q=1",
        "http://u@x",
    ],
)
def test_bad_base_urls_are_refused(base: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        endpoint_url(base, "s", "f")


@pytest.mark.parametrize(
    ("host", "port", "public", "base"),
    [
        ("0.0.0.0", 8080, None, "http://127.0.0.1:8080"),
        ("", 8080, None, "http://127.0.0.1:8080"),
        ("::", 80, None, "http://[::1]:80"),
        ("192.0.2.1", 8443, None, "http://192.0.2.1:8443"),
        ("fd00::1", 8080, None, "http://[fd00::1]:8080"),
        ("gw.internal", 8080, None, "http://gw.internal:8080"),
        ("0.0.0.0", 8080, "https://api.example.com/", "https://api.example.com"),
    ],
)
def test_gateway_base_url(host: str, port: int, public: str | None, base: str) -> None:
    assert gateway_base_url(host, port, public) == base


@pytest.mark.parametrize(
    "payload", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}, {"x": "\ud800"}, [1]]
)
def test_payloads_that_are_not_plain_json_are_refused(payload: Any) -> None:
    with pytest.raises(ValueError, match="payload"):
        render_snippets("s", "f", "http://127.0.0.1:1", payload)
