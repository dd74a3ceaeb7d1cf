"""Backup and restore without a daemon: a real apsw store and state dir written into a
real tar.gz, restored into another state dir; the refusals leave that dir unchanged.
(The online backup of a serving daemon is tests/e2e/test_backup_restore.py.)"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.config.daemon_config import Config
from daemon.core.models import ArchiveRef, Settings, now_iso
from daemon.lifecycle.backup import BackupError, BackupOptions, write_backup
from daemon.lifecycle.restore import RestoreError, restore
from daemon.store.backup_format import MANIFEST
from daemon.store.database import Store
from daemon.store.state_dir import StateDir
from tests.daemon.store.test_database import a_script, a_version, ev

ARCHIVE = b"PK\x03\x04 not really a zip, only bytes to carry"
SECRET = "token-value-7d1f"


def origin(root: Path) -> tuple[Config, Store, StateDir]:
    """A state dir with one script, a version, a build log, an upload, a workspace file
    and an integration secret."""
    config = Config(state_dir=root)
    state = StateDir(root)
    state.prepare()
    store = Store(state.db)
    archive = state.archives / ("cd" * 32 + ".zip")
    archive.write_bytes(ARCHIVE)
    ref = ArchiveRef("p.zip", "cd" * 32, len(ARCHIVE), str(archive))
    script = a_script("kept")
    script = replace(script, archive=ref, settings=Settings(script.settings.env, 30, secrets=()))
    script = store.insert_script(script)
    store.begin_version(script, a_version(script), ev("deploy_started"))
    state.build_log(script.id, 1).parent.mkdir(parents=True)
    state.build_log(script.id, 1).write_text("built\n")
    config.uploads_dir.mkdir()
    (config.uploads_dir / "prices.csv").write_text("a,1\n")
    state.workspace(script.id).mkdir(parents=True)
    (state.workspace(script.id) / "note.txt").write_text("kept across the restore")
    # a script's own links: an absolute symlink (data, never followed) and a hard link
    (state.workspace(script.id) / "elsewhere").symlink_to("/etc/hostname")
    os.link(state.workspace(script.id) / "note.txt", state.workspace(script.id) / "again.txt")
    store.put_secret("PARTNER_TOKEN", SECRET, "root", now_iso())
    return config, store, state


def take(store: Store, state: StateDir, config: Config, dest: Path, **options: bool) -> Path:
    with open(dest, "wb") as sink:
        write_backup(store, state, config, sink, BackupOptions(**options), "root")
    return dest


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    config, store, state = origin(tmp_path / "a")
    try:
        return take(store, state, config, tmp_path / "b.tar.gz", workspaces=True, include_key=True)
    finally:
        store.close()


def test_a_restored_state_dir_holds_the_same_data(backup: Path, tmp_path: Path) -> None:
    config = Config(state_dir=tmp_path / "r")
    report = restore(config, backup, force=False)
    assert report.manifest.workspaces and report.manifest.secrets_key
    assert report.warnings == []
    store = Store(config.state_dir / "scriptd.db")
    script = store.get_script("kept")
    assert script is not None
    # archive paths point into the new state dir, where the archive is
    archive = Path(script.archive.path)
    assert archive.parent == config.state_dir / "archives" and archive.read_bytes() == ARCHIVE
    [version] = store.list_versions(script.id)
    assert version.config.archive.path == str(archive)
    assert store.secret_values(["PARTNER_TOKEN"]) == {"PARTNER_TOKEN": SECRET}
    state = StateDir(config.state_dir)
    assert state.build_log(script.id, 1).read_text() == "built\n"
    assert (config.uploads_dir / "prices.csv").read_text() == "a,1\n"
    workspace = state.workspace(script.id)
    assert (workspace / "note.txt").read_text() == "kept across the restore"
    assert (workspace / "again.txt").read_text() == "kept across the restore"
    assert os.readlink(workspace / "elsewhere") == "/etc/hostname"
    store.close()


def test_the_manifest_lists_each_file_with_its_checksum(backup: Path) -> None:
    with tarfile.open(backup, "r:gz") as tar:
        names = tar.getnames()
        body = tar.extractfile(MANIFEST)
        assert body is not None
        doc = json.load(body)
    assert names[-1] == MANIFEST and names[0] == "store/scriptd.db"
    assert doc["format"] == "scriptd-backup" and doc["format_version"] == 1
    assert set(doc["files"]) == {n for n in names if n != MANIFEST and "." in n.split("/")[-1]}
    assert all(len(entry["sha256"]) == 64 for entry in doc["files"].values())


def test_without_the_key_the_restore_says_secrets_will_not_decrypt(tmp_path: Path) -> None:
    config, store, state = origin(tmp_path / "a")
    backup = take(store, state, config, tmp_path / "b.tar.gz")
    store.close()
    report = restore(Config(state_dir=tmp_path / "r"), backup, force=False)
    assert any("NOT their key" in w for w in report.warnings), report.warnings
    assert any("workspaces were not in the backup" in w for w in report.warnings)


def test_a_state_dir_with_data_is_refused_unless_forced(backup: Path, tmp_path: Path) -> None:
    config = Config(state_dir=tmp_path / "r")
    restore(config, backup, force=False)
    with pytest.raises(RestoreError, match=r"holds a daemon's data .*--force"):
        restore(config, backup, force=False)
    (config.uploads_dir / "stray.txt").write_text("replaced by --force")
    restore(config, backup, force=True)
    assert not (config.uploads_dir / "stray.txt").exists()
    assert (config.uploads_dir / "prices.csv").exists()


def test_a_running_daemons_state_dir_is_refused(backup: Path, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "r")
    state.prepare()
    with state.lock(), pytest.raises(RestoreError, match=r"another scriptd \(pid \d+\).*stop it"):
        restore(Config(state_dir=state.root), backup, force=True)


def test_a_truncated_backup_changes_nothing(backup: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
    config = Config(state_dir=tmp_path / "r")
    with pytest.raises(RestoreError, match=r"damaged|incomplete"):
        restore(config, cut, force=False)
    assert not (config.state_dir / "scriptd.db").exists()
    assert list((config.state_dir / "archives").iterdir()) == []


def test_a_file_changed_after_the_backup_is_refused(backup: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(backup, "r:gz") as src, tarfile.open(tampered, "w:gz") as out:
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == "files/prices.csv":
                data = b"a,2\n"
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(RestoreError, match=r"wrong checksum: files/prices\.csv"):
        restore(Config(state_dir=tmp_path / "r"), tampered, force=False)


def test_a_missing_archive_fails_the_backup_before_writing(tmp_path: Path) -> None:
    config, store, state = origin(tmp_path / "a")
    for path in state.archives.iterdir():
        path.unlink()
    sink = io.BytesIO()
    with pytest.raises(BackupError, match="archives the store refers to are missing"):
        write_backup(store, state, config, sink, BackupOptions(), "root")
    assert sink.getvalue() == b""
    store.close()


def crafted(backup: Path, dest: Path, *extra: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    """`backup` with `extra` members put right after the store (before the manifest)."""
    with tarfile.open(backup, "r:gz") as src, tarfile.open(dest, "w:gz") as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
            if member.name == "store/scriptd.db":
                for info, body in extra:
                    info.size = len(body or b"")
                    out.addfile(info, io.BytesIO(body) if body is not None else None)
    return dest


def member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_a_member_below_a_symlink_is_refused(backup: Path, tmp_path: Path) -> None:
    link = member("workspaces/1/out", tarfile.SYMTYPE, str(tmp_path / "outside"))
    bad = crafted(backup, tmp_path / "c.tar.gz", (link, None),
                  (member("workspaces/1/out/planted"), b"hi"))  # fmt: skip
    with pytest.raises(RestoreError, match="below a symbolic link"):
        restore(Config(state_dir=tmp_path / "r"), bad, force=False)
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize(
    ("members", "refusal"),
    [
        ([("workspaces/1/../../../escaped", None)], "leaves the backup"),
        ([("/workspaces/1/absolute", None)], "unexpected member"),  # (by its top folder)
        ([("workspaces/1//empty", None)], "leaves the backup"),
        # a file of the same name written through the link extracted before it
        ([("workspaces/1/to", "OUTSIDE"), ("workspaces/1/to", None)], "twice"),
        ([("files/link", "/etc/shadow")], "not a file, folder or workspace link"),
    ],
)
def test_a_member_whose_path_or_kind_could_reach_out_is_refused(
    backup: Path, tmp_path: Path, members: list[tuple[str, str | None]], refusal: str
) -> None:
    outside = tmp_path / "outside"
    extra: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (member(name, tarfile.SYMTYPE, link.replace("OUTSIDE", str(outside))), None)
        if link
        else (member(name), b"x")
        for name, link in members
    ]
    bad = crafted(backup, tmp_path / "c.tar.gz", *extra)
    restored = tmp_path / "r"
    with pytest.raises(RestoreError, match=refusal):
        restore(Config(state_dir=restored), bad, force=False)
    assert not (restored / "scriptd.db").exists()  # nothing was put in place
    assert not (restored / "escaped").exists() and not outside.exists()


def test_a_device_node_is_refused(backup: Path, tmp_path: Path) -> None:
    device = member("workspaces/1/disk", tarfile.BLKTYPE)
    device.devmajor, device.devminor = 8, 0
    bad = crafted(backup, tmp_path / "c.tar.gz", (device, None))
    with pytest.raises(RestoreError, match="not a file, folder or workspace link"):
        restore(Config(state_dir=tmp_path / "r"), bad, force=False)


def test_setuid_and_shared_write_bits_are_dropped(backup: Path, tmp_path: Path) -> None:
    config = Config(state_dir=tmp_path / "r")
    with tarfile.open(backup, "r:gz") as src, tarfile.open(tmp_path / "m.tar.gz", "w:gz") as out:
        for info in src:
            body = src.extractfile(info) if info.isfile() else None
            if info.name.endswith("/note.txt"):
                info.mode = 0o6777
            out.addfile(info, body)
    restore(config, tmp_path / "m.tar.gz", force=False)
    [note] = config.state_dir.glob("scripts/*/workspace/note.txt")
    assert note.stat().st_mode & 0o7777 == 0o755
