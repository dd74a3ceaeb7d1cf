"""Admin routes of integration secrets: set, list, delete. A value goes in and never
comes out: answers carry the name, when it was set, and the scripts granted it.

Thin like the other route modules: check the request, call the store in a thread.
"""

from __future__ import annotations

from aiohttp import web

from daemon.admin.http import body_json, caller, json_response, lifecycle
from daemon.admin.openapi import Route
from daemon.core.errors import BadRequest
from daemon.core.models import ENV_KEY_RE, now_iso
from daemon.lifecycle.request_checks import MAX_ENV_VALUE, check_object

__all__ = ["ROUTES"]


def secret_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not ENV_KEY_RE.fullmatch(name):
        raise BadRequest(
            f"secret name {name[:80]!r} is not allowed: it becomes an environment variable, "
            "so a letter or _, then letters, digits or _ (at most 128)",
            field="name",
        )
    return name


async def put_secret(request: web.Request) -> web.Response:
    name = secret_name(request)
    body = check_object(await body_json(request), frozenset({"value"}))
    value = body.get("value")
    if not isinstance(value, str) or not value or len(value) > MAX_ENV_VALUE:
        # never echo the value, not even in an error
        raise BadRequest(
            f"value must be a non-empty string of at most {MAX_ENV_VALUE} characters",
            field="value",
        )
    lc = lifecycle(request)
    info = await lc.ctx.db(lc.ctx.store.put_secret, name, value, caller(request), now_iso())
    return json_response(info.to_json())


async def list_secrets(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    secrets = await lc.ctx.db(lc.ctx.store.list_secrets)
    return json_response({"secrets": [s.to_json() for s in secrets]})


async def delete_secret(request: web.Request) -> web.Response:
    name = secret_name(request)
    lc = lifecycle(request)
    await lc.ctx.db(lc.ctx.store.delete_secret, name)
    return json_response({"deleted": name})


ROUTES = (
    Route("GET", "/v1/secrets", list_secrets,
          "The account's integration secrets: names and users, never values", None, "SecretList"),
    Route("PUT", "/v1/secrets/{name}", put_secret, "Set a secret (new, or a new value)",
          "SecretInput", "Secret"),
    Route("DELETE", "/v1/secrets/{name}", delete_secret,
          "Delete a secret (409 while a Deployed script is granted it)", None, "Deleted"),
)  # fmt: skip
