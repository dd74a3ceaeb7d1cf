"""The request log's pure parts: headers as text with secrets redacted in their raw
bytes, and the log as JSON (the same document dataclasses.asdict would give)."""

from __future__ import annotations

import dataclasses

from daemon.egress.httplog import Redactor, RequestLog

SECRET = "tok-9f8e7d6c5b4a"


def test_headers_without_a_secret_are_latin_1_text() -> None:
    heads = [(b"Host", b"example.com"), (b"X-Name", "caf\u00e9".encode("latin-1"))]
    for redactor in (Redactor({}), Redactor({"K": SECRET})):
        assert redactor.headers(heads) == [["Host", "example.com"], ["X-Name", "caf\u00e9"]]


def test_every_form_of_a_secret_is_redacted_in_names_and_values() -> None:
    redactor = Redactor({"K": SECRET, "PW": "p\u00e4ss-w\u00f6rd-1"})
    heads = [
        (b"Authorization", b"Bearer " + SECRET.encode()),
        (b"X-" + SECRET.encode(), b"1"),
        (b"X-Quoted", b"tok-9f8e7d6c5b4a%21"),
        (b"X-Utf8", "p\u00e4ss-w\u00f6rd-1".encode()),  # a UTF-8 secret, as a client sends it
        (b"Accept", b"*/*"),
    ]
    assert redactor.headers(heads) == [
        ["Authorization", "Bearer [secret K]"],
        ["X-[secret K]", "1"],
        ["X-Quoted", "[secret K]%21"],
        ["X-Utf8", "[secret PW]"],
        ["Accept", "*/*"],
    ]


def test_the_log_as_json_is_what_asdict_gives() -> None:
    log = RequestLog(Redactor({"K": SECRET}))
    entry = log.begin_request("GET", f"http://a.example/?k={SECRET}", [(b"Host", b"a.example")])
    assert entry is not None
    entry.status, entry.response_headers = 200, [["Content-Length", "2"]]
    log.begin_tunnel("b.example", 443)
    log.refused("GET", "http://10.0.0.1/", "private", "egress: 10.0.0.1 is a private address")
    doc = log.to_json()
    assert doc["requests"] == [
        dataclasses.asdict(entry) | {"kind": "http"},
        dataclasses.asdict(log.entries[1]) | {"kind": "tunnel"},
    ]
    assert doc["refusals"] == [dataclasses.asdict(log.refusals[0])]
    assert doc["requests"][0]["url"] == "http://a.example/?k=[secret K]"
    entry.response_headers = [["Changed", "later"]]  # a request still running
    assert doc["requests"][0]["response_headers"] == [["Content-Length", "2"]]
