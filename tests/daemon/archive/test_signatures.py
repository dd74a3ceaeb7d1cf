"""Function parameters as JSON Schema, read from main.py's source."""

from __future__ import annotations

from daemon.archive.signatures import python_parameters

SOURCE = """
from typing import Any, Literal, Optional


def plain(a, b=2, *args, c, d="x", **kwargs):
    pass


def typed(name: str, n: int = 3, ratio: float = 0.5, on: bool = False,
          tags: list[str] | None = None, opts: "dict[str, int]" = {},
          pick: Literal["a", "b"] = "a", maybe: Optional[int] = None, any_: Any = None,
          other: SomeClass = None) -> str:
    return name


async def later(x: int):
    pass


def _private(y: int):
    pass
"""


def test_required_defaults_and_extra_keywords() -> None:
    body = python_parameters(SOURCE, ("plain",))["plain"]
    assert body["required"] == ["a", "c"] and body["additionalProperties"] is True
    assert body["properties"]["b"] == {"default": 2}
    assert body["properties"]["d"] == {"default": "x"}
    assert set(body["properties"]) == {"a", "b", "c", "d"}


def test_annotations_become_json_types() -> None:
    props = python_parameters(SOURCE, ("typed",))["typed"]["properties"]
    assert props["name"] == {"type": "string"}
    assert props["n"] == {"type": "integer", "default": 3}
    assert props["ratio"] == {"type": "number", "default": 0.5}
    assert props["on"] == {"type": "boolean", "default": False}
    assert props["tags"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
        "default": None,
    }
    assert props["opts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["pick"] == {"enum": ["a", "b"], "default": "a"}
    assert props["maybe"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert props["any_"] == {"default": None} and props["other"] == {"default": None}


def test_only_the_named_functions() -> None:
    found = python_parameters(SOURCE, ("later", "missing"))
    assert list(found) == ["later"] and found["later"]["additionalProperties"] is False
