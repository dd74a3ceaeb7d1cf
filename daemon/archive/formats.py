"""Archive formats: recognise a file by its content and stream its entries.

Supported: zip, tar, and gzip-compressed tar (.tar.gz, .tgz, or a bare .gz that
holds a tar). Nothing here writes to disk or trusts a size written in a header:
tar data is read through a byte budget on the decompressed stream, zip members
are read through `zipfile`, which never yields more than the declared size and
checks the CRC (so a header that lies makes the entry fail, never grow).
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, cast

from daemon.config.archive_limits import ArchiveLimits

Format = Literal["zip", "tar", "tar.gz"]
EntryKind = Literal["file", "dir", "symlink", "hardlink", "device", "fifo", "other"]

# Errors that Python's readers raise on damaged input; all mean "corrupt archive".
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    struct.error,
    UnicodeError,
    OverflowError,
    IndexError,
    KeyError,
)

OTHER_FORMATS = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!": "rar",
    b"\x28\xb5\x2f\xfd": "zstd",
}
FORMAT_FIX = "Upload a .zip, .tar or .tar.gz (.tgz) archive of the project folder's contents."


class FormatError(Exception):
    """The archive as a whole cannot be read (unknown format, corrupt, too many entries)."""

    def __init__(self, code: str, message: str, fix: str = FORMAT_FIX) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fix = fix


class BudgetExceeded(Exception):
    """More decompressed bytes than the limits allow: a bomb, or simply too big."""

    def __init__(self, per_file: bool = False) -> None:
        super().__init__("per-file limit" if per_file else "unpacked size limit")
        self.per_file = per_file


@dataclass
class RawEntry:
    """One entry as the archive states it; `open` streams a file's real bytes."""

    name: str  # undecodable bytes are kept as surrogates (valid_utf8 False)
    valid_utf8: bool
    kind: EntryKind
    declared_size: int
    encrypted: bool
    open: Callable[[], IO[bytes]] | None


def detect_format(path: Path) -> Format:
    """The format from the first bytes of the file; raises FormatError if unsupported."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as g:
            try:
                inner = g.read(512)
            except READ_ERRORS as e:
                raise FormatError("corrupt_archive", f"The gzip data is damaged: {e}.") from e
        if not looks_like_tar(inner):
            raise FormatError(
                "gzip_not_tar",
                "The .gz file does not hold a tar archive; only a tar can be gzip-compressed.",
                "Create it with `tar -czf project.tar.gz -C project .`, or upload a .zip.",
            )
        return "tar.gz"
    if looks_like_tar(head):
        return "tar"
    for magic, name in OTHER_FORMATS.items():
        if head.startswith(magic):
            raise FormatError("unsupported_format", f"This is a {name} archive.")
    if not head:
        raise FormatError("empty_archive", "The archive file is empty.")
    raise FormatError("unsupported_format", "The file is not a zip, tar or tar.gz archive.")


def looks_like_tar(block: bytes) -> bool:
    if len(block) < 512:
        return False
    if block == b"\0" * 512:
        return True  # an empty tar is still a tar (validation then finds no main file)
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def iter_entries(path: Path, fmt: Format, limits: ArchiveLimits) -> Iterator[RawEntry]:
    """Entries in archive order. Each entry's `open` must be used before the next one."""
    if fmt == "zip":
        yield from _zip_entries(path, limits)
    else:
        yield from _tar_entries(path, fmt == "tar.gz", limits)


# ---- zip -------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_ENTRY_MAX = 46 + 4096 + 1024  # fixed part + a long name + some extra/comment


def zip_declared_entries(path: Path) -> tuple[int, int]:
    """(entry count, central directory size) from the end records, read before
    `zipfile` builds its in-memory list, so a zip claiming millions of entries is
    refused cheaply. Returns (0, 0) when no end record is found (zipfile decides)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        tail_len = min(size, _EOCD.size + 65535)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            return 0, 0
        fields = _EOCD.unpack_from(tail, at)
        count, cd_size = fields[4], fields[5]
        loc_at = at - _ZIP64_LOCATOR.size
        if (count == 0xFFFF or cd_size == 0xFFFFFFFF) and loc_at >= 0:
            loc = _ZIP64_LOCATOR.unpack_from(tail, loc_at)
            if loc[0] == b"PK\x06\x07":
                f.seek(loc[2])
                rec = f.read(_ZIP64_EOCD.size)
                if len(rec) == _ZIP64_EOCD.size and rec[:4] == b"PK\x06\x06":
                    z = _ZIP64_EOCD.unpack(rec)
                    count, cd_size = z[7], z[8]
    return count, cd_size


def _zip_entries(path: Path, limits: ArchiveLimits) -> Iterator[RawEntry]:
    count, cd_size = zip_declared_entries(path)
    if count > limits.max_entries or cd_size > (limits.max_entries + 1) * _CENTRAL_ENTRY_MAX:
        raise too_many_entries(limits, count)
    try:
        zf = zipfile.ZipFile(path)
    except UnicodeDecodeError as e:
        raise FormatError(
            "non_utf8_name",
            "An entry name is marked UTF-8 but is not valid UTF-8.",
            "Rename the file to a plain name and create the archive again.",
        ) from e
    except READ_ERRORS as e:
        raise FormatError("corrupt_archive", f"The zip file is damaged: {e}.") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise too_many_entries(limits, len(infos))
        for info in infos:
            yield _zip_entry(zf, info)


def _zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> RawEntry:
    name, valid = _zip_name(info)
    # Only unix-made zips carry a file type in the high word; anything else is
    # written as a regular file by us anyway, so nothing can hide there.
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    kind = _kind_from_mode(mode)
    if kind == "file" and (info.is_dir() or name.endswith("/")):
        kind = "dir"
    opener = (lambda: zf.open(info)) if kind == "file" else None
    return RawEntry(name, valid, kind, info.file_size, bool(info.flag_bits & 0x1), opener)


def _zip_name(info: zipfile.ZipInfo) -> tuple[str, bool]:
    """Names without the UTF-8 flag were decoded as cp437 by zipfile; most tools
    (macOS, Info-ZIP on Linux) still write UTF-8 there, so we decode the raw bytes."""
    name = info.orig_filename
    if info.flag_bits & 0x800:
        return name, True
    raw = name.encode("cp437")
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), False


def _kind_from_mode(mode: int) -> EntryKind:
    if stat.S_IFMT(mode) == 0 or stat.S_ISREG(mode):  # permission bits only: no type
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "other"


# ---- tar -------------------------------------------------------------------------


class _BudgetReader:
    """The decompressed tar stream, refusing to deliver more than `budget` bytes.
    This bounds what tarfile itself reads (headers, pax records, skipped data)."""

    def __init__(self, raw: BinaryIO | gzip.GzipFile, budget: int) -> None:
        self._raw = raw
        self._left = budget

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._left + 1
        data = self._raw.read(min(n, self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise BudgetExceeded()
        return data


# A long name or a pax record is read into memory whole by tarfile, before we see
# the entry: refuse big ones up front (real names are at most 4 KiB).
MAX_TAR_METADATA = 1024 * 1024


class _BoundedTarInfo(tarfile.TarInfo):
    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_metadata_size(self.size)
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        _check_metadata_size(self.size)
        return super()._proc_pax(tarfile)  # type: ignore[misc]


def _check_metadata_size(size: int) -> None:
    if size > MAX_TAR_METADATA:
        raise FormatError(
            "corrupt_archive",
            f"A tar header record is {size} bytes long; at most {MAX_TAR_METADATA} are allowed.",
        )


def _tar_budget(limits: ArchiveLimits) -> int:
    # Data, plus per entry a header, padding and some pax/long-name records, plus
    # the end-of-archive blocks and the record padding.
    return limits.max_unpacked_bytes + (limits.max_entries + 1) * 4096 + 64 * 1024


def _tar_entries(path: Path, gzipped: bool, limits: ArchiveLimits) -> Iterator[RawEntry]:
    with open(path, "rb") as f:
        raw: BinaryIO | gzip.GzipFile = gzip.GzipFile(fileobj=f) if gzipped else f
        stream = _BudgetReader(raw, _tar_budget(limits))
        try:
            tf = tarfile.open(  # noqa: SIM115 (closed by the `with tf` below)
                fileobj=cast(Any, stream),
                mode="r|",
                tarinfo=_BoundedTarInfo,
                encoding="utf-8",
                errors="surrogateescape",
            )
        except READ_ERRORS as e:
            raise FormatError("corrupt_archive", f"The tar data is damaged: {e}.") from e
        with tf:
            count = 0
            while True:
                try:
                    member = tf.next()
                except READ_ERRORS as e:
                    raise FormatError("corrupt_archive", f"The tar data is damaged: {e}.") from e
                if member is None:
                    return
                count += 1
                if count > limits.max_entries:
                    raise too_many_entries(limits, count)
                yield _tar_entry(tf, member)


def _tar_entry(tf: tarfile.TarFile, m: tarfile.TarInfo) -> RawEntry:
    try:
        m.name.encode("utf-8")
        valid = True
    except UnicodeEncodeError:
        valid = False
    kind: EntryKind
    if m.issparse():
        kind = "other"
    elif m.isreg():
        kind = "file"
    elif m.isdir():
        kind = "dir"
    elif m.issym():
        kind = "symlink"
    elif m.islnk():
        kind = "hardlink"
    elif m.ischr() or m.isblk():
        kind = "device"
    elif m.isfifo():
        kind = "fifo"
    else:
        kind = "other"
    name = m.name + "/" if kind == "dir" else m.name

    def opener() -> IO[bytes]:
        f = tf.extractfile(m)
        if f is None:
            raise FormatError("corrupt_archive", f"Cannot read entry {m.name!r}.")
        return f

    return RawEntry(name, valid, kind, m.size, False, opener if kind == "file" else None)


def too_many_entries(limits: ArchiveLimits, count: int) -> FormatError:
    return FormatError(
        "too_many_entries",
        f"The archive holds {count} entries or more; at most {limits.max_entries} are allowed.",
        "Leave out generated folders (node_modules, .venv, __pycache__, build output); "
        "dependencies are installed at deploy from requirements.txt / package.json.",
    )
