"""`GET /v1/scripts/{name}/logs`: what a script's replicas wrote to stdout and stderr.

Without `follow`: JSON, the end (`tail` bytes, default 64 KiB) of each replica's kept
log, oldest replica first, each with whether it still runs. With `follow=true`: a
stream of JSON lines (application/x-ndjson): first one line per replica with that end,
then `{"replica", "text"}` for each chunk as the replica writes it, and
`{"skipped": N}` when this reader lagged and N bytes were not sent to it. The stream
ends when the client goes away or the daemon stops.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib

import orjson
from aiohttp import web

from daemon.admin.http import json_response, lifecycle
from daemon.admin.openapi import Route
from daemon.core.errors import BadRequest, NotFound
from daemon.serving.replica_logs import Follower, LogWriter, read_logs

__all__ = ["LOGS", "ROUTES", "end_follows"]

LOGS = web.AppKey("logs", LogWriter)
TAIL_DEFAULT = 64 << 10
TAIL_MAX = 16 << 20
HEARTBEAT_S = 15.0  # an idle follow sends an empty line this often (finds gone clients)


def _tail(request: web.Request) -> int:
    text = request.query.get("tail", str(TAIL_DEFAULT))
    if not (text.isascii() and text.isdigit()) or int(text) > TAIL_MAX:
        raise BadRequest(f"tail = {text!r}: a number of bytes from 0 to {TAIL_MAX}", field="tail")
    return int(text)


def _follow(request: web.Request) -> bool:
    text = request.query.get("follow", "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise BadRequest(f"follow = {text!r}: true or false", field="follow")
    return text in ("true", "1")


async def get_logs(request: web.Request) -> web.StreamResponse:
    lc, logs = lifecycle(request), request.app[LOGS]
    script = await lc.get(request.match_info["name"])
    replica = request.query.get("replica") or None
    tail, follow = _tail(request), _follow(request)
    follower = logs.follow(script.id, replica) if follow else None  # before reading: no gap
    try:
        kept = await asyncio.to_thread(read_logs, logs.log_dir, script.id, replica, tail)
        running = logs.running(script.id)
        if replica is not None and not kept and replica not in running:
            raise NotFound(f"script {script.name!r} has no replica {replica!r} with logs")
        views = [r.to_json(running.__contains__) for r in kept]
        if follower is None:
            return json_response({"script": script.name, "replicas": views})
        return await _stream(request, views, follower)
    finally:
        if follower is not None:
            logs.unfollow(script.id, follower)


async def _stream(
    request: web.Request, views: list[dict[str, object]], follower: Follower
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    for view in views:
        await response.write(orjson.dumps(view) + b"\n")
    skipped = 0
    decoders: dict[str, codecs.IncrementalDecoder] = {}  # a character may span two chunks
    with contextlib.suppress(ConnectionResetError):
        while not follower.ended:
            try:
                name, data = await asyncio.wait_for(follower.chunks.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b"\n")
                continue
            if follower.skipped != skipped:
                await response.write(orjson.dumps({"skipped": follower.skipped - skipped}) + b"\n")
                skipped = follower.skipped
            if not data:
                continue
            decoder = decoders.setdefault(name, codecs.getincrementaldecoder("utf-8")("replace"))
            text = decoder.decode(data)
            await response.write(orjson.dumps({"replica": name, "text": text}) + b"\n")
    return response


async def end_follows(app: web.Application) -> None:
    """At shutdown, before aiohttp waits for running handlers: end every follow."""
    app[LOGS].end_follows()


ROUTES = (
    Route("GET", "/v1/scripts/{name}/logs", get_logs,
          "Replicas' stdout and stderr (follow=true: a stream of JSON lines)", None, "Logs",
          query=("replica", "tail", "follow")),
)  # fmt: skip
