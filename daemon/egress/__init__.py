"""Outbound HTTP for scripts: the per-replica proxy, the policy it enforces, the CA it
intercepts TLS with, and the HTTP request logs it writes.

Modules, lowest first: policy (what may be reached, refusal messages), resolver, ca,
httplog (request logs and secret redaction), accounting, wire (HTTP/1.1 parsed by
httptools, and its framing), upstream (checked connections), upstreams, exchange
(relaying requests), tunnel (opaque CONNECT), proxy (one unix socket per replica)."""
