"""Resource limits (core, file size, open files, stack), set as soft and hard limits.

Applied in the child while still root, so hard limits can be lowered and raised
to the spec's values; the unprivileged payload can only lower them further.
"""

from __future__ import annotations

import resource

from .spec import Rlimits


def limits(spec: Rlimits) -> tuple[tuple[int, int], ...]:
    """(resource, value) pairs, computed in the parent."""
    return (
        (resource.RLIMIT_CORE, spec.core_bytes),
        (resource.RLIMIT_FSIZE, spec.fsize_bytes),
        (resource.RLIMIT_NOFILE, spec.nofile),
        (resource.RLIMIT_STACK, spec.stack_bytes),
    )


def apply(pairs: tuple[tuple[int, int], ...]) -> None:
    for res, value in pairs:
        resource.setrlimit(res, (value, value))
