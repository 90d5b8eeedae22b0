"""The engine side of media: sessions follow the call, made events stay in order."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiortc import RTCIceTransportPolicy

from ringline.client._codec import Event, decode_event
from ringline.client._media_link import EngineMedia
from ringline.client.engine import _decode_sfu
from ringline.core.enums import MediaType
from ringline.media import IceTransportPolicy, MediaOptions, ice_configuration


def ev(name: str, **args: Any) -> Event:
    e = decode_event(name, args)
    assert e is not None
    return e


def sfu(call_id: str, room: dict[str, Any] | None, seq: int) -> Event:
    e = _decode_sfu("on_sfu", {"call_id": call_id, "sfu": room}, seq)
    assert e is not None
    return e


def make() -> tuple[EngineMedia, list[Event], list[tuple[str, dict[str, Any]]]]:
    queued: list[Event] = []
    sent: list[tuple[str, dict[str, Any]]] = []

    async def send(to: str, data: dict[str, Any]) -> None:
        sent.append((to, data))

    link = EngineMedia(
        MediaOptions(video=None), user_id=lambda: "alice", ice_servers=lambda: [], send_signal=send
    )
    link.bind(queued.append)
    return link, queued, sent


async def test_a_session_lives_from_call_begin_to_the_terminal_event() -> None:
    link, _, _ = make()
    assert await link.on_event(ev("on_call_begin", call_id="c1", media_type=1, info={}))
    s = link.session
    assert s is not None and s.call_id == "c1" and s.media_type is MediaType.AUDIO
    assert await link.on_event(
        ev("on_call_media_type_changed", call_id="c1", old_call_media_type=1, new_call_media_type=2)
    )
    assert s.media_type is MediaType.VIDEO
    assert await link.on_event(
        ev("on_call_end", call_id="c1", media_type=2, reason=1, user_id="bob", total_time=3, info={})
    )
    assert link.session is None and s.closed


async def test_availability_reaches_observers_only_when_it_changes() -> None:
    link, _, _ = make()
    await link.on_event(ev("on_call_begin", call_id="c1", media_type=2, info={}))
    on = ev("on_user_video_available", call_id="c1", user_id="bob", is_video_available=True)
    again = ev("on_user_video_available", call_id="c1", user_id="bob", is_video_available=True)
    off = ev("on_user_video_available", call_id="c1", user_id="bob", is_video_available=False)
    assert [await link.on_event(e) for e in (on, again, off)] == [True, False, True]
    # another call's events are not ours to filter
    other = ev("on_user_video_available", call_id="c2", user_id="bob", is_video_available=False)
    assert await link.on_event(other)
    # after bob leaves and comes back, his availability is news again
    await link.on_event(ev("on_user_leave", call_id="c1", user_id="bob"))
    assert await link.on_event(
        ev("on_user_video_available", call_id="c1", user_id="bob", is_video_available=False)
    )
    await link.close()


async def test_events_made_by_a_closed_session_are_not_delivered() -> None:
    link, queued, _ = make()
    await link.on_event(ev("on_call_begin", call_id="c1", media_type=1, info={}))
    s = link.session
    assert s is not None
    s.emit("on_user_voice_volume_changed", {"volume_map": {"alice": 3}})
    made = queued[-1]
    assert made.name == "on_user_voice_volume_changed" and made.call_id == "c1"
    assert made.args == ({"alice": 3},)
    s.emit("on_user_voice_volume_changed", {"volume_map": {"alice": 4}})
    late = queued[-1]
    assert await link.on_event(made)  # queued before the end: delivered
    await link.on_event(
        ev("on_call_not_connected", call_id="c1", media_type=1, reason=2, user_id="bob", info={})
    )
    assert not await link.on_event(late)  # queued before, handled after the end: dropped
    await link.on_event(ev("on_call_begin", call_id="c2", media_type=1, info={}))
    assert not await link.on_event(late)  # nor delivered in the next call
    # a server push is never taken for a made one
    assert await link.on_event(ev("on_user_join", call_id="c2", user_id="carol"))
    await link.close()


async def test_device_toggles_mute_the_local_sources() -> None:
    link, _, _ = make()
    await link.on_event(ev("on_call_begin", call_id="c1", media_type=2, info={}))
    s = link.session
    assert s is not None
    link.device("close_microphone")
    link.device("close_camera")
    assert not s.feeds["audio"].enabled and not s.feeds["video"].enabled
    assert s.local_volume() == 0
    link.device("open_microphone")
    assert s.feeds["audio"].enabled and not s.feeds["video"].enabled
    await link.close()


async def test_a_session_that_cannot_start_reports_on_error() -> None:
    queued: list[Event] = []

    async def send(to: str, data: dict[str, Any]) -> None:
        pass

    link = EngineMedia(
        MediaOptions(audio="/nonexistent/greeting.wav"),
        user_id=lambda: "alice",
        ice_servers=lambda: [],
        send_signal=send,
    )
    link.bind(queued.append)
    assert await link.on_event(ev("on_call_begin", call_id="c1", media_type=1, info={}))
    assert link.session is None
    assert [e.name for e in queued] == ["on_error"]
    assert "media could not start" in queued[0].args[1]


async def test_the_stricter_of_the_server_and_app_ice_transport_policies_wins() -> None:
    async def send(to: str, data: dict[str, Any]) -> None:
        pass

    turn: list[Mapping[str, Any]] = [{"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "c"}]
    cases: list[tuple[str, IceTransportPolicy | None, str]] = [
        ("all", None, "all"),
        ("relay", None, "relay"),
        ("all", "relay", "relay"),
        ("relay", "all", "relay"),
    ]
    for server, app, want in cases:
        link = EngineMedia(
            MediaOptions(video=None, ice_transport_policy=app),
            user_id=lambda: "alice",
            ice_servers=lambda: turn,
            send_signal=send,
            ice_transport_policy=lambda: server,  # noqa: B023 (used in this iteration only)
        )
        assert await link.on_event(ev("on_call_begin", call_id="c1", media_type=1, info={}))
        s = link.session
        assert s is not None and s.ice_transport_policy == want, (server, app)
        assert s.configuration.iceTransportPolicy is RTCIceTransportPolicy(want)
        await link.close()


def test_ice_configuration_and_a_bad_app_policy() -> None:
    assert ice_configuration([]).iceTransportPolicy is RTCIceTransportPolicy.ALL
    relay = ice_configuration([{"urls": "turn:a:1"}], "relay")
    assert relay.iceTransportPolicy is RTCIceTransportPolicy.RELAY and relay.iceServers
    with pytest.raises(ValueError, match="ice_transport_policy"):
        MediaOptions(ice_transport_policy="direct")  # type: ignore[arg-type]


async def test_a_room_pushed_before_on_call_begin_is_used_when_the_media_begins() -> None:
    # The server may push a member's on_sfu before its on_call_begin: the media must
    # still follow the room (it used to stay in the mesh, alone, for the whole call).
    asked: list[dict[str, Any]] = []

    async def sfu_request(data: dict[str, Any]) -> dict[str, Any]:
        asked.append(data)
        raise RuntimeError("no SFU in this test")

    link = EngineMedia(
        MediaOptions(video=None),
        user_id=lambda: "alice",
        ice_servers=lambda: [],
        send_signal=lambda to, data: asyncio.sleep(0),
        sfu_request=sfu_request,
    )
    made: list[Event] = []
    link.bind(made.append)
    room = {"room": "ringline-c1", "token": "t", "id": "alice"}
    assert not await link.on_event(sfu("c0", room, 1))
    assert not await link.on_event(sfu("c1", room, 2))
    assert await link.on_event(ev("on_call_begin", call_id="c1", media_type=1, info={}))
    s = link.session
    assert s is not None and s.sfu_request is sfu_request  # publishing through the room
    await link.close()
    # A room for a call whose media never began here is not used by the next one.
    assert not await link.on_event(sfu("c2", room, 3))
    assert await link.on_event(ev("on_call_begin", call_id="c3", media_type=1, info={}))
    assert link.session is not None and link.session.sfu_request is None
    await link.close()
