"""The store's integration secrets, on a real apsw database."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from daemon.core.errors import BadRequest, Conflict, NotFound
from daemon.core.models import DEPLOYED, now_iso
from daemon.store.database import Store
from tests.daemon.store.test_database import a_script

VALUE = "s3cr3t-value-never-in-clear"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


def granted(store: Store, name: str, *secrets: str, status: str = "Draft") -> None:
    script = a_script(name)
    settings = replace(script.settings, secrets=secrets)
    store.insert_script(replace(script, settings=settings, status=status))


def test_values_are_sealed_in_the_database_file(store: Store, tmp_path: Path) -> None:
    store.put_secret("API_TOKEN", VALUE, "root", now_iso())
    store.close()
    for path in tmp_path.iterdir():  # the database, its WAL, and the key file
        assert VALUE.encode() not in path.read_bytes(), path
    again = Store(tmp_path / "db")
    assert again.secret_values(["API_TOKEN"]) == {"API_TOKEN": VALUE}


def test_set_again_changes_the_value_and_keeps_created(store: Store) -> None:
    first = store.put_secret("A", "one", "root", "2026-01-01T00:00:00.000Z")
    second = store.put_secret("A", "two", "alice", "2026-01-02T00:00:00.000Z")
    assert (second.created_at, second.created_by) == (first.created_at, "root")
    assert second.updated_at == "2026-01-02T00:00:00.000Z"
    assert store.secret_values(["A"]) == {"A": "two"}


def test_list_shows_the_scripts_granted_each_secret_and_no_value(store: Store) -> None:
    store.put_secret("A", VALUE, "root", now_iso())
    store.put_secret("B", VALUE, "root", now_iso())
    granted(store, "beta", "A")
    granted(store, "alpha", "A", "B")
    listed = {s.name: s.to_json() for s in store.list_secrets()}
    assert listed["A"]["used_by"] == ["alpha", "beta"]
    assert listed["B"]["used_by"] == ["alpha"]
    assert VALUE not in repr(listed)
    assert store.missing_secrets(["B", "C", "A", "D"]) == ["C", "D"]


def test_values_of_an_unknown_secret_is_a_bad_request(store: Store) -> None:
    with pytest.raises(BadRequest, match="unknown secret 'NOPE'"):
        store.secret_values(["NOPE"])


def test_delete_is_refused_while_a_deployed_script_uses_it(store: Store) -> None:
    store.put_secret("A", VALUE, "root", now_iso())
    granted(store, "drafty", "A")
    granted(store, "live", "A", status=DEPLOYED)
    with pytest.raises(Conflict, match="used by deployed scripts: live"):
        store.delete_secret("A")
    live = store.get_script("live")
    assert live is not None
    store.save_script(replace(live, status="Ready to Deploy"))
    store.delete_secret("A")
    assert store.list_secrets() == []
    with pytest.raises(NotFound, match="no secret named 'A'"):
        store.delete_secret("A")
