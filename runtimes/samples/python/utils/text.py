"""Text helpers. Functions here are not exposed: only main.py's own functions are."""

import re
from collections import Counter

_WORD = re.compile(r"[\w']+")


def word_count(text: str) -> dict[str, int]:
    return dict(Counter(w.lower() for w in _WORD.findall(text)))


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "note"
