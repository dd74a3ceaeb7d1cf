"""The Node harness reads NO_PROXY as Python's urllib does (exact names, `.example.com`
suffixes, `host:port`, `*`), plus `*.example.com` and bracketed IPv6 entries: each case
is decided by the harness's own `bypassed` in node and, where urllib has an opinion,
by urllib.request.proxy_bypass_environment too."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require

EGRESS_MJS = Path(__file__).resolve().parents[2] / "runtimes" / "node" / "egress.mjs"

# (NO_PROXY, host, port, goes direct)
SHARED_WITH_URLLIB = [
    ("localhost,127.0.0.1,::1", "localhost", 80, True),
    ("localhost,127.0.0.1,::1", "127.0.0.1", 8080, True),
    ("localhost,127.0.0.1", "example.com", 443, False),
    ("example.com", "example.com", 443, True),
    ("example.com", "api.example.com", 443, True),
    ("example.com", "notexample.com", 443, False),
    (".example.com", "api.example.com", 80, True),
    (".example.com", "example.com", 80, True),
    ("Example.COM", "API.example.com", 80, True),
    (" internal , example.com ", "internal", 80, True),
    ("example.com:8080", "example.com", 8080, True),
    ("example.com:8080", "example.com", 443, False),
    ("example.com:8080", "api.example.com", 8080, True),
    ("*", "anything.test", 443, True),
    ("", "example.com", 443, False),
]
BEYOND_URLLIB = [
    ("*.example.com", "api.example.com", 443, True),
    ("*.example.com", "example.com", 443, True),
    ("*.example.com", "example.org", 443, False),
    ("::1", "::1", 80, True),
    ("[::1]:8080", "::1", 8080, True),
    ("[::1]:8080", "::1", 80, False),
]


@pytest.fixture(scope="module")
def node_decisions() -> dict[tuple[str, str, int], bool]:
    require(shutil.which("node") is not None, "node is not installed")
    cases = [
        (no_proxy, host, port) for no_proxy, host, port, _ in SHARED_WITH_URLLIB + BEYOND_URLLIB
    ]
    script = (
        f"import {{ bypassed }} from {json.dumps(EGRESS_MJS.as_uri())};\n"
        "const cases = JSON.parse(process.argv[1]);\n"
        "const decide = ([np, h, p]) => bypassed({ NO_PROXY: np }, h, p);\n"
        "console.log(JSON.stringify(cases.map(decide)));\n"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(zip(cases, json.loads(out.stdout), strict=True))


@pytest.mark.parametrize(("no_proxy", "host", "port", "direct"), SHARED_WITH_URLLIB)
def test_node_agrees_with_urllib(
    node_decisions: dict[tuple[str, str, int], bool],
    no_proxy: str,
    host: str,
    port: int,
    direct: bool,
) -> None:
    by_urllib = urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
        f"{host}:{port}", {"no": no_proxy}
    )
    assert bool(by_urllib) is direct
    assert node_decisions[(no_proxy, host, port)] is direct


@pytest.mark.parametrize(("no_proxy", "host", "port", "direct"), BEYOND_URLLIB)
def test_node_wildcards_and_ipv6(
    node_decisions: dict[tuple[str, str, int], bool],
    no_proxy: str,
    host: str,
    port: int,
    direct: bool,
) -> None:
    assert node_decisions[(no_proxy, host, port)] is direct
