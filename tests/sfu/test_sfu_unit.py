"""The pure parts of server/sfu.py: the --sfu value, room ids and secrets, tokens,
request bodies and the parsing of Janus's answers."""

from __future__ import annotations

import re

import pytest

from ringline.server.sfu import (
    JanusError,
    SfuTarget,
    new_token,
    parse_sfu,
    plugin_data,
    request_body,
    room_id,
    room_secret,
)


def test_parse_sfu() -> None:
    assert parse_sfu("janus=http://127.0.0.1:8088/janus/") == SfuTarget(
        "janus", "http://127.0.0.1:8088/janus"
    )
    assert parse_sfu(" janus=https://sfu.example.org/janus ").url == "https://sfu.example.org/janus"
    for bad in (
        "http://127.0.0.1:8088/janus",
        "mediasoup=http://x/",
        "janus=ftp://x/",
        "janus=http://",
        "janus=x",
    ):
        with pytest.raises(ValueError, match=r"janus=URL|not an http"):
            parse_sfu(bad)
    with pytest.raises(ValueError, match=re.escape("e.g. --sfu janus=http://127.0.0.1:8088/janus")):
        parse_sfu("janus=http://h:99999/janus")


def test_room_ids_secrets_tokens() -> None:
    assert room_id("c-1") == "ringline-c-1"
    s = room_secret("k", "ringline-c-1")
    assert s == room_secret("k", "ringline-c-1") and len(s) == 64
    assert s != room_secret("k2", "ringline-c-1") and s != room_secret("k", "ringline-c-2")
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 22 for t in tokens)


def test_request_body() -> None:
    assert request_body("create", "t1", "") == {"janus": "create", "transaction": "t1"}
    assert request_body("message", "t2", "s", body={"request": "list"}) == {
        "janus": "message",
        "transaction": "t2",
        "apisecret": "s",
        "body": {"request": "list"},
    }


def test_plugin_data() -> None:
    assert plugin_data({"janus": "success", "data": {"id": 7}}) == {"id": 7}
    ok = {
        "janus": "success",
        "plugindata": {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "created"}},
    }
    assert plugin_data(ok) == {"videoroom": "created"}
    with pytest.raises(JanusError) as e:
        plugin_data(
            {
                "janus": "error",
                "error": {"code": 403, "reason": "Unauthorized request (wrong or missing secret/token)"},
            },
            "create",
        )
    assert (e.value.code, e.value.name) == (403, "UNAUTHORIZED")
    assert str(e.value).startswith("Janus create: 403 UNAUTHORIZED: Unauthorized")
    with pytest.raises(JanusError) as e:
        plugin_data(
            {
                "janus": "success",
                "plugindata": {
                    "data": {"videoroom": "event", "error_code": 426, "error": "No such room (x)"}
                },
            },
            "destroy",
        )
    assert (e.value.code, e.value.name) == (426, "VIDEOROOM_NO_SUCH_ROOM")
    assert str(e.value) == "Janus destroy: 426 VIDEOROOM_NO_SUCH_ROOM: No such room (x)"
    with pytest.raises(JanusError) as e:
        plugin_data({"janus": "error", "error": {"code": 458, "reason": "No such session 1"}})
    assert e.value.name == "SESSION_NOT_FOUND"
    odds: list[object] = [[], {"janus": "event"}, {"janus": "success", "plugindata": {}}]
    for odd in odds:
        with pytest.raises(JanusError) as e:
            plugin_data(odd)
        assert e.value.code == 490
    assert JanusError(0, "cannot reach http://x: refused", "create").name == "UNREACHABLE"
    assert JanusError(999, "?").name == "UNKNOWN_CODE"
