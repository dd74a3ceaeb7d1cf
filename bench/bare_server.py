"""The benchmarks' baseline: a bare aiohttp + uvloop handler that reads a JSON
body and answers the same JSON shape as a scriptd call (`{"result": null}`).

Run as `python bench/bare_server.py PORT`; it serves 127.0.0.1 only.
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import web


async def call(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=orjson.dumps({"result": None}), content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/scripts/{script}/functions/{function}", call)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
