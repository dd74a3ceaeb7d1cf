"""Rules for single archive entries: safe names, allowed kinds, no duplicates.

Decisions (documented in the README):
- Links of any kind (symbolic or hard) are refused, even ones that stay inside
  the tree: a project is source code, and refusing all links leaves nothing to
  get wrong at unpack time.
- Names are compared after normalisation (`./a`, `a//b`, `a/./b` and a trailing
  `/` do not make a new name). Two files with one normalised name are an error;
  repeated directory entries are harmless (no content, modes are ours) and pass.
- Names that differ only in case or Unicode normalisation (`Main.py` and `main.py`)
  are distinct on Linux, so they pass, with a warning: they collide on macOS and
  Windows when the project is exported there.
- Backslashes are refused rather than guessed to be separators.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from daemon.archive.formats import EntryKind, RawEntry
from daemon.archive.types import Findings

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
RECREATE = "Create the archive again from the project folder's contents."


def display(name: str) -> str:
    """A printable form of an entry name for messages (escapes bytes and controls)."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def normalise_name(entry: RawEntry, out: Findings) -> str | None:
    """The entry's clean relative path (`a/b.py`, "" for the root itself), or None
    after adding the findings that make the name unsafe."""
    name, where = entry.name, display(entry.name)
    if not entry.valid_utf8:
        out.error(
            "non_utf8_name",
            f"The name {where} is not valid UTF-8.",
            where,
            "Rename the file using UTF-8 characters only. " + RECREATE,
        )
        return None
    if _CONTROL.search(name):
        out.error(
            "bad_name",
            f"The name {where} contains control characters.",
            where,
            "Rename the file. " + RECREATE,
        )
        return None
    if "\\" in name:
        out.error(
            "backslash_in_name",
            f"The name {where} contains a backslash (Windows path separator).",
            where,
            "Create the archive with a tool that writes '/' separators "
            "(7-Zip, `tar -a -cf project.zip *`, or zip on Linux/macOS).",
        )
        return None
    if name.startswith("/") or _DRIVE.match(name):
        out.error(
            "absolute_path",
            f"The entry {where} has an absolute path.",
            where,
            "Archive paths must be relative to the project root. " + RECREATE,
        )
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        out.error(
            "parent_path",
            f"The entry {where} contains '..' and would be written outside the project.",
            where,
            "Remove '..' from archive paths. " + RECREATE,
        )
        return None
    clean = "/".join(parts)
    too_long = len(clean.encode()) > MAX_PATH_BYTES or any(
        len(p.encode()) > MAX_COMPONENT_BYTES for p in parts
    )
    if too_long:
        out.error(
            "name_too_long",
            f"The name {where} is longer than Linux allows "
            f"({MAX_COMPONENT_BYTES} bytes per part, {MAX_PATH_BYTES} in all).",
            where,
            "Shorten the file or folder name.",
        )
        return None
    return clean


_KIND_RULES: dict[EntryKind, tuple[str, str, str]] = {
    "symlink": (
        "link_entry",
        "is a symbolic link; links are not allowed",
        "Replace the link with a copy of the file (zip without -y, `tar -h`).",
    ),
    "hardlink": (
        "link_entry",
        "is a hard link; links are not allowed",
        "Replace the link with a copy of the file (`tar --hard-dereference`).",
    ),
    "device": (
        "special_file",
        "is a device file",
        "Remove device files from the project.",
    ),
    "fifo": (
        "special_file",
        "is a named pipe (fifo)",
        "Remove named pipes from the project.",
    ),
    "other": (
        "special_file",
        "is not a regular file or folder (socket, sparse file or unknown type)",
        "Keep only regular files and folders in the archive.",
    ),
}


def check_kind(entry: RawEntry, out: Findings) -> bool:
    """True for regular files and directories; otherwise adds an error."""
    rule = _KIND_RULES.get(entry.kind)
    if rule is None:
        if entry.encrypted:
            where = display(entry.name)
            out.error(
                "encrypted_entry",
                f"The entry {where} is encrypted.",
                where,
                "Create the archive without a password.",
            )
            return False
        return True
    code, what, fix = rule
    where = display(entry.name)
    out.error(code, f"The entry {where} {what}.", where, fix)
    return False


def _fold(path: str) -> str:
    return unicodedata.normalize("NFC", path).casefold()


@dataclass
class Tree:
    """The files and folders seen so far, to find duplicates and file/folder clashes."""

    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    folded: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, is_dir: bool, out: Findings) -> bool:
        """Records `path`; returns False (after an error) when it clashes."""
        if path == "":
            if is_dir:
                return True  # the root folder's own entry ("./")
            out.error("bad_name", "A file entry has an empty name.", "archive", RECREATE)
            return False
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self.files:
                return _conflict(path, "/".join(parts[:i]), out)
        if path in self.files:
            out.error(
                "duplicate_entry",
                f"The file {display(path)} appears more than once in the archive.",
                display(path),
                "Keep one copy of each file. " + RECREATE,
            )
            return False
        if not is_dir and path in self.dirs:
            return _conflict(path, path, out)
        self._fold_check(path, out)
        for i in range(1, len(parts)):
            self.dirs.add("/".join(parts[:i]))
        (self.dirs if is_dir else self.files).add(path)
        return True

    def _fold_check(self, path: str, out: Findings) -> None:
        key = _fold(path)
        other = self.folded.setdefault(key, path)
        if other != path:
            out.warning(
                "case_collision",
                f"{display(path)} and {display(other)} differ only in letter case "
                "or accents; they clash on macOS and Windows.",
                display(path),
                "Rename one of them.",
            )


def _conflict(path: str, file_path: str, out: Findings) -> bool:
    out.error(
        "path_conflict",
        f"{display(file_path)} is both a file and a folder in the archive.",
        display(path),
        "Rename the file or the folder. " + RECREATE,
    )
    return False
