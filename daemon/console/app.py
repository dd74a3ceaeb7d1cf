"""The web console: an aiohttp app with Jinja2 templates on a listener of its own.

Every page but the sign-in link and the static files needs a session (a cookie that
is HttpOnly, SameSite=Strict, and Secure over TLS); every POST must carry the
session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`). Handlers act
only through the lifecycle and daemon/lifecycle/call_services.py, the services the
admin API uses: no SQL and no status rules here. The person acting is the unix user
who asked `scriptctl console` for the link.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import BodyPartReader, web

from daemon.config.daemon_config import Config
from daemon.console import (
    account_pages,
    export_pages,
    filters,
    monitoring_tab,
    pages,
    script_pages,
    tabs,
    test_tab,
    wizard,
)
from daemon.console.signin import Session, SignIn, SignInRefused
from daemon.console.web import LIFECYCLE, MULTIPART, SESSION, SIGNIN, render, render_message
from daemon.core.errors import ScriptdError
from daemon.gateway.tryout import Tryout
from daemon.lifecycle.actions import Lifecycle

__all__ = ["COOKIE", "ConsoleLinks", "make_console", "serve_console"]

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
COOKIE = "scriptd_console"
OPEN_PATHS = ("/signin", "/static/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No inline script or style anywhere: the pages load /static files only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # The sign-in token is in a URL: never send it on to another page.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def errors_to_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A refusal of the lifecycle on a page: its message, with its HTTP status."""
    try:
        return await handler(request)
    except ScriptdError as exc:
        return render_message(request, "Not possible", exc.message, exc.http_status)


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(OPEN_PATHS):
        return await handler(request)
    session = request.app[SIGNIN].session(request.cookies.get(COOKIE))
    if session is None:
        return render_message(
            request, "Sign in", "You are not signed in. Run `scriptctl console` on the "
            "daemon's host and open the link it prints.", 401,
        )  # fmt: skip
    if request.method not in ("GET", "HEAD") and not await _csrf_ok(request, session):
        return render_message(
            request, "Refused", "This form's CSRF token is missing or does not match your "
            "session: reload the page and try again.", 403,
        )  # fmt: skip
    request[SESSION] = session
    return await handler(request)


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type == "multipart/form-data":
        given = await _multipart_token(request)
    elif given is None and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    return session.csrf_matches(given)


async def _multipart_token(request: web.Request) -> str | None:
    """An upload's token is the form's first part (its hidden field comes first), read
    before any file byte; the handler reads the rest from the same reader."""
    reader = await request.multipart()
    request[MULTIPART] = reader
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != "csrf_token":
        return None
    return (await part.read_chunk(256)).decode("ascii", "replace")


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    """The link opens a page that asks to sign in: only its POST spends the token, so
    a link preview or a prefetch of the URL does not use it up."""
    token = request.query.get("token", "")
    try:
        who = request.app[SIGNIN].peek(token)
    except SignInRefused as exc:
        return _refused_link(request, exc)
    return render(request, "signin.html", {"token": token, "who": who})


async def sign_in(request: web.Request) -> web.StreamResponse:
    token = (await request.post()).get("token", "")
    try:
        session_id, _ = request.app[SIGNIN].redeem(token if isinstance(token, str) else "")
    except SignInRefused as exc:
        return _refused_link(request, exc)
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE, session_id, path="/", httponly=True, samesite="Strict", secure=request.secure
    )
    return response


def _refused_link(request: web.Request, exc: SignInRefused) -> web.Response:
    text = f"{str(exc).capitalize()}. Ask for a new one with `scriptctl console`."
    return render_message(request, "Sign-in link not valid", text, 403)


async def sign_out(request: web.Request) -> web.StreamResponse:
    request.app[SIGNIN].end(request.cookies.get(COOKIE, ""))
    response = render_message(request, "Signed out", "You are signed out.", 200)
    response.del_cookie(COOKIE, path="/")
    return response


def make_console(lc: Lifecycle, signin: SignIn, tryout: Tryout | None = None) -> web.Application:
    """The console's app; `tryout` calls scripts for the Test tab (None: it cannot)."""
    app = web.Application(
        middlewares=[security_headers, signed_in, errors_to_pages],
        client_max_size=lc.ctx.config.max_archive_bytes + (1 << 20),
    )
    app[LIFECYCLE] = lc
    app[SIGNIN] = signin
    if tryout is not None:
        app[test_tab.TRYOUT] = tryout
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/signin", sign_in_page)
    app.router.add_post("/signin", sign_in)
    app.router.add_post("/signout", sign_out)
    filters.install(env, app)
    app.router.add_static("/static/", HERE / "static", append_version=True, name="static")
    pages.add_routes(app.router)
    script_pages.add_routes(app.router)
    tabs.add_routes(app.router)
    test_tab.add_routes(app.router)
    monitoring_tab.add_routes(app.router)
    wizard.add_routes(app.router)
    account_pages.add_routes(app.router)
    export_pages.add_routes(app)
    return app


class ConsoleLinks:
    """Issues sign-in links for the admin API's `POST /v1/console/link`."""

    def __init__(self, signin: SignIn, config: Config) -> None:
        self.signin = signin
        scheme = "https" if config.console_tls_cert else "http"
        host = config.console_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        shown = f"[{host}]" if ":" in host else host
        self.base = f"{scheme}://{shown}:{config.console_port}"

    def link(self, user: str) -> dict[str, Any]:
        token = self.signin.issue_link_token(user)
        return {
            "url": f"{self.base}/signin?token={token}",
            "user": user,
            "expires_in_s": self.signin.link_ttl_s,
        }


async def serve_console(app: web.Application, config: Config) -> web.AppRunner:
    """Serve the console on console.listen (TLS when console.tls_cert is set)."""
    context = None
    if config.console_tls_cert and config.console_tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.console_tls_cert, config.console_tls_key)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.console_host, config.console_port, ssl_context=context)
    await site.start()
    return runner
