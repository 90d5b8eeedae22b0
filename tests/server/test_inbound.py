"""The checks every WebSocket frame and REST body passes (ringline.server.inbound), as pure logic."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from ringline.server.inbound import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    InputError,
    check_value,
    parse_json,
    request_id,
    safe_utf8,
)


def refusal(text: str | bytes) -> InputError:
    with pytest.raises(InputError) as info:
        parse_json(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('{"a": "x\\ud800"}', "a", "surrogate (\\ud800) at character 1"),
        ('{"a": "\\udfff"}', "a", "surrogate (\\udfff)"),
        ('{"a": ["ok", {"b": "\\u0000"}]}', "a[1].b", "NUL"),
        ('{"k\\ud800": 1}', "k\\ud800", "has a name that contains a lone UTF-16 surrogate"),
        ('{"n": NaN}', "n", "is NaN"),
        ('{"n": -Infinity}', "n", "is -Infinity"),
        ('{"n": 1e400}', "n", "is Infinity"),
        ('{"n": 9223372036854775808}', "n", "outside the 64-bit range"),
        ('{"n": -9223372036854775809}', "n", "outside the 64-bit range"),
    ],
)
def test_values_no_field_may_hold_are_refused_naming_the_field(text: str, field: str, words: str) -> None:
    e = refusal(text)
    assert not e.structural and e.field == field and words in e.problem, e
    assert e.message() == f"field '{field}' {e.problem}"
    assert e.message(quote="") == f"field {field} {e.problem}"
    e.message().encode("utf-8")  # the message itself can always be sent


def test_the_64_bit_bounds_and_surrogate_pairs_are_accepted() -> None:
    text = f'{{"lo": {INT_MIN}, "hi": {INT_MAX}, "s": "\\ud83d\\ude00", "f": 1e308}}'
    assert parse_json(text) == {"lo": INT_MIN, "hi": INT_MAX, "s": "\U0001f600", "f": 1e308}


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 2000, 1_000_000])
def test_deep_nesting_is_refused_without_recursion(levels: int) -> None:
    e = refusal("[" * levels + "]" * levels)
    assert e.structural and f"deeper than {MAX_DEPTH}" in e.problem
    e = refusal(b'{"a": ' + b"{" * levels + b"}" * levels + b"}")
    assert e.structural


def test_the_nesting_limit_counts_levels_outside_strings_only() -> None:
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert parse_json('{"s": "%s"}' % ("[{" * 100)) == {"s": "[{" * 100}
    escaped = '{"s": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"}'
    assert parse_json(escaped)["s"].startswith('"[[[')


def test_a_refusal_carries_the_top_level_request_id() -> None:
    deep = "[" * 100 + "]" * 100
    assert refusal(f'{{"op": "x", "data": {deep}, "id": 41}}').request_id == 41
    assert refusal(f'{{"data": {{"id": 5, "x": {deep}}}}}').request_id is None  # not top level
    assert refusal('{"id": 7, "op": "calls", "v": "\\ud800"}').request_id == 7
    assert refusal('{"id": 99999999999999999999}').request_id is None  # the id is the bad field
    assert refusal(b'{"id": 3, "x": NaN}').request_id == 3


def test_a_frame_that_is_not_json_still_names_its_request_id_when_it_can() -> None:
    assert refusal('{"id": 12, "op": "calls", "params": {"title": , "x": 1}}').request_id == 12
    assert refusal(b'{"op": "x", "id": 13, "a": tru}').request_id == 13
    assert refusal('{"id": "12", "op": }').request_id is None


def test_request_id_reads_a_long_document_only_from_its_start() -> None:
    # What a frame refused unread (rate limit, size) is answered with: the whole
    # document when it is short, else only an "id" that is its first key.
    short = '{"op": "ping", "pad": "x", "id": 8}'
    assert request_id(short) == 8 and request_id(short.encode()) == 8
    assert request_id(short, read_up_to=len(short)) == 8
    assert request_id(short, read_up_to=len(short) - 1) is None
    long = '{"id": 9, "op": "calls", "pad": "' + "x" * 500 + '"}'
    assert request_id(long, read_up_to=100) == 9 and request_id(long.encode(), read_up_to=100) == 9
    assert request_id(' { "id" : -4 , "op": "x"}', read_up_to=1) == -4
    assert request_id('{"id": 99999999999999999999, "op": "x"}', read_up_to=1) is None
    assert request_id('{"id": "9", "op": "x"}', read_up_to=1) is None
    assert request_id('{"id": true}') is None


def test_not_json_is_structural() -> None:
    for text in ("{bad", "", b"\xff\xfe\x00garbage", "1" * 5000):
        assert refusal(text).structural


def test_check_value_prefixes_the_root() -> None:
    with pytest.raises(InputError) as info:
        check_value({"x": [float("nan")]}, root="params")
    assert info.value.field == "params.x[0]"


def test_safe_utf8_escapes_only_what_utf8_cannot_encode() -> None:
    assert safe_utf8('{"a":"é😀"}') == '{"a":"é😀"}'
    fixed = safe_utf8('{"a":"x\ud800y"}')
    fixed.encode("utf-8")
    assert json.loads(fixed) == {"a": "x\ud800y"}  # the same JSON value, now sendable


def _texts(size: int) -> hst.SearchStrategy[str]:
    """Any text, lone surrogates and NUL included, often."""
    odd = hst.sampled_from(["\ud800", "x\udfff", "\udbff\ud800", "a\x00", "\U0001f600", ""])
    return odd | hst.text(hst.characters(codec=None, exclude_categories=()), max_size=size)


json_values = hst.recursive(
    hst.none()
    | hst.booleans()
    | hst.integers(-(2**70), 2**70)
    | hst.floats(allow_nan=True, allow_infinity=True)
    | _texts(8),
    lambda inner: hst.lists(inner, max_size=4) | hst.dictionaries(_texts(4), inner, max_size=4),
    max_leaves=20,
)


def _clean(v: Any, depth: int = 1) -> bool:
    if isinstance(v, str):
        return "\x00" not in v and not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    if isinstance(v, bool) or v is None:
        return True
    if isinstance(v, int):
        return INT_MIN <= v <= INT_MAX
    if isinstance(v, float):
        return math.isfinite(v)
    if depth > MAX_DEPTH:
        return False
    items = list(v.items()) if isinstance(v, dict) else [(None, x) for x in v]
    return all((k is None or _clean(k)) and _clean(x, depth + 1) for k, x in items)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=json_values)
def test_parse_json_accepts_exactly_the_values_that_can_be_kept_and_sent(value: Any) -> None:
    text = json.dumps(value)  # ASCII: surrogates and NUL as escapes, NaN as a constant
    try:
        got = parse_json(text)
    except InputError as e:
        assert not _clean(value), (value, e)
        e.message().encode("utf-8")
        return
    assert _clean(value), value
    json.dumps(got, ensure_ascii=False, allow_nan=False).encode("utf-8")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=hst.text(alphabet='[]{}"\\:,0123456789.eE-+ntrufalsNIyid ', max_size=200))
def test_parse_json_raises_only_input_error(text: str) -> None:
    try:
        parse_json(text)
    except InputError as e:
        e.message().encode("utf-8")
