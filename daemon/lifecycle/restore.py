"""`scriptd --restore FILE [--force]`: put a backup (daemon/store/backup_format.py) into
the configured state dir, with the daemon stopped.

It holds the state dir's lock throughout (so no daemon runs on it, nor starts
meanwhile), refuses a state dir that holds a daemon's data unless `--force`,
extracts into a work folder inside the state dir, verifies every file against the
manifest's checksums and the database with integrity_check, and only then puts
things in place: a damaged or foreign file changes nothing. Archive paths in the
database are rewritten to this state dir. The next start reconciles as after any
restart: Deployed scripts get their replicas again (their sources are unpacked and
their environments built when this host lacks them, daemon/lifecycle/recovery.py),
and a workspace restored as a folder is copied into a new image on its first mount.
Every function here blocks.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from daemon.config.daemon_config import Config
from daemon.serving.workspace_image import unmount_all
from daemon.store.backup_format import (
    DATABASE,
    KEY,
    MANIFEST,
    TOP_LEVEL,
    BackupFormatError,
    Manifest,
    file_sha256,
)
from daemon.store.schema import MIGRATIONS
from daemon.store.secret_box import SecretBox, SecretBoxError, key_path
from daemon.store.snapshot import first_sealed_secret, relocate_archives, snapshot_problems
from daemon.store.state_dir import StateDir, StateDirBusy

__all__ = ["KEY_NOTE", "RestoreError", "RestoreReport", "restore", "run_restore"]

KEY_NOTE = (
    "the backup did not include the secrets key: integration secrets and secret env "
    "values decrypt only with the key of the daemon that sealed them (secrets.key "
    "beside scriptd.db, or the systemd credential scriptd-secrets-key)"
)


class RestoreError(Exception):
    """The backup cannot be restored here; nothing was changed."""


@dataclass
class RestoreReport:
    manifest: Manifest
    state_dir: Path
    files: int = 0
    warnings: list[str] = field(default_factory=list)


def restore(config: Config, backup: Path, force: bool) -> RestoreReport:
    state = StateDir(config.state_dir)
    if not backup.is_file():
        raise RestoreError(f"{backup}: no such file")
    state.prepare()
    try:
        lock = state.lock()
    except StateDirBusy as exc:
        raise RestoreError(f"{exc}: stop it first (systemctl stop scriptd)") from None
    with lock:
        held = _data_in(state, config)
        if held and not force:
            raise RestoreError(
                f"the state dir {state.root} holds a daemon's data ({', '.join(held)}): "
                "restore into an empty state dir, or pass --force to replace that data"
            )
        work = state.root / f".restore-{secrets.token_hex(6)}"
        work.mkdir(mode=0o700)
        try:
            manifest = _extract(backup, work)
            _check_database(work / DATABASE)
            if held:
                _clear(state, config)
            report = RestoreReport(manifest, state.root)
            _place(work, state, config, report)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _data_in(state: StateDir, config: Config) -> list[str]:
    """What of a daemon's data the state dir holds (the lock, the build cache, the
    secrets key and the egress CA do not count: a restore keeps them)."""
    held = [state.db.name] if state.db.exists() else []
    for folder in (state.archives, state.scripts, config.uploads_dir):
        count = sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0
        if count:
            held.append(f"{folder.name}/ ({count} entries)")
    return held


def _extract(backup: Path, work: Path) -> Manifest:
    """Every member into `work`, checked against the manifest (which comes last)."""
    sums: dict[str, str] = {}
    doc = None
    checks = _MemberChecks()
    try:
        with tarfile.open(backup, "r:gz") as tar:
            for member in tar:
                if member.name.split("/")[0] not in TOP_LEVEL:
                    raise RestoreError(f"{backup}: unexpected member {member.name!r}")
                if member.name == MANIFEST:
                    body = tar.extractfile(member)
                    doc = orjson.loads(body.read()) if body is not None else None
                    continue
                tar.extract(checks.checked(member), work, numeric_owner=True, **_CHECKED_HERE)
                if member.isfile():
                    sums[member.name] = file_sha256(work / member.name)
    except (tarfile.TarError, EOFError, zlib.error, OSError, orjson.JSONDecodeError) as exc:
        raise RestoreError(f"{backup} is damaged or not a scriptd backup: {exc}") from None
    if doc is None:
        raise RestoreError(f"{backup} has no {MANIFEST}: the backup is incomplete")
    try:
        manifest = Manifest.from_json(doc)
    except BackupFormatError as exc:
        raise RestoreError(f"{backup}: {exc}") from None
    _verify(backup, manifest, sums)
    return manifest


# What a backup holds: files, folders, a workspace's symbolic links and named pipes.
_KINDS = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                    tarfile.FIFOTYPE})  # fmt: skip
# The members are checked by `_MemberChecks`; Pythons with extraction filters (3.11.4
# and later) are told so, or they would apply their own default.
_CHECKED_HERE: dict[str, Any] = (
    {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
)


class _MemberChecks:
    """What tarfile's "tar" filter checks, written here because Debian 12's Python
    (3.11.2) has no extraction filters, and stricter where a backup allows it: a
    member's path is relative, with no `.`, `..` or empty part, and never names a
    member already extracted or lies below a symbolic link (so nothing is written
    through a link); it is a file, a folder, a named pipe or a workspace's symbolic
    link (the script's data, kept whatever it points at and never followed); its
    mode loses the setuid, setgid and sticky bits and the group's and others' write."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.links: set[str] = set()

    def checked(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        name = member.name[:-1] if member.isdir() and member.name.endswith("/") else member.name
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise RestoreError(f"member {member.name!r} has a path that leaves the backup")
        if any("/".join(parts[:i]) in self.links for i in range(1, len(parts))):
            raise RestoreError(f"member {member.name!r} lies below a symbolic link")
        if name in self.names:
            raise RestoreError(f"member {member.name!r} comes twice")
        if member.type not in _KINDS or (member.issym() and parts[0] != "workspaces"):
            raise RestoreError(f"member {member.name!r} is not a file, folder or workspace link")
        self.names.add(name)
        if member.issym():
            self.links.add(name)
        checked = copy.copy(member)
        checked.mode = member.mode & 0o755
        return checked


def _verify(backup: Path, manifest: Manifest, sums: dict[str, str]) -> None:
    expected = {name: str(entry.get("sha256")) for name, entry in manifest.files.items()}
    missing = sorted(set(expected) - set(sums))
    extra = sorted(set(sums) - set(expected))
    wrong = sorted(n for n in set(expected) & set(sums) if expected[n] != sums[n])
    if DATABASE not in sums:
        missing.append(DATABASE)
    for what, names in (("missing", missing), ("not in the manifest", extra),
                        ("with a wrong checksum", wrong)):  # fmt: skip
        if names:
            raise RestoreError(f"{backup}: files {what}: {', '.join(names[:10])}")


def _check_database(db: Path) -> None:
    problems = snapshot_problems(db, len(MIGRATIONS))
    if problems:
        raise RestoreError(f"the backup's database fails its checks: {'; '.join(problems[:5])}")


def _clear(state: StateDir, config: Config) -> None:
    """--force: remove the data a restore replaces (not the key, cache or egress CA)."""
    unmount_all(state.scripts)  # workspaces a killed daemon left mounted
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state.db}{suffix}").unlink(missing_ok=True)
    for folder in (state.archives, state.scripts, state.staging, config.uploads_dir):
        if folder.is_dir():
            for entry in folder.iterdir():
                shutil.rmtree(
                    entry
                ) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _place(work: Path, state: StateDir, config: Config, report: RestoreReport) -> None:
    os.replace(work / DATABASE, state.db)
    os.chmod(state.db, 0o600)
    relocate_archives(state.db, state.archives)
    report.files = len(report.manifest.files)
    _move_children(work / "archives", state.archives)
    config.uploads_dir.mkdir(parents=True, exist_ok=True)
    _move_children(work / "files", config.uploads_dir)
    for log in sorted((work / "scripts").glob("*/versions/*/build.log")):
        dest = state.root / log.relative_to(work)
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(log, dest)
    for folder in sorted((work / "workspaces").glob("*")):
        state.script_dir(int(folder.name)).mkdir(mode=0o700, exist_ok=True)
        os.replace(folder, state.workspace(int(folder.name)))
    _place_key(work, state, report)
    if not report.manifest.workspaces:
        report.warnings.append("workspaces were not in the backup: scripts start with empty ones")


def _move_children(source: Path, dest: Path) -> None:
    if source.is_dir():
        for entry in source.iterdir():
            os.replace(entry, dest / entry.name)


def _place_key(work: Path, state: StateDir, report: RestoreReport) -> None:
    """The key from the backup, when it has one; then whether the secrets decrypt."""
    path = key_path(state.db)
    if report.manifest.secrets_key:
        if os.environ.get("CREDENTIALS_DIRECTORY") and path.parent != state.root:
            report.warnings.append(
                f"the backup's secrets key was NOT restored: the systemd credential {path} "
                "is used instead (replace it with the backup's key if they differ)"
            )
        else:
            os.replace(work / KEY, path)
            os.chmod(path, 0o600)
    sealed = first_sealed_secret(state.db)
    if sealed is None:
        return
    if not path.is_file():
        report.warnings.append(
            f"the backup holds integration secrets but NOT their key: put the original key "
            f"at {path} (mode 0600) before starting scriptd, or deploys granted a secret fail"
        )
        return
    try:
        SecretBox(path).open(*sealed)
    except SecretBoxError:
        report.warnings.append(
            f"the secrets key at {path} does NOT decrypt the backup's secrets: put the "
            "original daemon's key there before starting scriptd"
        )


def run_restore(config: Config, backup: Path, force: bool) -> int:
    try:
        report = restore(config, backup.resolve(), force)
    except (RestoreError, OSError) as exc:
        print(f"scriptd: restore: {exc}", file=sys.stderr)
        return 1
    m = report.manifest
    origin = f"{m.created_at} by {m.created_by} from {m.state_dir} (scriptd {m.daemon_version})"
    print(f"restored {backup} into {report.state_dir}: {report.files} files, taken {origin}")
    for warning in report.warnings:
        print(f"scriptd: WARNING: {warning}", file=sys.stderr)
    if not m.secrets_key:
        print(f"scriptd: WARNING: {KEY_NOTE}", file=sys.stderr)
    print("start scriptd now: Deployed scripts start again (environments this host lacks "
          "are built first)")  # fmt: skip
    return 0
