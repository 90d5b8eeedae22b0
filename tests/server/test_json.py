"""``ringline._json.dumps`` writes what the standard library writes, whichever module
does the work (frames, stored snapshots and callback bodies all go through it)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as s

from ringline.server import jsonenc as _json

std = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

scalars = (
    s.none()
    | s.booleans()
    | s.integers(min_value=-(2**63), max_value=2**64 - 1)
    | s.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not 0 < abs(f) < 1e-4)
    | s.text()
)
values = s.recursive(scalars, lambda inner: s.lists(inner) | s.dictionaries(s.text(), inner), max_leaves=30)


def test_orjson_does_the_work_in_the_default_install() -> None:
    assert _json.FAST


@given(values)
def test_the_same_text_as_the_standard_library(value: Any) -> None:
    assert _json.dumps(value) == std(value)
    assert json.loads(_json.dumps(value)) == value


def test_values_orjson_refuses_are_written_by_the_standard_library() -> None:
    big = {"n": 2**70, "s": "\ud800", 3: [1, 2]}
    assert _json.dumps(big) == std(big)


def test_what_json_cannot_carry_raises_type_error() -> None:
    for bad in ({"x": object()}, {"x": {1, 2}}):
        try:
            _json.dumps(bad)
        except TypeError:
            continue
        raise AssertionError(f"{bad!r} was written")


def test_nan_comes_out_as_null_not_as_invalid_json() -> None:
    text = _json.dumps({"f": math.nan})
    assert text == '{"f":null}'


def test_tiny_floats_differ_only_in_the_exponent_s_spelling() -> None:
    for f in (1e-7, -2.5e-10, 5e-324):
        assert json.loads(_json.dumps([f])) == [f]


def test_a_stored_record_is_the_standard_librarys_text() -> None:
    """``calls.record`` is written with the fast encoder: same text as before."""
    from test_store_conformance import make_record

    from ringline.server.store.sql import record_from_json, record_json

    record = make_record("c-☎-é", start=1_767_000_000.0, caller="ü-caller", callees=["b", "ç"])
    text = record_json(record)
    assert text == std(record.to_dict())
    assert record_from_json(text) == record
