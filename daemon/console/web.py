"""What the console's page modules share: app keys, the session of a request,
rendering, and running an action that ends in a message (the seed's words)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import aiohttp_jinja2
from aiohttp import MultipartReader, web

from daemon.console.signin import Session, SignIn
from daemon.core.errors import ScriptdError
from daemon.lifecycle.actions import Lifecycle

__all__ = [
    "LIFECYCLE", "MULTIPART", "SESSION", "SIGNIN", "act", "back_to", "form", "lifecycle",
    "multipart", "render", "render_message", "session", "user",
]  # fmt: skip

LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
SIGNIN = web.AppKey("signin", SignIn)
SESSION = web.RequestKey("console_session", Session)
# the multipart reader the CSRF check began (it read the token, the form's first part)
MULTIPART = web.RequestKey("console_multipart", MultipartReader)


def lifecycle(request: web.Request) -> Lifecycle:
    return request.app[LIFECYCLE]


def session(request: web.Request) -> Session:
    return request[SESSION]


def user(request: web.Request) -> str:
    """The unix user who asked for the sign-in link: "added by", "deployed by"."""
    return session(request).user


async def multipart(request: web.Request) -> MultipartReader:
    """The upload form's reader: the one the CSRF check started, or a new one."""
    reader = request.get(MULTIPART)
    return reader if reader is not None else await request.multipart()


async def form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def page_context(request: web.Request) -> dict[str, Any]:
    """What every page gets: the user, the CSRF token, the messages to show once."""
    found: Session | None = request.get(SESSION)
    if found is None:
        return {"user": None, "csrf_token": "", "flashes": []}
    return {"user": found.user, "csrf_token": found.csrf, "flashes": found.take_flashes()}


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    full = page_context(request) | context
    return aiohttp_jinja2.render_template(template, request, full, status=status)


def render_message(request: web.Request, title: str, text: str, status: int) -> web.Response:
    return render(request, "message.html", {"title": title, "text": text}, status)


def back_to(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


async def act(
    request: web.Request, action: Awaitable[Any], success: str, location: str
) -> web.HTTPSeeOther:
    """Run `action`; the next page (`location`) says how it went: `success`, or the
    refusal as the lifecycle words it (it names the status and what it allows)."""
    try:
        await action
    except ScriptdError as exc:
        session(request).flash(exc.message, "error")
    else:
        session(request).flash(success)
    return back_to(location)
