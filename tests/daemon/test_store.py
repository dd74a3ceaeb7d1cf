"""The store: migrations, WAL, typed objects, constraints, cascades."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import apsw
import pytest

from daemon.errors import Conflict
from daemon.models import (
    DRAFT,
    ArchiveRef,
    EnvVar,
    Event,
    Resources,
    Script,
    Settings,
    Version,
    now_iso,
)
from daemon.store import Store
from daemon.store_schema import MIGRATIONS


def a_script(name: str = "demo") -> Script:
    now = now_iso()
    return Script(
        0, name, "d", "python", "3.11.2", DRAFT, "root", now, now,
        Settings((EnvVar("K", "v", True),), 30), Resources(1, 2, 75, "1vcpu-2gb"),
        ArchiveRef("p.zip", "ab" * 32, 10, "/x/p.zip"), ("f",), None,
    )  # fmt: skip


def a_version(script: Script, number: int = 1) -> Version:
    return Version(
        0, script.id, number, f"{script.name}-v{number}", "Deploying", "unpacking", "root",
        now_iso(), None, None, {"settings": {"env": []}},
    )  # fmt: skip


def ev(kind: str) -> Event:
    return Event(0, 0, now_iso(), kind, "root", {"k": 1})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


def test_migrations_and_wal(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    again = Store(tmp_path / "db")  # reopening applies nothing twice
    assert again.schema_version == len(MIGRATIONS)
    db = apsw.Connection(str(tmp_path / "db"))
    assert next(db.execute("PRAGMA journal_mode"))[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"scripts", "versions", "events", "api_keys", "executions", "account", "ledger",
            "outbox"} <= tables  # fmt: skip


def test_round_trip_is_typed_and_frozen(store: Store) -> None:
    script = store.insert_script(a_script(), ev("created"))
    assert script.id > 0 and script.settings.env == (EnvVar("K", "v", True),)
    assert store.get_script("demo") == script
    with pytest.raises(AttributeError):
        script.name = "x"  # type: ignore[misc]
    with pytest.raises(Conflict, match="already exists"):
        store.insert_script(a_script())


def test_versions_events_and_cascade(store: Store) -> None:
    script = store.insert_script(a_script())
    v1 = store.begin_version(script, a_version(script), ev("deploy_started"))
    assert store.next_version_number(script.id) == 2
    v2 = store.begin_version(script, a_version(script, 2), ev("deploy_started"))
    with pytest.raises(Conflict):
        store.save_version(replace(v2, display_name=v1.display_name))
    assert store.get_version(script.id, 2) == v2  # the refused rename changed nothing
    assert [v.number for v in store.list_versions(script.id)] == [2, 1]
    assert [e.kind for e in store.list_events(script.id)] == ["deploy_started"] * 2
    assert store.versions_in_status("Deploying") == [v1, v2]
    store.delete_script(script.id)
    assert store.list_versions(script.id) == [] and store.list_events(script.id) == []


def test_search_is_literal_and_case_blind(store: Store) -> None:
    for name in ("alpha", "beta", "al-pha"):
        store.insert_script(a_script(name))
    assert [s.name for s in store.list_scripts("AL")] == ["al-pha", "alpha"]
    assert store.list_scripts("%") == [] and store.list_scripts("_") == []
    assert len(store.list_scripts(None)) == 3


def test_database_is_private(tmp_path: Path) -> None:
    import os
    import stat

    store = Store(tmp_path / "db")
    store.insert_script(a_script())
    for name in ("db", "db-wal"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode & 0o077 == 0, (name, oct(mode))
