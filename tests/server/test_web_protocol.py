"""The browser engine's protocol constants (``web/sdk/protocol.js``) are the ones the
Python side uses: the protocol version, the limits, the id patterns, the terminal
events and every enum ordinal and error code. Its constants are generated from
``core/protocol.py`` (``python -m ringline.server.protocol_js``): the checked-in file
must be what the generator writes, and, parsed (no browser, no node), hold the values
of the Python side."""

from __future__ import annotations

import re
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest

from ringline.core import enums, protocol
from ringline.core.errors import ErrorCode
from ringline.server import protocol_js

PROTOCOL_JS = Path(__file__).resolve().parents[2] / "src" / "ringline" / "web" / "sdk" / "protocol.js"

#: JS-only error codes: the browser's own devices (the Python SDK has no camera).
JS_ONLY_ERRORS = {"DEVICE_ERROR"}


def js_constants() -> dict[str, Any]:
    """Every ``export const NAME = …;`` of protocol.js: numbers, regex sources (without
    ^ and $), frozen arrays of strings and frozen ``{KEY: number}`` tables."""
    text = PROTOCOL_JS.read_text()
    out: dict[str, Any] = {}
    for m in re.finditer(r"^export const (\w+) = (.*?);$", text, re.M | re.S):
        name, value = m.group(1), m.group(2).strip()
        if re.fullmatch(r"-?\d+", value):
            out[name] = int(value)
        elif regex := re.fullmatch(r"/\^(.*)\$/", value):
            out[name] = regex.group(1)
        elif array := re.fullmatch(r"Object\.freeze\(\[(.*)\]\)", value, re.S):
            out[name] = re.findall(r'"([^"]*)"', array.group(1))
        elif table := re.fullmatch(r"Object\.freeze\(\{(.*)\}\)", value, re.S):
            out[name] = {k: int(v) for k, v in re.findall(r"(\w+):\s*(-?\d+)", table.group(1))}
        else:
            raise AssertionError(f"protocol.js: cannot read {name} = {value[:60]}; extend js_constants()")
    return out


JS = js_constants()


def test_the_checked_in_module_is_what_the_generator_writes() -> None:
    assert protocol_js.PROTOCOL_JS.resolve() == PROTOCOL_JS
    text = PROTOCOL_JS.read_text()
    assert protocol_js.render(text) == text, (
        "web/sdk/protocol.js is stale: run python -m ringline.server.protocol_js and commit it"
    )


def test_the_generator_replaces_only_its_block() -> None:
    stale = (
        f"// mine\n{protocol_js.BEGIN}\nexport const OLD = 1;\n{protocol_js.END}\nexport const KEPT = 2;\n"
    )
    fresh = protocol_js.render(stale)
    assert fresh.startswith(f"// mine\n{protocol_js.BEGIN}\n") and fresh.endswith(
        f"{protocol_js.END}\nexport const KEPT = 2;\n"
    )
    assert "OLD" not in fresh and "export const PROTOCOL_VERSION = 1;" in fresh
    with pytest.raises(ValueError, match="BEGIN"):
        protocol_js.render("export const X = 1;\n")


def test_the_parser_reads_every_kind_of_constant() -> None:
    # A sanity check of the parser itself, so an empty parse cannot pass the tests below.
    assert JS["PROTOCOL_VERSION"] == 1 and JS["MediaType"] == {"UNKNOWN": 0, "AUDIO": 1, "VIDEO": 2}
    assert "on_call_end" in JS["TERMINAL_EVENTS"] and JS["USER_ID"].startswith("[")


def test_protocol_version() -> None:
    assert JS["PROTOCOL_VERSION"] == protocol.PROTOCOL_VERSION


def test_id_patterns() -> None:
    assert JS["USER_ID"] == protocol.USER_ID.pattern
    assert JS["DEVICE_ID"] == protocol.DEVICE_ID.pattern


def test_limits_match_the_python_engine() -> None:
    assert JS["MAX_CALLEES"] == protocol.MAX_CALLEES
    assert JS["MAX_USER_DATA_BYTES"] == protocol.MAX_USER_DATA_BYTES
    assert JS["MAX_CALL_ID"] == protocol.MAX_CALL_ID
    assert JS["MAX_RING_TIMEOUT"] == protocol.MAX_RING_TIMEOUT
    assert JS["MAX_RECENT"] == protocol.MAX_RECENT


def test_terminal_events_match_the_python_engine() -> None:
    # The events after which this device is out of the call (the SDKs' view); the
    # server also owes a device on_call_cancelled, their companion (OWED_EVENTS).
    assert set(JS["TERMINAL_EVENTS"]) == protocol.TERMINAL_EVENTS
    assert protocol.TERMINAL_EVENTS | {"on_call_cancelled"} == protocol.OWED_EVENTS


@pytest.mark.parametrize(
    "enum",
    [
        enums.MediaType,
        enums.CallRole,
        enums.CallStatus,
        enums.CallScene,
        enums.CallEndReason,
        enums.NetworkQuality,
        enums.CallResultType,
    ],
    ids=lambda e: e.__name__,
)
def test_enum_ordinals(enum: type[IntEnum]) -> None:
    assert JS[enum.__name__] == {m.name: m.value for m in enum}


def test_error_codes() -> None:
    js = JS["ErrorCode"]
    assert {name: code for name, code in js.items() if name not in JS_ONLY_ERRORS} == {
        name: ErrorCode[name].value for name in js if name not in JS_ONLY_ERRORS
    }
    assert not {code for name, code in js.items() if name in JS_ONLY_ERRORS} & {e.value for e in ErrorCode}


def test_close_codes_and_the_server_url_limit_match_the_python_side() -> None:
    # Written by hand below the generated block (the generator does not emit them).
    assert JS["CLOSE_NODE_LEAVING"] == protocol.CLOSE_NODE_LEAVING == 1012
    assert JS["CLOSE_TRY_AGAIN_LATER"] == protocol.CLOSE_TRY_AGAIN_LATER == 1013
    assert JS["MAX_SERVER_URLS"] == protocol.MAX_SERVER_URLS
