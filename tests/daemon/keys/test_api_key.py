"""Key format, strict parsing, the argon2id hash and the key name rules."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.keys import api_key
from daemon.keys.api_key import (
    KEY_LENGTH,
    KeyNameError,
    KeyNameTaken,
    ParsedKey,
    choose_key_name,
    mint_key,
    needs_rehash,
    parse_authorization,
    parse_key,
    validate_key_name,
    verify_secret,
)

KEY_RE = re.compile(r"sk_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def minted() -> api_key.MintedKey:
    return mint_key()


def test_minted_key_has_the_documented_shape(minted: api_key.MintedKey) -> None:
    assert KEY_RE.fullmatch(minted.key)
    assert len(minted.key) == KEY_LENGTH == 59
    assert minted.key.startswith(f"sk_{minted.key_id}_")
    assert parse_key(minted.key) == ParsedKey(minted.key_id, minted.key[16:])
    assert len(base64.urlsafe_b64decode(minted.key[16:] + "=")) == 32


def test_minted_keys_differ() -> None:
    a, b = mint_key(), mint_key()
    assert a.key_id != b.key_id and a.key[16:] != b.key[16:] and a.hash != b.hash


def test_hash_is_argon2id_with_the_chosen_parameters(minted: api_key.MintedKey) -> None:
    assert minted.hash.startswith(
        f"$argon2id$v=19$m={api_key.ARGON2_MEMORY_KIB},t={api_key.ARGON2_TIME_COST},"
        f"p={api_key.ARGON2_PARALLELISM}$"
    )
    assert not needs_rehash(minted.hash)


def test_hash_never_contains_the_secret(minted: api_key.MintedKey) -> None:
    secret = minted.key[16:]
    raw = base64.urlsafe_b64decode(secret + "=")
    forms = {
        minted.key,
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        raw.hex(),
        secret[:16],
        secret[-16:],
    }
    for form in forms:
        assert form not in minted.hash


def test_verify_accepts_the_secret_and_refuses_others(minted: api_key.MintedKey) -> None:
    secret = minted.key[16:]
    assert verify_secret(minted.hash, secret)
    other = mint_key().key[16:]
    assert not verify_secret(minted.hash, other)
    assert not verify_secret(minted.hash, secret[:-1] + ("A" if secret[-1] != "A" else "E"))
    assert not verify_secret(minted.hash, minted.key)


def test_verify_refuses_a_corrupt_stored_hash(minted: api_key.MintedKey) -> None:
    assert not verify_secret("not a hash", minted.key[16:])
    assert not verify_secret(minted.hash[:-4], minted.key[16:])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sk_",
        "sk_abcdefghijkl_",
        "SK_abcdefghijkl_" + "A" * 43,
        "pk_abcdefghijkl_" + "A" * 43,
        "sk_abcdefghijk_" + "A" * 44,  # id one short
        "sk_abcdefghijklm_" + "A" * 42,  # id one long
        "sk_abcdefghij-l_" + "A" * 43,  # "-" not allowed in the id
        "sk_abcdefghijkl_" + "A" * 42,
        "sk_abcdefghijkl_" + "A" * 44,
        "sk_abcdefghijkl_" + "A" * 42 + "=",
        "sk_abcdefghijkl_" + "A" * 42 + "+",
        "sk_abcdefghijkl_" + "A" * 42 + "/",
        "sk_abcdefghijkl_" + "A" * 42 + "B",  # non-canonical last character
        " sk_abcdefghijkl_" + "A" * 43,
        "sk_abcdefghijkl_" + "A" * 43 + "\n",
        "sk_abcdefghijkl_" + "A" * 43 + " ",
        "sk_abcdéfghijkl_" + "A" * 43,
        "sk_abcdefghijkl_" + "A" * 42 + "\u0410",  # Cyrillic A
        "sk_abcdefghijkl-" + "A" * 43,
    ],
)
def test_parse_refuses_malformed_keys(text: str) -> None:
    assert parse_key(text) is None


def test_parse_accepts_canonical_last_characters() -> None:
    # 32 bytes leave the two low bits of the last character unused: A E I ... 0 4 8 c g ...
    canonical = {c for c in "AEIMQUYcgkosw048"}
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for c in alphabet:
        parsed = parse_key("sk_abcdefghijkl_" + "A" * 42 + c)
        assert (parsed is not None) == (c in canonical), c


@given(st.text(max_size=80))
def test_parse_never_raises_and_accepts_only_the_key_shape(text: str) -> None:
    parsed = parse_key(text)
    if parsed is not None:
        assert KEY_RE.fullmatch(text)
        assert text == f"sk_{parsed.key_id}_{parsed.secret}"


@given(st.binary(min_size=32, max_size=32), st.text("abcXYZ019", min_size=12, max_size=12))
def test_every_secret_round_trips(raw: bytes, key_id: str) -> None:
    secret = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert parse_key(f"sk_{key_id}_{secret}") == ParsedKey(key_id, secret)


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=59, max_size=59))
def test_random_ascii_of_key_length_parses_only_when_canonical(text: str) -> None:
    parsed = parse_key(text)
    if parsed is not None:
        raw = base64.urlsafe_b64decode(parsed.secret + "=")
        assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == parsed.secret


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER   abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("Token abc", None),
        ("abc", None),
        ("", None),
        ("Bearerabc", None),
    ],
)
def test_parse_authorization(header: str, token: str | None) -> None:
    assert parse_authorization(header) == token


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Secret Key", "Secret Key"),
        ("  prod  ", "prod"),
        ("x", "x"),
        ("é" * 64, "é" * 64),
        ("e\u0301", "é"),  # NFC
        ("billing / CRM #2 (ro)", "billing / CRM #2 (ro)"),
        ("日本語のキー", "日本語のキー"),
    ],
)
def test_valid_key_names(raw: str, name: str) -> None:
    assert validate_key_name(raw) == name


@pytest.mark.parametrize(
    "raw", ["", "   ", "a" * 65, "tab\there", "new\nline", "nul\x00", "nbsp\u00a0x", "\u200b"]
)
def test_invalid_key_names(raw: str) -> None:
    with pytest.raises(KeyNameError):
        validate_key_name(raw)


def test_default_name_and_its_successors() -> None:
    assert choose_key_name(None, []) == "Secret Key"
    assert choose_key_name(None, ["Secret Key"]) == "Secret Key 2"
    assert choose_key_name(None, ["Secret Key", "Secret Key 2", "x"]) == "Secret Key 3"
    assert choose_key_name(None, ["Secret Key 2"]) == "Secret Key"


def test_given_name_must_be_free_and_valid() -> None:
    assert choose_key_name(" prod ", ["Secret Key"]) == "prod"
    with pytest.raises(KeyNameTaken, match="already has a key named 'prod'"):
        choose_key_name("prod ", ["prod"])
    with pytest.raises(KeyNameError):
        choose_key_name("", [])
    assert choose_key_name("Prod", ["prod"]) == "Prod"


@given(st.text(max_size=100))
def test_validate_key_name_either_returns_a_valid_name_or_raises(raw: str) -> None:
    try:
        name = validate_key_name(raw)
    except KeyNameError:
        return
    assert 1 <= len(name) <= 64
    assert name == name.strip() and name.isprintable()
    assert validate_key_name(name) == name
