"""The Test tab's typed inputs: fields from a function's schema or a step's codes, and
the bodies made from what was typed (numbers keep their digits, empty means default
or null, bad values are refused naming the field)."""

from __future__ import annotations

import json

import pytest

from daemon.archive.signatures import python_parameters
from daemon.core.errors import BadRequest
from daemon.lifecycle.try_inputs import (
    Field,
    function_body,
    function_fields,
    json_body,
    step_body,
    step_fields,
)

SOURCE = """
def f(name: str, times: int = 2, ratio: float = 0.5, loud=False, tags: list[str] | None = None,
      greeting="hi", anything=None):
    pass
"""


def fields_of_f() -> dict[str, Field]:
    return {f.name: f for f in function_fields(python_parameters(SOURCE, ("f",))["f"])}


def test_function_fields_follow_annotations_then_defaults() -> None:
    fields = fields_of_f()
    kinds = {name: (f.kind, f.type_label, f.required) for name, f in fields.items()}
    assert kinds == {
        "name": ("text", "string", True),
        "times": ("integer", "integer", False),
        "ratio": ("number", "number", False),
        "loud": ("boolean", "boolean", False),  # no annotation: its default's type
        "tags": ("json", "any JSON", False),
        "greeting": ("text", "string", False),
        "anything": ("json", "any JSON", False),
    }
    assert fields["times"].hint == "default: 2"
    assert fields["times"].form_name == "in-times"


def test_function_body_keeps_digits_leaves_empty_fields_out() -> None:
    fields = list(fields_of_f().values())
    form = {"in-name": " Ada ", "in-times": "3", "in-ratio": "0.1000000000000000055511",
            "in-loud": "true", "in-tags": ' ["a", "b"] ', "in-greeting": ""}  # fmt: skip
    body = function_body(fields, form)
    assert body.decode() == (
        '{"name": " Ada ", "times": 3, "ratio": 0.1000000000000000055511, "loud": true, '
        '"tags": ["a", "b"]}'
    )
    assert json.loads(body)["name"] == " Ada "  # a string is sent as typed


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({}, "name is required"),
        ({"in-name": "x", "in-times": "2.5"}, "times = '2.5' is not an integer"),
        ({"in-name": "x", "in-ratio": "1e"}, "ratio = '1e' is not a number"),
        ({"in-name": "x", "in-loud": "yes"}, "loud = 'yes' is not true or false"),
        ({"in-name": "x", "in-tags": "[1,"}, "tags is not valid JSON"),
    ],
)
def test_function_body_refuses_what_is_not_its_type(form: dict[str, str], said: str) -> None:
    with pytest.raises(BadRequest) as refused:
        function_body(list(fields_of_f().values()), form)
    assert said in refused.value.message


def test_step_body_types_each_input_and_empty_is_null() -> None:
    fields = step_fields({"who": "s", "n": "n", "ok": "b", "tags": "a[s]", "when": "d"})
    assert [f.kind for f in fields] == ["text", "number", "boolean", "json", "text"]
    form = {"in-who": "Ada", "in-n": "1.50", "in-ok": "false", "in-tags": '["x"]'}
    assert json.loads(step_body(fields, form)) == {
        "inputs": {"who": {"s": "Ada"}, "n": {"n": 1.5}, "ok": {"b": False},
                   "tags": {"a[s]": ["x"]}, "when": {"d": None}},
    }  # fmt: skip
    assert b'{"n": 1.50}' in step_body(fields, form)  # the digits as typed
    with pytest.raises(BadRequest, match=r"tags must be a JSON array \(a\[s\]\)"):
        step_body(fields, {"in-tags": '{"a": 1}'})


def test_json_body_must_be_an_object() -> None:
    assert json_body(' {"a": 1} ') == b' {"a": 1} '
    with pytest.raises(BadRequest, match="must be a JSON object"):
        json_body("[1]")
    with pytest.raises(BadRequest, match="not valid JSON"):
        json_body("{")
