"""Upper bounds a project archive must stay under: the `[archive]` keys of the config,
read by the archive package when it validates and unpacks."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3


@dataclass(frozen=True)
class ArchiveLimits:
    """Upper bounds an archive must stay under (all sizes in bytes)."""

    max_archive_bytes: int = 1 * GiB  # the uploaded file itself
    max_entries: int = 10_000  # files + directories, as listed by the archive
    max_unpacked_bytes: int = 2 * GiB  # sum of the REAL decompressed file bytes
    max_file_bytes: int = 1 * GiB  # one file, real decompressed bytes
