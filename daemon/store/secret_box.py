"""Encryption at rest of integration secrets: AES-256-GCM from `cryptography`.

The key is 32 random bytes in a file. systemd's credentials directory
($CREDENTIALS_DIRECTORY/scriptd-secrets-key, LoadCredential=) wins when set; otherwise
the key lives beside the store's database, mode 0600, created on first use. Each value
gets a fresh 96-bit nonce, and its secret's name is the associated data, so a
ciphertext copied onto another name does not decrypt.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["CREDENTIAL_NAME", "KEY_FILE", "SecretBox", "SecretBoxError", "key_path"]

CREDENTIAL_NAME = "scriptd-secrets-key"
KEY_FILE = "secrets.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12


class SecretBoxError(Exception):
    """The key file is unusable, or a stored value does not decrypt with it."""


def key_path(database: Path) -> Path:
    """Where the key is: the systemd credential if there is one, else beside `database`."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL_NAME).is_file():
        return Path(creds) / CREDENTIAL_NAME
    return database.parent / KEY_FILE


def _load_or_create(path: Path) -> bytes:
    try:  # O_EXCL: two daemons starting at once never write two different keys
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        key = path.read_bytes()
    else:
        key = os.urandom(_KEY_BYTES)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
    if len(key) != _KEY_BYTES:
        raise SecretBoxError(f"{path}: a secrets key must be {_KEY_BYTES} bytes, not {len(key)}")
    return key


class SecretBox:
    """Seals and opens secret values with one key (read, or made, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._aead: AESGCM | None = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(_load_or_create(self.path))
        return self._aead

    def seal(self, name: str, value: str) -> bytes:
        """nonce || ciphertext+tag of `value`, bound to `name`."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._cipher().encrypt(nonce, value.encode(), name.encode())

    def open(self, name: str, sealed: bytes) -> str:
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            return self._cipher().decrypt(nonce, body, name.encode()).decode()
        except InvalidTag:
            raise SecretBoxError(
                f"secret {name!r} does not decrypt with the key in {self.path}"
            ) from None
