"""The store: migrations, WAL, typed objects, constraints, cascades."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import apsw
import pytest

from daemon.core.errors import Conflict
from daemon.core.models import (
    DRAFT,
    ArchiveRef,
    EnvVar,
    Event,
    Resources,
    Script,
    Sealed,
    Settings,
    Version,
    VersionSnapshot,
    now_iso,
)
from daemon.store.database import WAL_CHECKPOINT_PAGES, WAL_FORCE_PAGES, Store
from daemon.store.schema import MIGRATIONS


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
        now_iso(), None, None, VersionSnapshot.of(script, ""),
    )  # fmt: skip


# A version-2 row's config_json, as the daemon of that schema wrote it.
SNAPSHOT_JSON = (
    '{"description": "", "language": "python", "language_version": "3.11.2",'
    ' "runtime_path": "/usr/bin/python3.11", "settings": {"env": [], "timeout_s": 30},'
    ' "resources": {"min_replicas": 1, "max_replicas": 1, "cpu_target": 75,'
    ' "profile": "1vcpu-2gb"}, "archive": {"filename": "p.zip", "sha256": "ab", "size": 1,'
    ' "path": "/x"}, "functions": ["f"]}'
)


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
    (var,) = script.settings.env  # its secret value sealed (tests/daemon/store/test_sealed_env.py)
    assert script.id > 0 and (var.key, var.secret, isinstance(var.value, Sealed)) == (
        "K",
        True,
        True,
    )
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


def test_deleting_the_newest_script_never_frees_its_id(store: Store) -> None:
    store.insert_script(a_script("first"))
    newest = store.insert_script(a_script("second"))
    store.delete_script(newest.id)
    after = store.insert_script(a_script("third"))
    assert after.id > newest.id


def test_migration_3_keeps_rows_ids_and_references(tmp_path: Path) -> None:
    """A database at schema version 2, with rows that refer to scripts, migrates
    to AUTOINCREMENT ids: same ids, same rows, cascades still work."""
    path = tmp_path / "db"
    db = apsw.Connection(str(path))
    db.execute("PRAGMA foreign_keys=ON")
    for sql in MIGRATIONS[:2]:
        assert isinstance(sql, str)
        db.execute(sql)
    db.execute("PRAGMA user_version=2")
    for sid, name in ((4, "kept"), (9, "newest")):
        db.execute(
            "INSERT INTO scripts (id, name, language, language_version, status, added_by,"
            " created_at, updated_at, timeout_s, min_replicas, max_replicas, cpu_target,"
            " profile, archive_json) VALUES (?, ?, 'python', '3.11.2', 'Draft', 'root',"
            " 'x', 'x', 30, 1, 1, 75, '1vcpu-2gb', ?)",
            (sid, name, '{"filename":"p.zip","sha256":"ab","size":1,"path":"/x"}'),
        )
        db.execute(
            "INSERT INTO versions (script_id, number, display_name, status, phase,"
            " deployed_by, started_at, config_json) VALUES (?, 1, ?, 'Deployed', 'done',"
            " 'root', 'x', ?)",
            (sid, f"{name}-v1", SNAPSHOT_JSON),
        )
        db.execute(
            "INSERT INTO events (script_id, at, kind, actor) VALUES (?, 'x', 'created', 'root')",
            (sid,),
        )
        db.execute(
            "INSERT INTO api_keys (id, script_id, name, hash, created_by, created_at)"
            " VALUES (?, ?, 'k', 'h', 'root', 'x')",
            (f"key{sid}", sid),
        )
    db.close()

    store = Store(path)
    assert store.schema_version == len(MIGRATIONS) >= 3
    assert [(s.id, s.name) for s in store.list_scripts()] == [(4, "kept"), (9, "newest")]
    assert [v.display_name for v in store.list_versions(9)] == ["newest-v1"]
    assert [e.kind for e in store.list_events(4)] == ["created"]
    sql = next(store._db.execute("SELECT sql FROM sqlite_master WHERE name='scripts'"))[0]
    assert "AUTOINCREMENT" in sql
    assert list(store._db.execute("PRAGMA foreign_key_check")) == []
    assert next(store._db.execute("PRAGMA foreign_keys"))[0] == 1
    store.delete_script(9)  # the cascade still reaches the rows that refer to it
    counts = [
        next(store._db.execute(f"SELECT count(*) FROM {t} WHERE script_id=9"))[0]
        for t in ("versions", "events", "api_keys")
    ]
    assert counts == [0, 0, 0]
    assert store.insert_script(a_script("later")).id == 10  # 9 is never given again


def test_the_wal_is_checkpointed_after_the_commit_that_fills_it(tmp_path: Path) -> None:
    """SQLite's autocheckpoint is replaced (it ran inside a commit, which apsw makes
    holding the GIL): a transaction that leaves WAL_CHECKPOINT_PAGES or more in the
    log folds it back into the database file right after its commit."""
    store = Store(tmp_path / "db")
    s = store.insert_script(a_script())
    big = "x" * 4000  # about one page per record
    for batch in range(6):
        rows = [(f"e{batch}-{i}", s.id, 1, "f", None, "ok", 0, None, None, None, None, None,
                 None, 2, None, None, big, None, None) for i in range(200)]  # fmt: skip
        store.insert_executions(rows)
    assert store._wal_pages < WAL_CHECKPOINT_PAGES  # the one checkpoint started it over
    page = store._one("PRAGMA page_size")["page_size"]
    assert (tmp_path / "db").stat().st_size > WAL_CHECKPOINT_PAGES * page  # it was folded
    assert len(store.list_executions(s.id, 2000)) == 1200
    with store._tx():
        with store._tx():
            store._wal_pages = WAL_CHECKPOINT_PAGES
        assert store._wal_pages == WAL_CHECKPOINT_PAGES  # not inside the outer transaction
    assert store._wal_pages == 0
    store.close()


def test_a_log_that_only_single_statements_fill_is_still_checkpointed(tmp_path: Path) -> None:
    """Writes outside a `_tx` (none of the store's own methods, today) commit one by
    one; past WAL_FORCE_PAGES the commit's hook folds the log back itself."""
    store = Store(tmp_path / "db")
    db = store._db
    db.execute("CREATE TABLE filler (text TEXT)")
    for _ in range(WAL_FORCE_PAGES + 100):
        db.execute("INSERT INTO filler VALUES (?)", ("x" * 4000,))  # about a page each
    assert store._wal_pages < WAL_FORCE_PAGES
    assert (tmp_path / "db").stat().st_size > WAL_CHECKPOINT_PAGES * 4096
    store.close()
