"""Sign-in links and sessions: single use, expiry, CSRF tokens, sign-out."""

from __future__ import annotations

import pytest

from daemon.console.signin import SESSION_TTL_S, SignIn, SignInRefused


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_link_opens_one_session_for_its_user() -> None:
    signin = SignIn(600, Clock())
    token = signin.issue_link_token("alice")
    session_id, session = signin.redeem(token)
    assert session.user == "alice"
    assert signin.session(session_id) is session
    assert session.csrf and session.csrf != session_id != token


def test_a_link_works_once() -> None:
    signin = SignIn(600, Clock())
    token = signin.issue_link_token("alice")
    signin.redeem(token)
    with pytest.raises(SignInRefused, match="used already"):
        signin.redeem(token)


def test_a_link_expires_after_its_ttl() -> None:
    clock = Clock()
    signin = SignIn(600, clock)
    token = signin.issue_link_token("alice")
    clock.now += 600
    with pytest.raises(SignInRefused, match="expired"):
        signin.redeem(token)


def test_a_link_just_before_its_expiry_works() -> None:
    clock = Clock()
    signin = SignIn(600, clock)
    token = signin.issue_link_token("alice")
    clock.now += 599.9
    assert signin.redeem(token)[1].user == "alice"


def test_an_unknown_token_is_refused() -> None:
    with pytest.raises(SignInRefused):
        SignIn(600, Clock()).redeem("made-up")


def test_sign_out_ends_the_session() -> None:
    signin = SignIn(600, Clock())
    session_id, _ = signin.redeem(signin.issue_link_token("alice"))
    signin.end(session_id)
    assert signin.session(session_id) is None


def test_a_session_ends_after_its_ttl() -> None:
    clock = Clock()
    signin = SignIn(600, clock)
    session_id, _ = signin.redeem(signin.issue_link_token("alice"))
    clock.now += SESSION_TTL_S
    assert signin.session(session_id) is None


def test_csrf_token_must_match_exactly() -> None:
    signin = SignIn(600, Clock())
    _, session = signin.redeem(signin.issue_link_token("alice"))
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(None)
    assert not session.csrf_matches("")
    assert not session.csrf_matches(session.csrf + "x")


def test_flashes_are_shown_once() -> None:
    signin = SignIn(600, Clock())
    _, session = signin.redeem(signin.issue_link_token("alice"))
    session.flash("done")
    assert session.take_flashes() == [("success", "done")]
    assert session.take_flashes() == []


def test_peeking_at_a_link_does_not_spend_it() -> None:
    clock = Clock()
    signin = SignIn(600, clock)
    token = signin.issue_link_token("alice")
    assert signin.peek(token) == "alice"
    assert signin.peek(token) == "alice"
    assert signin.redeem(token)[1].user == "alice"
    with pytest.raises(SignInRefused, match="used already"):
        signin.peek(token)
    expiring = signin.issue_link_token("bob")
    clock.now += 600
    with pytest.raises(SignInRefused, match="expired"):
        signin.peek(expiring)
