"""Secret environment variables at rest: sealed in scripts and in every version's
snapshot, opened only by `env_values`, and the migration that seals the values an
older daemon stored in clear (leaving no clear copy anywhere in the files)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import apsw
import orjson
import pytest

from daemon.core.models import EnvVar, Sealed, Settings
from daemon.store.database import Store
from daemon.store.schema import MIGRATIONS
from daemon.store.sealed_env import seal_clear_env
from daemon.store.secret_box import CREDENTIAL_NAME, KEY_FILE, SecretBox, SecretBoxError
from tests.daemon.store.test_database import SNAPSHOT_JSON, a_script, a_version, ev

VALUE = "sv-3f9c2a71-the-secret-itself"
DELETED_VALUE = "sv-0a6e11d4-of-a-deleted-script"


def files_bytes(directory: Path) -> bytes:
    """Every byte of the database, its WAL and anything else beside it."""
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


def with_env(*env: EnvVar) -> Settings:
    return Settings(env, 30)


def test_secret_values_are_sealed_in_scripts_and_snapshots(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    env = with_env(EnvVar("TOKEN", VALUE, True), EnvVar("MODE", "plain-mode"))
    script = store.insert_script(replace(a_script(), settings=env))
    token, mode = script.settings.env
    assert isinstance(token.value, Sealed) and mode.value == "plain-mode"
    version = store.begin_version(script, a_version(script), ev("deploy_started"))
    assert version.config.settings.env == script.settings.env  # the same sealed value
    assert store.env_values(version.config.settings.env) == {"TOKEN": VALUE, "MODE": "plain-mode"}
    shown = orjson.dumps([version.config.to_json(reveal=True), repr(script), repr(version)])
    assert VALUE.encode() not in shown
    store.close()
    stored = files_bytes(tmp_path)
    assert VALUE.encode() not in stored and b"plain-mode" in stored


def test_saving_keeps_the_sealed_value_and_it_opens_only_under_its_name(store: Store) -> None:
    script = store.insert_script(replace(a_script(), settings=with_env(EnvVar("T", VALUE, True))))
    again = store.save_script(replace(script, description="changed"))
    assert again.settings.env == script.settings.env  # not sealed a second time
    (var,) = script.settings.env
    moved = store.save_script(replace(script, settings=with_env(EnvVar("OTHER", var.value, True))))
    with pytest.raises(SecretBoxError, match="'env:OTHER' does not decrypt"):
        store.env_values(moved.settings.env)


def test_a_sealed_value_is_never_stored_as_a_public_one(store: Store) -> None:
    script = store.insert_script(replace(a_script(), settings=with_env(EnvVar("T", VALUE, True))))
    (var,) = script.settings.env
    public = replace(script, settings=with_env(EnvVar("T", var.value, False)))
    with pytest.raises(ValueError, match="cannot be stored as public"):
        store.save_script(public)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


def old_database(path: Path) -> None:
    """A database at the schema just before the sealing step, as an older daemon left
    it: secret values in clear in a script, in its version's snapshot, and in a script
    since deleted (whose row lies on in the file's free space)."""
    db = apsw.Connection(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    for sql in MIGRATIONS[: MIGRATIONS.index(seal_clear_env)]:
        assert isinstance(sql, str)
        db.execute(sql)
    db.execute(f"PRAGMA user_version={MIGRATIONS.index(seal_clear_env)}")
    for sid, name, value in ((1, "kept", VALUE), (2, "gone", DELETED_VALUE)):
        db.execute(
            "INSERT INTO scripts (id, name, language, language_version, status, added_by,"
            " created_at, updated_at, env_json, timeout_s, min_replicas, max_replicas,"
            " cpu_target, profile, archive_json) VALUES (?, ?, 'python', '3.11.2', 'Draft',"
            " 'root', 'x', 'x', ?, 30, 1, 1, 75, '1vcpu-2gb', ?)",
            (sid, name, orjson.dumps([["TOKEN", value, True], ["MODE", "m", False]]).decode(),
             '{"filename":"p.zip","sha256":"ab","size":1,"path":"/x"}'),
        )  # fmt: skip
    db.execute("DELETE FROM scripts WHERE id=2")
    snapshot = orjson.loads(SNAPSHOT_JSON)
    snapshot["settings"]["env"] = [{"key": "TOKEN", "value": VALUE, "secret": True}]
    db.execute(
        "INSERT INTO versions (script_id, number, display_name, status, phase, deployed_by,"
        " started_at, config_json) VALUES (1, 1, 'kept-v1', 'Deployed', 'done', 'root', 'x', ?)",
        (orjson.dumps(snapshot).decode(),),
    )
    db.close()


def test_the_migration_seals_clear_values_and_leaves_no_copy_on_disk(tmp_path: Path) -> None:
    old_database(tmp_path / "db")
    before = files_bytes(tmp_path)
    assert VALUE.encode() in before and DELETED_VALUE.encode() in before  # what must go
    store = Store(tmp_path / "db")
    assert store.schema_version == len(MIGRATIONS)
    script = store.get_script("kept")
    assert script is not None
    var, _ = script.settings.env
    assert isinstance(var.value, Sealed)
    assert store.env_values(script.settings.env) == {"TOKEN": VALUE, "MODE": "m"}
    (version,) = store.list_versions(script.id)
    assert store.env_values(version.config.settings.env) == {"TOKEN": VALUE}
    after = files_bytes(tmp_path)
    for clear in (VALUE, DELETED_VALUE):
        assert clear.encode() not in after, clear
    store.close()
    assert Store(tmp_path / "db").get_script("kept") == script  # reopened: nothing to redo


def test_the_key_comes_from_systemds_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LoadCredential=scriptd-secrets-key:..., values are sealed with that key and
    no key file is made beside the database."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / CREDENTIAL_NAME).write_bytes(bytes(range(32)))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    state = tmp_path / "state"
    state.mkdir()
    store = Store(state / "db")
    script = store.insert_script(replace(a_script(), settings=with_env(EnvVar("T", VALUE, True))))
    store.put_secret("API", "integration-value", "root", "x")
    assert store.env_values(script.settings.env) == {"T": VALUE}
    assert not (state / KEY_FILE).exists()
    (var,) = script.settings.env
    assert isinstance(var.value, Sealed)
    assert SecretBox(creds / CREDENTIAL_NAME).open("env:T", var.value.blob) == VALUE
    with pytest.raises(SecretBoxError, match="does not decrypt"):
        SecretBox(tmp_path / "another.key").open("env:T", var.value.blob)
