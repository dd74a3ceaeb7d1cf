"""How the supervisor makes a forked worker (runtimes/launch.py): a held child runs only
once its parent lets it go, after the worker's frame is sent."""

from __future__ import annotations

import os
import select

from runtimes import launch


def test_a_held_child_runs_only_once_released() -> None:
    r, w = os.pipe()

    def child() -> int:
        os.write(w, b"ran")
        return 7

    pid, release = launch.fork_held(child, ())
    try:
        os.close(w)
        assert not select.select([r], [], [], 0.1)[0]  # held: nothing written yet
    finally:
        os.close(release)
    assert os.read(r, 3) == b"ran"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    os.close(r)
