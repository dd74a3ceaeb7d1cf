"""Endpoint snippets: cURL, JavaScript (fetch) and Python (urllib) code that
calls one function of a deployed script and works when pasted as it is, with
only the API key to fill in.

The key is the literal placeholder ``YOUR_API_KEY`` (``KEY_PLACEHOLDER``), once
per snippet, inside a quoted string: replacing it with a key (whose characters
are ``[A-Za-z0-9_-]``) needs no quoting. A placeholder rather than an
environment variable, because the cURL line is also pasted into HTTP tools that
import cURL commands and do not expand ``$VARS``.

- cURL: every argument single-quoted for POSIX shells (``'`` becomes ``'\\''``).
- JavaScript: no top-level ``await`` (a CommonJS file would refuse it), a
  ``.then`` chain on Node 18+'s global ``fetch``; the payload is an object
  literal unless it holds what a literal would change (a ``__proto__`` key or
  an integer past 2^53), then the JSON text is sent as it is.
- Python: the standard library only (``urllib.request``), so it runs with no
  install on any Python 3.8+.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FORMATS",
    "KEY_PLACEHOLDER",
    "Format",
    "Snippets",
    "endpoint_url",
    "gateway_base_url",
    "render_endpoint",
    "render_snippets",
    "render_step_snippets",
    "step_url",
]

KEY_PLACEHOLDER = "YOUR_API_KEY"
Format = Literal["curl", "javascript", "python"]
FORMATS: tuple[Format, ...] = ("curl", "javascript", "python")
_TITLES = {"curl": "cURL", "javascript": "JavaScript (Node.js 18+)", "python": "Python"}
_COMMENT = {"curl": "#", "javascript": "//", "python": "#"}
_BASE_URL_RE = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._~\-/]*)?|"
    r"https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?(/[A-Za-z0-9._~\-/]*)?"
)
_JS_SAFE_INT = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Snippets:
    url: str
    curl: str
    javascript: str
    python: str

    def get(self, fmt: Format) -> str:
        return {"curl": self.curl, "javascript": self.javascript, "python": self.python}[fmt]


def gateway_base_url(host: str, port: int, public_url: str | None = None) -> str:
    """The base URL that snippets show: ``public_url`` when configured, else
    the listen address, with a wildcard address shown as loopback."""
    if public_url:
        return _check_base_url(public_url)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return _check_base_url(f"http://{host}:{port}")


def endpoint_url(base_url: str, script: str, function: str) -> str:
    """``<base>/v1/scripts/<script>/functions/<function>``, path parts escaped
    (a JavaScript function may be named ``$go`` or ``grüße``)."""
    parts = (urllib.parse.quote(p, safe="$") for p in (script, function))
    return "{}/v1/scripts/{}/functions/{}".format(_check_base_url(base_url), *parts)


def render_snippets(
    script: str, function: str, base_url: str, payload: Mapping[str, Any] | None = None
) -> Snippets:
    """The three snippets for one function; ``payload`` is the example body
    (a JSON object; ``{}`` when None). Raises ValueError for a payload that is
    not plain JSON."""
    body = _check_payload({} if payload is None else payload)
    url = endpoint_url(base_url, script, function)
    return Snippets(url, _curl(url, body), _javascript(url, body), _python(url, body))


def step_url(base_url: str, script: str) -> str:
    """``<base>/v1/scripts/<script>/run``: a code step's route."""
    return f"{_check_base_url(base_url)}/v1/scripts/{urllib.parse.quote(script)}/run"


def render_step_snippets(script: str, base_url: str, inputs: Mapping[str, str]) -> Snippets:
    """The three snippets that run a code step; `inputs` (name -> type code) gives
    the example body, one typed value of each declared input."""
    body = {"inputs": {name: {code: example_value(code)} for name, code in inputs.items()}}
    url = step_url(base_url, script)
    return Snippets(
        url, _curl(url, body), _javascript(url, body, "outputs"), _python(url, body, "outputs")
    )


_UUID = "00000000-0000-4000-8000-000000000000"
_EXAMPLES: dict[str, Any] = {
    "b": True, "d": "2026-12-04", "dt": "2026-12-04T17:00:00Z", "n": 1, "p": "+14155550100",
    "s": "text", "u": _UUID, "l": [], "e": _UUID,
}  # fmt: skip


def example_value(code: str) -> Any:
    """A value of the type code's JSON, to fill an example body."""
    if code.startswith("a["):
        inner = code[2:-1]
        return ["file-id"] if inner in ('"f"', "f") else [example_value(inner)]
    if code.startswith("o<"):
        return "option"
    return _EXAMPLES.get(code[0] if code.startswith("e<") else code, "")


def render_endpoint(
    script: str,
    functions: Iterable[str],
    base_url: str,
    formats: Iterable[Format] = FORMATS,
    payloads: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The text of ``scriptctl endpoint``: for each function, each format under a
    heading written as a comment of that language, so that a single function
    in a single format can be piped straight into sh, node or python."""
    blocks: list[str] = []
    for function in functions:
        snippets = render_snippets(script, function, base_url, (payloads or {}).get(function))
        for fmt in formats:
            heading = f"{_COMMENT[fmt]} {script}.{function} - {_TITLES[fmt]}"
            blocks.append(f"{heading}\n{snippets.get(fmt)}")
    return "\n".join(blocks)


def _curl(url: str, body: Mapping[str, Any]) -> str:
    lines = [
        f"curl -X POST {_sh(url)}",
        f"  -H {_sh(f'Authorization: Bearer {KEY_PLACEHOLDER}')}",
        f"  -H {_sh('Content-Type: application/json')}",
        f"  --data-raw {_sh(json.dumps(body, ensure_ascii=False))}",
    ]
    return " \\\n".join(lines) + "\n"


def _javascript(url: str, body: Mapping[str, Any], answer: str = "result") -> str:
    if _literal_would_change(body):
        declare = f"const body = {_js_str(json.dumps(body, ensure_ascii=False))};"
        send = "body"
    else:
        declare = f"const payload = {json.dumps(body, indent=2, ensure_ascii=False)};"
        send = "JSON.stringify(payload)"
    return f"""\
const url = {_js_str(url)};
const apiKey = {_js_str(KEY_PLACEHOLDER)};
{declare}

fetch(url, {{
  method: "POST",
  headers: {{
    "Authorization": `Bearer ${{apiKey}}`,
    "Content-Type": "application/json",
  }},
  body: {send},
}})
  .then(async (response) => {{
    const text = await response.text();
    if (!response.ok) {{
      throw new Error(`HTTP ${{response.status}}: ${{text}}`);
    }}
    console.log(JSON.stringify(JSON.parse(text).{answer}, null, 2));
  }})
  .catch((error) => {{
    console.error(error);
    process.exitCode = 1;
  }});
"""


def _python(url: str, body: Mapping[str, Any], answer: str = "result") -> str:
    return f"""\
# Standard library only. With requests installed, the call is also:
#   requests.post(URL, json=payload, headers={{"Authorization": f"Bearer {{API_KEY}}"}})
import json
import urllib.error
import urllib.request

URL = {_py(url)}
API_KEY = {_py(KEY_PLACEHOLDER)}
payload = {_py(body)}

request = urllib.request.Request(
    URL,
    data=json.dumps(payload).encode("utf-8"),
    headers={{"Authorization": f"Bearer {{API_KEY}}", "Content-Type": "application/json"}},
    method="POST",
)
try:
    with urllib.request.urlopen(request) as response:
        body = json.load(response)
except urllib.error.HTTPError as error:
    raise SystemExit(f"HTTP {{error.code}}: {{error.read().decode('utf-8', 'replace')}}")
print(json.dumps(body["{answer}"], indent=2))
"""


def _sh(text: str) -> str:
    """One POSIX shell word, single-quoted: nothing inside is expanded."""
    return "'" + text.replace("'", "'\\''") + "'"


def _js_str(text: str) -> str:
    # A JSON string is a JavaScript string literal (ES2019 allows U+2028/9 in it).
    return json.dumps(text, ensure_ascii=False)


def _py(value: Any, depth: int = 0) -> str:
    """A Python literal for a JSON value, indented like black would."""
    pad, inner = "    " * depth, "    " * (depth + 1)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = "".join(f"{inner}{_py(k)}: {_py(v, depth + 1)},\n" for k, v in value.items())
        return "{\n" + items + pad + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[\n" + "".join(f"{inner}{_py(v, depth + 1)},\n" for v in value) + pad + "]"
    if isinstance(value, str):
        # JSON's string escapes (\" \\ \n \t \b \f \r \uXXXX) mean the same in Python.
        return json.dumps(value, ensure_ascii=False)
    return repr(value)  # None, True, False, int, float (finite: checked before)


def _literal_would_change(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(k == "__proto__" or _literal_would_change(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_literal_would_change(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > _JS_SAFE_INT


def _check_payload(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ValueError("the example payload must be a JSON object")
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # refuses unpaired surrogates
    except (TypeError, ValueError) as error:
        raise ValueError(f"the example payload is not plain JSON: {error}") from None
    # What the gateway will receive: string keys, lists for tuples.
    normal: dict[str, Any] = json.loads(text)
    return normal


def _check_base_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if not _BASE_URL_RE.fullmatch(base):
        raise ValueError(
            f"gateway base URL {base_url!r} must look like http://host:port or "
            "https://host[:port][/path], with no query, quotes or spaces"
        )
    return base
