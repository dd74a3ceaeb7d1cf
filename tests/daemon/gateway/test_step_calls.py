"""The step body's inputs: the fast parse (orjson) gives what the exact one (json with
Decimal) gives, for any JSON, and numbers keep their digits."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.gateway.step_calls import _exact, _no_constant, inputs_json

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30).map(str).map(orjson.Fragment)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str).map(orjson.Fragment)
    | st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


def exact(raw: bytes) -> bytes | str:
    """The inputs as json with Decimal alone reads them."""
    try:
        body = json.loads(raw, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        return f"the body is not valid JSON: {exc}"
    return orjson.dumps(body["inputs"], default=_exact)


@settings(max_examples=200, deadline=None)
@given(inputs=st.dictionaries(st.text(max_size=6), VALUES, max_size=5))
def test_the_inputs_keep_every_digit(inputs: dict[str, Any]) -> None:
    raw = orjson.dumps({"inputs": inputs})
    assert inputs_json(raw) == exact(raw)


def test_wide_integers_and_exponents_keep_their_text() -> None:
    raw = b'{"inputs": {"a": {"n": 123456789012345678901234567890}, "b": {"n": 1E+2}}}'
    assert inputs_json(raw) == b'{"a":{"n":123456789012345678901234567890},"b":{"n":1E+2}}'


def test_what_is_not_json_is_named_as_json_names_it() -> None:
    for raw in (b"", b"nope", b'{"inputs": {"x": NaN}}', b"{" * 2000 + b"}" * 2000):
        message = inputs_json(raw)
        assert isinstance(message, str) and message.startswith("the body is not valid JSON:")
