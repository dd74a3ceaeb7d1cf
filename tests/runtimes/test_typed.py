"""The Python codec of typed values (runtimes/python/typed.py) on its own:
properties over every type code, and the errors it gives."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtimes import protocol
from tests.runtimes.step_projects import FIELD, OBJECT, TYPED
from tests.runtimes.typed_values import typed, values_of

CODES = sorted(set(TYPED.values()))


@settings(max_examples=60)
@given(data=st.data())
@pytest.mark.parametrize("text", CODES)
def test_decode_of_encode_gives_the_value_back(text: str, data: st.DataObject) -> None:
    code = typed.parse_type(text)
    value = data.draw(values_of(text))
    wire = typed.encode(code, value, "field")
    assert list(wire) == [code.text]
    # Through the exact JSON text, as the value crosses a frame.
    sent = protocol.loads_exact(typed.dumps(wire, protocol.dumps))
    assert typed.decode(code, sent, "field") == value


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a[f]", 'a["f"]'),
        (f"e<{OBJECT.upper()}>", f"e<{OBJECT}>"),
        (f"a[o<{OBJECT}, {FIELD}>]", f"a[o<{OBJECT},{FIELD}>]"),
        ("a[dt]", "a[dt]"),
    ],
)
def test_type_codes_are_written_canonically(text: str, canonical: str) -> None:
    assert typed.parse_type(text).text == canonical


@pytest.mark.parametrize("text", ["x", "a[a[s]]", "a[l]", "e<nope>", "o<a,b,c>", "", 3])
def test_unknown_type_codes_are_refused(text: Any) -> None:
    with pytest.raises(ValueError):
        typed.parse_type(text)


@pytest.mark.parametrize(
    ("text", "value", "received"),
    [
        ("s", 42, "int 42"),
        ("b", 1, "int 1"),
        ("n", "3", "str"),
        ("n", float("nan"), "finite"),
        ("d", datetime.datetime(2026, 1, 1), "datetime"),
        ("dt", datetime.datetime(2026, 1, 1), "no time zone"),
        ("p", "555-0100", "E.164"),
        ("u", "nope", "8-4-4-4-12"),
        (f"e<{OBJECT}>", typed.EntityRecord(uuid.UUID(FIELD), uuid.uuid4()), "belongs to object"),
        ("a[s]", ["a", 1], "item 1: the value must be a str"),
        ("l", [{1, 2}], "set is not plain JSON"),
        ('a["f"]', [""], "file id"),
    ],
)
def test_a_wrong_type_out_names_field_expected_and_received(
    text: str, value: Any, received: str
) -> None:
    with pytest.raises(typed.TypedValueError) as caught:
        typed.encode(typed.parse_type(text), value, "total")
    message = str(caught.value)
    assert message.startswith(f'output "total": expected {typed.parse_type(text).text} ')
    assert received in message


def test_convenient_outputs_are_encoded_exactly() -> None:
    assert typed.encode(typed.parse_type("n"), 0.1, "x") == {"n": decimal.Decimal("0.1")}
    assert typed.encode(typed.parse_type("d"), "2026-12-04", "x") == {"d": "2026-12-04"}
    utc = datetime.datetime(2026, 12, 4, 17, tzinfo=datetime.UTC)
    assert typed.encode(typed.parse_type("dt"), utc, "x") == {"dt": "2026-12-04T17:00:00Z"}
    assert typed.encode(typed.parse_type(f"e<{OBJECT}>"), FIELD.upper(), "x") == {
        f"e<{OBJECT}>": FIELD
    }
    assert typed.dumps({"n": decimal.Decimal("1.10")}, protocol.dumps) == '{"n":1.10}'
