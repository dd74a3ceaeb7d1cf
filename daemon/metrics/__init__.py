"""Prometheus metrics: the instruments, their readings, the listener.

`instruments` is compiled with the egress relay, which calls it per request
(daemon/core/compiled.py)."""

from daemon.core import compiled

compiled.use_for(__name__, __path__)
