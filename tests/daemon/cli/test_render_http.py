from __future__ import annotations

from daemon.cli.render_calls import execution

LOG = {
    "total": 3,
    "requests": [
        {"kind": "http", "method": "GET", "url": "https://api.example.com/v1/x", "status": 200,
         "duration_ms": 12.34, "bytes_out": 120, "bytes_in": 2048, "error": None},
        {"kind": "tunnel", "host": "files.example.com", "port": 443, "duration_ms": 50.0,
         "bytes_out": 500, "bytes_in": 9000, "error": None},
    ],
    "not_detailed": 0,
    "refusals": [{"method": "GET", "target": "http://10.0.0.5/", "rule": "private address",
                  "message": "egress: 10.0.0.5 is a private address; allowed: ..."}],
    "bytes_out": 620,
    "bytes_in": 11048,
}  # fmt: skip


def test_an_execution_shows_its_http_log() -> None:
    text = execution({"id": "e1", "status": "ok", "function": "f", "http_log": LOG})
    assert "HTTP requests\n  3 sent, 1 refused, 0 past the first 100 not detailed;" in text
    assert "  GET https://api.example.com/v1/x -> 200 (12.3 ms, 120 B out, 2.0 KB in)" in text
    assert "  HTTPS files.example.com:443 (not inspected) -> tunnel" in text
    assert "  refused GET http://10.0.0.5/\n    egress: 10.0.0.5 is a private address" in text


def test_an_execution_without_http_shows_no_section() -> None:
    assert "HTTP requests" not in execution({"id": "e1", "status": "ok", "function": "f"})
