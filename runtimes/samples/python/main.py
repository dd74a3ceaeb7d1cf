"""Sample scriptd project (Python).

Every public function defined in this file (not imported into it, name not
starting with "_") becomes callable through the script's endpoint. The JSON
payload of a call is passed as keyword arguments:

    {"function": "greet", "payload": {"name": "Ada"}}  ->  greet(name="Ada")

Helpers live in other files of the project and are imported with relative
imports (see utils/text.py). Environment variables set in the script's runtime
settings are read with os.getenv; WORKSPACE_DIR is a read-write folder kept
across deployments, UPLOADS_DIR a read-only one.
"""

import asyncio
import json
import os
from pathlib import Path

from .utils.text import slugify, word_count


def greet(name: str = "world") -> dict:
    """Say hello; the greeting word comes from the GREETING environment variable."""
    greeting = os.getenv("GREETING", "Hello")
    return {"message": f"{greeting}, {name}!"}


def text_stats(text: str, top: int = 3) -> dict:
    """Count the words of a text, using the helper module."""
    counts = word_count(text)
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"words": sum(counts.values()), "distinct": len(counts), "top": common}


def save_note(title: str, body: str = "") -> dict:
    """Write a note into WORKSPACE_DIR and list the notes saved so far."""
    folder = _notes_dir()
    path = folder / f"{slugify(title)}.json"
    path.write_text(json.dumps({"title": title, "body": body}))
    return {"saved": path.name, "notes": sorted(p.name for p in folder.glob("*.json"))}


async def wait_and_echo(message: str, delay_s: float = 0.1) -> dict:
    """An async function: awaited by the runtime like any other call."""
    await asyncio.sleep(min(float(delay_s), 5.0))
    return {"echo": message, "waited_s": delay_s}


def _notes_dir() -> Path:
    # Leading underscore: a private helper, not exposed.
    folder = Path(os.getenv("WORKSPACE_DIR", "/tmp")) / "notes"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
