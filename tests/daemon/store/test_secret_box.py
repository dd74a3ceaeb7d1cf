"""AES-GCM sealing of secret values and the key file's life."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from daemon.store.secret_box import CREDENTIAL_NAME, SecretBox, SecretBoxError, key_path


def test_seal_then_open_round_trips_and_never_holds_the_value(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "secrets.key")
    sealed = box.seal("API_TOKEN", "hunter2-value")
    assert b"hunter2-value" not in sealed
    assert box.seal("API_TOKEN", "hunter2-value") != sealed  # a fresh nonce each time
    assert box.open("API_TOKEN", sealed) == "hunter2-value"


def test_the_key_is_made_on_first_use_with_mode_0600_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    box = SecretBox(path)
    assert not path.exists()
    sealed = box.seal("A", "v")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert SecretBox(path).open("A", sealed) == "v"  # a restarted daemon reads it back


def test_a_value_moved_to_another_name_or_key_does_not_open(tmp_path: Path) -> None:
    sealed = SecretBox(tmp_path / "k1").seal("A", "v")
    with pytest.raises(SecretBoxError, match="'B' does not decrypt"):
        SecretBox(tmp_path / "k1").open("B", sealed)
    with pytest.raises(SecretBoxError, match="does not decrypt"):
        SecretBox(tmp_path / "k2").open("A", sealed)


def test_a_key_file_of_the_wrong_size_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.key").write_bytes(b"short")
    with pytest.raises(SecretBoxError, match="must be 32 bytes, not 5"):
        SecretBox(tmp_path / "secrets.key").seal("A", "v")


def test_the_systemd_credential_wins_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "state" / "scriptd.db"
    assert key_path(database) == tmp_path / "state" / "secrets.key"
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert key_path(database) == tmp_path / "state" / "secrets.key"  # no such credential
    (creds / CREDENTIAL_NAME).write_bytes(b"k" * 32)
    assert key_path(database) == creds / CREDENTIAL_NAME
