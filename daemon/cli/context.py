"""What every command handler gets: the client, the output mode and the streams."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from daemon.cli.client import AdminClient
from daemon.cli.output import emit_json


@dataclass
class Context:
    client: AdminClient
    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def show(self, data: Any, render: Callable[[Any], str]) -> None:
        """The API's JSON under --json, else the rendering for people."""
        if self.json:
            emit_json(data, self.out)
        else:
            self.out.write(render(data) + "\n")

    def say(self, text: str) -> None:
        """A line for people on stdout (nothing under --json, where stdout is JSON only)."""
        if not self.json:
            self.out.write(text + "\n")

    def note(self, text: str) -> None:
        """Progress and hints: always on stderr."""
        self.err.write(text + "\n")
        self.err.flush()
