"""API keys: the key format, minting, the argon2id hash, and key name rules.

A key reads ``sk_<id>_<secret>``: ``id`` is 12 alphanumeric characters, public,
and is the primary key of the stored row (so an unknown key is refused by one
lookup, without argon2); ``secret`` is 32 bytes of ``os.urandom`` in unpadded
base64url (43 characters). Only an argon2id hash of the secret text is stored;
the whole key exists once, in the answer to the create request.

Everything here is pure or blocking-and-CPU-bound (hashing): callers on the
event loop run ``mint_key`` and ``verify_secret`` in a thread. Checking keys on
the request path (cache, throttle, threads) lives in ``daemon.keys.checker``.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "ARGON2_MEMORY_KIB",
    "ARGON2_PARALLELISM",
    "ARGON2_TIME_COST",
    "DEFAULT_KEY_NAME",
    "KEY_LENGTH",
    "KEY_NAME_MAX",
    "KEY_PREFIX",
    "KeyNameError",
    "KeyNameTaken",
    "KeyRecord",
    "MintedKey",
    "ParsedKey",
    "choose_key_name",
    "hash_secret",
    "mint_key",
    "needs_rehash",
    "parse_authorization",
    "parse_key",
    "validate_key_name",
    "verify_secret",
]

KEY_PREFIX = "sk_"
KEY_ID_LENGTH = 12
SECRET_BYTES = 32
SECRET_LENGTH = 43  # unpadded base64url of 32 bytes
KEY_LENGTH = len(KEY_PREFIX) + KEY_ID_LENGTH + 1 + SECRET_LENGTH  # 59
# The id avoids "_" and "-" so the id/secret boundary is obvious to a human eye,
# and a key id can be typed or logged without quoting.
_ID_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"sk_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})", re.ASCII)

# OWASP's argon2id floor (19 MiB, t=2, p=1). Measured on the 2-vCPU AMD EPYC
# development host: verify median 20 ms (19-21 ms over 15 runs). The secret has
# 256 bits of entropy, so the hash only has to make a stolen database useless
# to brute force; more cost would only make the gateway easier to burn.
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19456
ARGON2_PARALLELISM = 1
_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)

DEFAULT_KEY_NAME = "Secret Key"
KEY_NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One stored key, as the store returns it: never holds the secret."""

    id: str
    script: str  # the script's name, as it appears in gateway URLs
    name: str
    hash: str  # argon2id PHC string of the secret part


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A new key: ``key`` is shown once to the caller, ``hash`` is stored."""

    key_id: str
    key: str
    hash: str


def parse_key(text: str) -> ParsedKey | None:
    """The id and secret of a well-formed key, or None. Strict: no whitespace,
    exact lengths, and the secret must be canonical base64url (the two unused
    low bits of its last character are zero), so one key has one spelling."""
    match = _KEY_RE.fullmatch(text)
    if match is None:
        return None
    key_id, secret = match.groups()
    raw = base64.urlsafe_b64decode(secret + "=")
    if _b64(raw) != secret:
        return None
    return ParsedKey(key_id, secret)


def parse_authorization(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when the
    scheme is not Bearer. The scheme is case-insensitive (RFC 9110 11.1)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.lstrip(" ")
    return token or None


def mint_key() -> MintedKey:
    """A fresh key and its hash. Blocking (one argon2 hash, ~20 ms): call it
    through ``asyncio.to_thread`` from the event loop. The store's primary key on
    ``id`` catches the (2^-71 per pair) collision; the caller retries on it."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    secret = _b64(os.urandom(SECRET_BYTES))
    return MintedKey(key_id, f"{KEY_PREFIX}{key_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """True when ``secret`` matches ``stored_hash``. Blocking (~20 ms). A stored
    hash that cannot be parsed refuses the key rather than raising."""
    try:
        return _HASHER.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when a hash was made with other parameters than today's."""
    return _HASHER.check_needs_rehash(stored_hash)


class KeyNameError(ValueError):
    """A key name that breaks the naming rule (maps to 400 bad_request)."""


class KeyNameTaken(KeyNameError):
    """A key name already used by this script (maps to 409 conflict)."""


def validate_key_name(raw: str) -> str:
    """The name to store for ``raw``: NFC-normalised and trimmed; 1 to 64
    printable characters (letters, digits, punctuation, symbols and plain
    spaces; no control characters, tabs, newlines or other separators)."""
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise KeyNameError("key name is empty: give 1 to 64 printable characters")
    if len(name) > KEY_NAME_MAX:
        raise KeyNameError(f"key name is {len(name)} characters long: the limit is {KEY_NAME_MAX}")
    bad = next((ch for ch in name if not ch.isprintable()), None)
    if bad is not None:
        raise KeyNameError(
            f"key name contains the non-printable character U+{ord(bad):04X}: "
            "use letters, digits, punctuation and spaces"
        )
    return name


def choose_key_name(raw: str | None, existing: Iterable[str]) -> str:
    """The name for a new key of a script whose keys are named ``existing``.
    No name given: "Secret Key", or "Secret Key 2", "Secret Key 3", ... when
    taken. A given name must pass ``validate_key_name`` and be free. Names
    compare exactly (after trimming and NFC), as ``keys delete`` matches them."""
    taken = set(existing)
    if raw is None:
        return next(
            name
            for n in range(1, len(taken) + 2)
            if (name := DEFAULT_KEY_NAME if n == 1 else f"{DEFAULT_KEY_NAME} {n}") not in taken
        )
    name = validate_key_name(raw)
    if name in taken:
        raise KeyNameTaken(f"this script already has a key named {name!r}: choose another name")
    return name


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
