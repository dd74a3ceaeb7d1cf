"""scriptctl: the administrator's command line for scriptd, over the admin unix socket.

Only the standard library is imported on this path (no aiohttp), so that every
command starts fast. `daemon.cli.main:main` is the entry point.
"""
