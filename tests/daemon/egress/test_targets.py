"""Request targets: absolute URLs to the proxy (parsed once per distinct URL) and
origin-form paths inside a tunnel."""

from __future__ import annotations

import pytest

from daemon.egress.messages import Head
from daemon.egress.targets import BadRequest, RequestTarget, absolute_target, tunnel_target


def head(target: bytes) -> Head:
    return Head(method=b"GET", target=target)


def test_an_absolute_url_names_scheme_host_port_path_and_host_header() -> None:
    url = b"http://user@API.Example.com:8080/a/b?x=1#frag"
    target = absolute_target(head(url))
    assert target == RequestTarget(
        "http", "api.example.com", 8080, url.decode(), b"/a/b?x=1", b"user@API.Example.com:8080"
    )
    assert absolute_target(head(url)) is target  # parsed once, then reused
    assert absolute_target(head(b"https://[::1]")).port == 443
    assert absolute_target(head(b"https://[::1]")).path == b"/"


def test_long_urls_are_parsed_each_time_and_bad_ones_always_refused() -> None:
    long = b"http://a.example/" + b"x" * 5000
    first, again = absolute_target(head(long)), absolute_target(head(long))
    assert first == again and first is not again
    for _ in range(2):
        with pytest.raises(BadRequest, match="absolute http:// or https:// URLs"):
            absolute_target(head(b"/relative"))
        with pytest.raises(BadRequest, match="bad port"):
            absolute_target(head(b"http://a.example:99999/"))


def test_paths_inside_a_tunnel() -> None:
    target_of = tunnel_target("https", "::1", 8443)
    target = target_of(head(b"/p?q=1"))
    assert target == RequestTarget(
        "https", "::1", 8443, "https://[::1]:8443/p?q=1", b"/p?q=1", None
    )
    assert target_of(head(b"/p?q=1")) is target
    assert tunnel_target("http", "a.example", 80)(head(b"/")).url == "http://a.example/"
    with pytest.raises(BadRequest, match="/path target"):
        target_of(head(b"http://other.example/"))
    for n in range(200):  # the paths kept per tunnel stay bounded
        assert target_of(head(b"/n/%d" % n)).path == b"/n/%d" % n
