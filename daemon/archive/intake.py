"""Project archives: validation, safe unpacking, packing, exposed functions.

The public face of the archive_* modules; the daemon and the CLI import from here.

    validate_archive(path, language, limits) -> ValidationReport   # reads only
    unpack_archive(path, dest, language, limits) -> ValidationReport  # all or nothing
    pack_directory(src, out)                                     # deterministic zip
    list_functions_python(source) / list_functions_javascript(source)

Validation streams the archive once (memory stays flat for a 1 GB upload):
entry rules (archive_entries), byte budgets on the real decompressed bytes
(archive_scan), then project rules (archive_project). Every finding is reported
at once; `report.ok` is false when there is any error.

Decisions: every link (symbolic or hard, inside the tree or not) is refused;
duplicate files are errors after normalising `./`, `//` and `a/./b`, repeated
folder entries are harmless; names differing only in case or Unicode form are
a warning; the format comes from the content, never the extension. Unpacking
scans twice (validate, then write with every rule applied again) so a file
swapped between the passes cannot slip through.
"""

from __future__ import annotations

from pathlib import Path

from daemon.archive.project import check_project
from daemon.archive.scan import ScanResult, scan
from daemon.archive.types import ArchiveError, Findings, ValidationReport
from daemon.archive.unpack import SinkError, WriteSink, commit, discard, staging_dir
from daemon.config.archive_limits import ArchiveLimits

__all__ = [
    "unpack_archive",
    "validate_archive",
]


def validate_archive(
    path: Path, language: str | None = None, limits: ArchiveLimits | None = None
) -> ValidationReport:
    """Checks everything about the archive without writing anything.
    `language` None means detect it from the main file. Never raises for bad input."""
    limits = limits or ArchiveLimits()
    result = scan(Path(path), limits)
    return _report(result, language)


def unpack_archive(
    path: Path, dest: Path, language: str, limits: ArchiveLimits | None = None
) -> ValidationReport:
    """Validates, then writes the archive's files into `dest` (which must not exist,
    or be an empty folder). Raises ArchiveError if the archive is refused or an entry
    fails while writing, OSError if the disk fails; on any failure nothing is left behind."""
    limits = limits or ArchiveLimits()
    path, dest = Path(path), Path(dest)
    report = validate_archive(path, language, limits)
    if not report.ok:
        raise ArchiveError(report)
    tmp = staging_dir(dest)
    try:
        # The second pass applies every rule again while writing, so a file that
        # changed since the first pass cannot slip anything through.
        written = scan(path, limits, WriteSink(tmp))
        final = _report(written, language)
        if not final.ok:
            raise ArchiveError(final)
        commit(tmp, dest)
    except SinkError as e:
        discard(tmp)
        # The disk failed (full, read-only): not the archive's fault, so not ArchiveError.
        raise (e.__cause__ or OSError(str(e))) from None
    except BaseException:
        discard(tmp)
        raise
    return final


def _report(result: ScanResult, language: str | None) -> ValidationReport:
    findings: Findings = result.findings
    project = check_project(result, language, findings)
    errors, warnings = findings.finish()
    return ValidationReport(
        ok=not errors,
        language=project.language,
        errors=errors,
        warnings=warnings,
        functions=project.functions,
        entries=result.entries,
        unpacked_bytes=result.unpacked_bytes,
        step=project.step,
    )
