"""The request log's pure parts: headers as text with secrets redacted in their raw
bytes, the log as JSON (the same document dataclasses.asdict would give), and a head
sent again made text once (tuples, serialised as the same arrays)."""

from __future__ import annotations

import dataclasses

import orjson

from daemon.egress.httplog import BODY_LIMIT, Redactor, RequestLog

SECRET = "tok-9f8e7d6c5b4a"


def test_headers_without_a_secret_are_latin_1_text() -> None:
    heads = [(b"Host", b"example.com"), (b"X-Name", "caf\u00e9".encode("latin-1"))]
    for redactor in (Redactor({}), Redactor({"K": SECRET})):
        assert redactor.headers(heads) == (("Host", "example.com"), ("X-Name", "caf\u00e9"))


def test_every_form_of_a_secret_is_redacted_in_names_and_values() -> None:
    redactor = Redactor({"K": SECRET, "PW": "p\u00e4ss-w\u00f6rd-1"})
    heads = [
        (b"Authorization", b"Bearer " + SECRET.encode()),
        (b"X-" + SECRET.encode(), b"1"),
        (b"X-Quoted", b"tok-9f8e7d6c5b4a%21"),
        (b"X-Utf8", "p\u00e4ss-w\u00f6rd-1".encode()),  # a UTF-8 secret, as a client sends it
        (b"Accept", b"*/*"),
    ]
    assert redactor.headers(heads) == (
        ("Authorization", "Bearer [secret K]"),
        ("X-[secret K]", "1"),
        ("X-Quoted", "[secret K]%21"),
        ("X-Utf8", "[secret PW]"),
        ("Accept", "*/*"),
    )


def test_the_log_as_json_is_text_with_secrets_redacted() -> None:
    log = RequestLog(Redactor({"K": SECRET}))
    head = [(b"Host", b"a.example"), (b"Authorization", b"Bearer " + SECRET.encode())]
    entry = log.begin_request("GET", f"http://a.example/?k={SECRET}", head)
    assert entry is not None
    log.record_body(entry, b"{" + SECRET.encode() + b"}" + b"x" * 2000, 2003 + len(SECRET))
    entry.status, entry.response_headers = 200, [(b"Content-Length", b"2")]
    log.begin_tunnel("b.example", 443)
    log.refused("GET", "http://10.0.0.1/", "private", "egress: 10.0.0.1 is a private address")
    doc = log.to_json()
    request, tunnel = doc["requests"]
    assert request["url"] == "http://a.example/?k=[secret K]"
    assert request["request_headers"] == (
        ("Host", "a.example"),
        ("Authorization", "Bearer [secret K]"),
    )
    assert request["request_body"] == "{[secret K]}" + "x" * (BODY_LIMIT - 12)
    assert request["request_body_truncated"] is True
    assert request["status"] == 200 and request["response_headers"] == (("Content-Length", "2"),)
    assert request["kind"] == "http" and SECRET not in str(doc)
    assert tunnel == dataclasses.asdict(log.entries[1]) | {"kind": "tunnel"}
    assert doc["refusals"] == [dataclasses.asdict(log.refusals[0])]
    entry.response_headers = [(b"Changed", b"later")]  # a request still running
    assert request["response_headers"] == (("Content-Length", "2"),)


def test_a_secret_in_one_entry_of_many_is_redacted_where_it_is() -> None:
    # The log is searched for secrets in one pass; a hit in any entry must still
    # redact that entry, wherever the secret sits (URL, header, body, response).
    for where in ("url", "header", "body", "response"):
        log = RequestLog(Redactor({"K": SECRET}))
        for i in range(5):
            secret_here = i == 3
            query = f"?k={SECRET}" if secret_here and where == "url" else ""
            url = f"http://a.example/{i}{query}"
            value = SECRET.encode() if secret_here and where == "header" else b"plain"
            entry = log.begin_request("GET", url, [(b"X-Value", value)])
            assert entry is not None
            body = SECRET.encode() if secret_here and where == "body" else b"body"
            log.record_body(entry, body, len(body))
            reply = SECRET.encode() if secret_here and where == "response" else b"ok"
            entry.status, entry.response_headers = 200, [(b"X-Reply", reply)]
        doc = log.to_json()
        assert SECRET not in str(doc) and "[secret K]" in str(doc["requests"][3]), where
        assert doc["requests"][0]["request_headers"] == (("X-Value", "plain"),)


def test_a_head_sent_again_is_made_text_once_and_serialised_as_arrays() -> None:
    log = RequestLog(Redactor({"K": SECRET}))
    same = [(b"Host", b"a.example"), (b"Accept", b"*/*")]
    for n in range(3):
        entry = log.begin_request("GET", f"http://a.example/{n}", list(same))
        assert entry is not None
        entry.status, entry.response_headers = 200, [(b"X-N", b"%d" % n)]
    first, second, third = log.to_json()["requests"]
    assert first["request_headers"] is second["request_headers"] is third["request_headers"]
    assert [e["response_headers"] for e in (first, second, third)] == [
        (("X-N", "0"),),
        (("X-N", "1"),),
        (("X-N", "2"),),
    ]
    assert orjson.loads(orjson.dumps(first))["request_headers"] == [
        ["Host", "a.example"],
        ["Accept", "*/*"],
    ]


def test_a_secret_in_a_head_that_repeats_is_redacted_in_every_entry() -> None:
    # The one search joins each distinct head once: a secret in a head that comes
    # again (equal, not the same list) and one in a head seen only later both count.
    log = RequestLog(Redactor({"K": SECRET}))
    sent = [(b"Authorization", b"Bearer " + SECRET.encode())]
    for n in range(4):
        entry = log.begin_request("GET", f"http://a.example/{n}", list(sent))
        assert entry is not None
        reply = SECRET.encode() if n == 3 else b"ok"
        entry.status, entry.response_headers = 200, [(b"X-Reply", reply)]
    requests = log.to_json()["requests"]
    assert SECRET not in str(requests)
    assert all(r["request_headers"] == (("Authorization", "Bearer [secret K]"),) for r in requests)
    assert requests[3]["response_headers"] == (("X-Reply", "[secret K]"),)
    assert requests[0]["response_headers"] == (("X-Reply", "ok"),)
