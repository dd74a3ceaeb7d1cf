"""The gateway's port as the daemon serves it: the lean front (daemon/gateway/front.py)
answers the call routes (a function's call, a code step's run) and /healthz; requests
below /v1/uploads/ stream through to the gateway's aiohttp app
(daemon/gateway/bridge.py), which listens on no port of its own."""

from __future__ import annotations

from aiohttp import web

from daemon.config.daemon_config import Config
from daemon.gateway.app import Gateway
from daemon.gateway.async_intake import AsyncIntake
from daemon.gateway.bridge import AiohttpBridge
from daemon.gateway.calls import FrontCalls
from daemon.gateway.front import FrontServer
from daemon.gateway.front_types import FrontLimits

__all__ = ["front_limits", "serve_front"]


def front_limits(config: Config) -> FrontLimits:
    return FrontLimits(
        header_timeout_s=config.gateway_header_timeout_s,
        body_timeout_s=config.gateway_body_timeout_s,
        idle_timeout_s=config.gateway_idle_timeout_s,
    )


def serve_front(
    gateway: Gateway, behind: web.AppRunner, config: Config, intake: AsyncIntake | None = None
) -> FrontServer:
    """The front over `gateway`, with `behind` (set up, no site) for the other routes
    and `intake` for asynchronous calls. Call `start(host, port)` on it."""
    if behind.server is None:
        raise RuntimeError("call setup() on the gateway's AppRunner before serve_front")
    calls = FrontCalls(gateway, AiohttpBridge(behind.server), intake)
    return FrontServer(calls, front_limits(config))
