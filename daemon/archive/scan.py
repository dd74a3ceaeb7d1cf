"""One streaming pass over an archive: every entry rule, byte budgets, and a sink.

The same pass serves validation (a sink that keeps only the few small files the
project checks need) and unpacking (a sink that writes files). File data is
read in chunks and counted as it is decompressed, so memory stays flat and a
size written in a header is never trusted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from daemon.archive.entries import Tree, check_kind, display, normalise_name
from daemon.archive.formats import (
    READ_ERRORS,
    BudgetExceeded,
    Format,
    FormatError,
    RawEntry,
    detect_format,
    iter_entries,
)
from daemon.archive.types import Findings
from daemon.config.archive_limits import ArchiveLimits

CHUNK = 1024 * 1024
# Root files whose content the project checks read; anything bigger than
# KEEP_MAX is not parsed (a warning says so).
KEPT_NAMES = frozenset({"main.py", "main.js", "requirements.txt", "package.json", "step.toml"})
KEEP_MAX = 16 * 1024 * 1024


class Sink(Protocol):
    def directory(self, path: str) -> None: ...

    def file(self, path: str, chunks: Iterator[bytes]) -> None:
        """Consume (all or part of) `chunks`; the scanner drains the rest."""


@dataclass
class ScanResult:
    findings: Findings = field(default_factory=Findings)
    format: Format | None = None
    entries: int = 0
    unpacked_bytes: int = 0
    tree: Tree = field(default_factory=Tree)
    kept: dict[str, bytes] = field(default_factory=dict)
    complete: bool = False  # the whole archive was read (no fatal error)


class NullSink:
    """Validation sink: writes nothing (the scan itself keeps the root files it needs)."""

    def directory(self, path: str) -> None:
        pass

    def file(self, path: str, chunks: Iterator[bytes]) -> None:
        pass


def scan(path: Path, limits: ArchiveLimits, sink: Sink | None = None) -> ScanResult:
    """Reads the whole archive once, applying every entry rule; never raises for bad input."""
    result = ScanResult()
    out = result.findings
    try:
        size = path.stat().st_size
    except OSError as e:
        out.error("unreadable", f"The archive cannot be read: {e.strerror}.", "archive", "")
        return result
    if size > limits.max_archive_bytes:
        out.error(
            "archive_too_large",
            f"The archive is {size} bytes; the limit is {limits.max_archive_bytes} bytes.",
            "archive",
            "Leave out generated folders and data files, or raise the archive limit.",
        )
        return result
    try:
        result.format = detect_format(path)
        for entry in iter_entries(path, result.format, limits):
            result.entries += 1
            _scan_entry(entry, result, limits, sink or NullSink())
        result.complete = True
    except FormatError as e:
        out.error(e.code, e.message, "archive", e.fix)
    except BudgetExceeded as e:
        if not e.per_file:
            out.error(
                "unpacked_too_large",
                "The archive unpacks to more than "
                f"{limits.max_unpacked_bytes} bytes (counted while decompressing).",
                "archive",
                "Leave out large or generated files; the limit applies to the unpacked size.",
            )
    except READ_ERRORS as e:
        out.error("corrupt_archive", f"The archive is damaged: {e}.", "archive", "")
    return result


def _scan_entry(entry: RawEntry, result: ScanResult, limits: ArchiveLimits, sink: Sink) -> None:
    out = result.findings
    clean = normalise_name(entry, out)
    if not check_kind(entry, out) or clean is None:
        return
    is_dir = entry.kind == "dir"
    if not result.tree.add(clean, is_dir, out):
        return
    if is_dir:
        if clean:
            sink.directory(clean)
        return
    if entry.declared_size > limits.max_file_bytes:
        _file_too_large(entry, entry.declared_size, limits, out)
        raise BudgetExceeded(per_file=True)
    if out.has_errors():
        sink = NullSink()  # never write once anything is wrong; keep counting
    assert entry.open is not None
    try:
        stream = entry.open()
    except NotImplementedError as e:
        out.error(
            "unsupported_compression",
            f"The entry {display(entry.name)} uses a compression method that is not supported"
            f" ({e}).",
            display(entry.name),
            "Use plain deflate compression (the default of zip tools).",
        )
        return
    with stream:
        chunks = _budgeted(stream, entry, result, limits)
        if clean in KEPT_NAMES:
            chunks = _keep(chunks, clean, result)
        sink.file(clean, chunks)
        for _ in chunks:  # drain: every byte is counted and the CRC checked
            pass


def _budgeted(
    stream: IO[bytes], entry: RawEntry, result: ScanResult, limits: ArchiveLimits
) -> Iterator[bytes]:
    """Chunks of the entry's real bytes, stopping the whole scan past a limit."""
    got = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        got += len(chunk)
        result.unpacked_bytes += len(chunk)
        if got > limits.max_file_bytes:
            _file_too_large(entry, got, limits, result.findings)
            raise BudgetExceeded(per_file=True)
        if result.unpacked_bytes > limits.max_unpacked_bytes:
            raise BudgetExceeded()
        yield chunk


def _file_too_large(entry: RawEntry, size: int, limits: ArchiveLimits, out: Findings) -> None:
    where = display(entry.name)
    out.error(
        "file_too_large",
        f"The file {where} is larger than {limits.max_file_bytes} bytes"
        f" (at least {size} bytes unpacked).",
        where,
        "Leave large data files out of the project; read them at run time instead.",
    )


def _keep(chunks: Iterator[bytes], path: str, result: ScanResult) -> Iterator[bytes]:
    """Passes chunks through, keeping a copy of the file if it is small enough to check."""
    buf = bytearray()
    for chunk in chunks:
        if len(buf) <= KEEP_MAX:
            buf += chunk
        yield chunk
    if len(buf) <= KEEP_MAX:
        result.kept[path] = bytes(buf)
