"""Outbound HTTP for scripts: the per-replica proxy, the policy it enforces, the CA it
intercepts TLS with, and the HTTP request logs it writes.

Modules, lowest first: policy (what may be reached, refusal messages), resolver, ca,
httplog (request logs and secret redaction), accounting, wire (HTTP/1.1 parsed by
httptools, and its framing), upstream (checked connections), upstreams, exchange
(relaying requests), tunnel (opaque CONNECT), proxy (one unix socket per replica)."""

from daemon.core import compiled

# The relay's modules come from the mypyc build when it matches their sources
# (daemon/core/compiled.py); else from the .py files here.
compiled.use_for(__name__, __path__)
