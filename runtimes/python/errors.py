"""A call's error as the daemon shows it: type, message, and the traceback without the
harness's own frames. Loaded by harness.py under a private name. Standard library only."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs milliseconds to import
    import types

HERE = os.path.dirname(os.path.abspath(__file__))

# Frames from these files are the machinery, never shown to the user.
HIDDEN_FILES = {
    os.path.abspath(__file__),
    os.path.join(HERE, "harness.py"),
    os.path.join(os.path.dirname(HERE), "supervisor.py"),
    os.path.join(os.path.dirname(HERE), "arbiter.py"),
    os.path.join(os.path.dirname(HERE), "startup.py"),
    os.path.join(os.path.dirname(HERE), "protocol.py"),
    os.path.join(os.path.dirname(HERE), "protocol_json.py"),
    os.path.join(HERE, "capture.py"),
    os.path.join(HERE, "concurrently.py"),
    os.path.join(HERE, "step.py"),
    os.path.join(HERE, "typed.py"),
    os.path.join(HERE, "typed_text.py"),
    os.path.join(HERE, "typed_objects.py"),
}


def _is_hidden(tb: types.TracebackType) -> bool:
    filename = tb.tb_frame.f_code.co_filename
    return filename in HIDDEN_FILES or filename.startswith("<frozen importlib")


def _user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The same traceback chain relinked without harness and loader frames."""
    kept = []
    while tb is not None:
        if not _is_hidden(tb):
            kept.append(tb)
        tb = tb.tb_next
    for i, this in enumerate(kept):
        this.tb_next = kept[i + 1] if i + 1 < len(kept) else None
    return kept[0] if kept else None


def error_info(exc: BaseException) -> dict[str, str]:
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:  # chained causes too
        seen.add(id(link))
        link.__traceback__ = _user_frames(link.__traceback__)
        link = link.__cause__ or link.__context__
    import traceback  # errors only: it costs milliseconds to import

    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message = str(exc)
    except Exception as broken:  # a user __str__ that raises
        text = message = f"<{type(exc).__name__} that could not be shown: {broken!r}>"
    return {
        "type": type(exc).__name__,
        "message": _cap(message),
        "traceback": _cap(text, tail=True),
    }


ERROR_TEXT_MAX = 64 * 1024


def _cap(text: str, tail: bool = False) -> str:
    """Error texts stay small: a traceback keeps its end, where the error is."""
    if len(text) <= ERROR_TEXT_MAX:
        return text
    cut = len(text) - ERROR_TEXT_MAX
    return (
        f"[{cut} characters cut]\n" + text[cut:]
        if tail
        else text[:ERROR_TEXT_MAX] + f"[{cut} characters cut]"
    )


def harness_error(kind: str, message: str) -> dict[str, str]:
    return {"type": kind, "message": message, "traceback": ""}


class HarnessError(Exception):
    """Carries an error dict made by the harness itself (no traceback)."""


def call_error(exc: BaseException) -> dict[str, str]:
    """A failed call's error: the harness's own, or the user's exception."""
    return exc.args[0] if isinstance(exc, HarnessError) else error_info(exc)
