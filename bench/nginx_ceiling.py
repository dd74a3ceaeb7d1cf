"""The machine's ceiling for the HTTP benchmarks: nginx answering a fixed 200 with the
same JSON as a no-op call, one worker, when nginx is installed (Debian: nginx-light).

    with nginx_ceiling(port) as proc: ...   # None when there is no nginx
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["nginx_ceiling"]

CONF = """
daemon off;
master_process on;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log crit;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{{"result":null}}';
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


@contextmanager
def nginx_ceiling(port: int, workers: int = 1) -> Iterator[subprocess.Popen[bytes] | None]:
    binary = nginx_binary()
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="scriptd-nginx-") as root:
        conf = Path(root) / "nginx.conf"
        conf.write_text(CONF.format(root=root, port=port, workers=workers))
        proc = subprocess.Popen([binary, "-c", str(conf), "-p", root])
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(10)
