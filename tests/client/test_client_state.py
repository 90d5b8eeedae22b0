"""The pure parts of the SDK: push decoding and the current-call cache."""

from __future__ import annotations

from typing import Any

import pytest
from client_fakes import info, received

from ringline.client._codec import (
    EVENT_ARGS,
    decode_event,
    filter_to_wire,
    params_to_wire,
    record_from_wire,
)
from ringline.client._state import CallState
from ringline.client.engine import CallEngine, _ws_url
from ringline.client.observer import EVENT_NAMES, CallObserver
from ringline.core.enums import (
    CallEndReason,
    CallResultType,
    CallRole,
    CallScene,
    CallStatus,
    MediaType,
    NetworkQuality,
)
from ringline.core.errors import LocalCallError
from ringline.core.types import (
    CallObserverExtraInfo,
    CallParams,
    NetworkQualityInfo,
    OfflinePushInfo,
    RecentCallsFilter,
    RoomId,
)


def ev(name: str, args: dict[str, Any]) -> Any:
    event = decode_event(name, args)
    assert event is not None
    return event


# --------------------------------------------------------------------------- decoding


def test_every_observer_method_has_a_decoder_in_spec_order() -> None:
    assert tuple(EVENT_ARGS) == EVENT_NAMES
    base = CallObserver()
    for name, args in EVENT_ARGS.items():
        params = list(getattr(base, name).__code__.co_varnames[1 : 1 + len(args)])
        assert params == [a for a, _ in args], name


def test_call_received_converts_ints_to_enums_and_info_to_the_struct() -> None:
    event = ev("on_call_received", received("c1", media=2))
    assert event.call_id == "c1"
    call_id, caller, callees, media, extra = event.args
    assert (call_id, caller, callees) == ("c1", "bob", ["alice"])
    assert media is MediaType.VIDEO
    assert extra == CallObserverExtraInfo(
        room_id=RoomId(int_room_id=1234),
        role=CallRole.CALLED,
        user_data="hello",
        chat_group_id="",
        ring_time_left=29.5,
    )
    assert type(extra.role) is CallRole


def test_call_end_arguments_in_spec_order() -> None:
    event = ev(
        "on_call_end",
        {
            "call_id": "c1",
            "media_type": 1,
            "reason": 4,
            "user_id": "bob",
            "total_time": 12,
            "info": info(1),
        },
    )
    assert event.args[:5] == ("c1", MediaType.AUDIO, CallEndReason.OFFLINE, "bob", 12.0)
    assert event.kwargs["reason"] is CallEndReason.OFFLINE
    assert event.kwargs["info"].role is CallRole.CALLER


def test_legacy_and_user_events_hide_the_call_id_from_the_arguments() -> None:
    event = ev("on_call_cancelled", {"call_id": "c1", "user_id": "bob"})
    assert (event.call_id, event.args) == ("c1", ("bob",))
    event = ev(
        "on_call_media_type_changed", {"call_id": "c1", "old_call_media_type": 2, "new_call_media_type": 1}
    )
    assert event.args == (MediaType.VIDEO, MediaType.AUDIO)
    event = ev("on_user_video_available", {"call_id": "c1", "user_id": "b", "is_video_available": True})
    assert event.args == ("b", True)


def test_periodic_events_convert_their_payloads() -> None:
    event = ev(
        "on_user_network_quality_changed",
        {"call_id": "c", "network_quality_list": [{"user_id": "b", "quality": 3}]},
    )
    assert event.args == ([NetworkQualityInfo("b", NetworkQuality.POOR)],)
    event = ev("on_user_voice_volume_changed", {"volume_map": {"b": 40}})
    assert event.args == ({"b": 40},)


def test_device_events_have_no_arguments_and_no_call() -> None:
    event = ev("on_kicked_offline", {})
    assert (event.call_id, event.args) == (None, ())


def test_unknown_push_names_are_ignored() -> None:
    assert decode_event("on_something_new", {"x": 1}) is None
    assert decode_event(42, {}) is None


def test_unknown_enum_values_and_missing_fields_degrade_to_defaults() -> None:
    event = ev("on_call_not_connected", {"call_id": "c", "media_type": 7, "reason": 99})
    assert event.args == ("c", MediaType.UNKNOWN, CallEndReason.UNKNOWN, "", CallObserverExtraInfo())


def test_params_to_wire_leaves_out_unset_room_and_push_info() -> None:
    assert params_to_wire(CallParams()) == {
        "timeout": 30,
        "user_data": "",
        "chat_group_id": "",
        "is_ephemeral_call": False,
    }
    wire = params_to_wire(
        CallParams(room_id=RoomId(str_room_id="r"), timeout=5, offline_push_info=OfflinePushInfo(title="t"))
    )
    assert wire["room_id"] == {"int_room_id": 0, "str_room_id": "r"}
    assert wire["offline_push_info"]["title"] == "t"


def test_filter_and_records() -> None:
    assert filter_to_wire(RecentCallsFilter()) == {"result_type": 0, "limit": 50}
    assert filter_to_wire(
        RecentCallsFilter(begin=1.0, end=2.0, limit=3, result_type=CallResultType.MISSED)
    ) == {
        "result_type": 1,
        "limit": 3,
        "begin": 1.0,
        "end": 2.0,
    }
    rec = record_from_wire(
        {
            "call_id": "c",
            "inviter": "a",
            "invite_list": ["b"],
            "scene": 3,
            "media_type": 2,
            "group_id": "",
            "role": 1,
            "result": 3,
            "begin_time": 1700000000000,
            "total_time": 9,
            "future": 1,
        }
    )
    assert rec.scene is CallScene.SINGLE_CALL
    assert rec.result is CallResultType.OUTGOING
    assert (rec.role, rec.begin_time, rec.total_time) == (CallRole.CALLER, 1700000000000, 9)


@pytest.mark.parametrize(
    ("url", "ws"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/ws"),
        ("https://calls.example.com/", "wss://calls.example.com/v1/ws"),
        ("https://example.com/ringline", "wss://example.com/ringline/v1/ws"),
        ("ws://h:1/v1/ws", "ws://h:1/v1/ws"),
    ],
)
def test_websocket_url_is_derived_from_the_server_url(url: str, ws: str) -> None:
    assert _ws_url(url) == ws


@pytest.mark.parametrize("url", ["", "127.0.0.1:8080", "ftp://h", 8080])
def test_bad_server_urls_are_refused(url: object) -> None:
    with pytest.raises(LocalCallError) as err:
        _ws_url(url)
    assert err.value.code == -1202


def test_a_list_of_server_urls_is_kept_and_the_first_is_in_use() -> None:
    urls = ["http://a:8080", "https://b.example.com/ringline"]
    engine = CallEngine(urls)
    assert engine.server_url == "http://a:8080"
    assert engine.server_urls == tuple(urls)
    assert engine._ws_urls == ("ws://a:8080/v1/ws", "wss://b.example.com/ringline/v1/ws")
    single = CallEngine("http://a:8080")
    assert single.server_url == "http://a:8080" and single.server_urls == ("http://a:8080",)
    assert CallEngine(("http://a:1",)).server_urls == ("http://a:1",)


@pytest.mark.parametrize(
    ("urls", "says"),
    [
        ([], "server_url is an empty list"),
        ((), "server_url is an empty list"),
        ([f"http://h{i}:80" for i in range(17)], "17 URLs; at most 16"),
        (["http://a:1", "ftp://b"], r"server_url\[1\] must be a URL like"),
        (["http://a:1", 8080], r"server_url\[1\] must be a URL like"),
        (["http://a:1", ""], r"server_url\[1\] must be a URL like"),
        (["http://a:1", "http://b:2", "http://a:1"], r"server_url\[2\] .* same server as server_url\[0\]"),
        (["http://A:1/", "ws://a:1/v1/ws"], r"server_url\[1\] .* same server as server_url\[0\]"),
        ({"http://a:1"}, "must be a URL like"),
    ],
)
def test_bad_lists_of_server_urls_are_refused(urls: object, says: str) -> None:
    with pytest.raises(LocalCallError, match=says) as err:
        CallEngine(urls)  # type: ignore[arg-type]
    assert err.value.code == -1202


def test_sixteen_server_urls_are_accepted() -> None:
    assert len(CallEngine([f"http://h{i}:80" for i in range(16)]).server_urls) == 16


# --------------------------------------------------------------------------- state


def test_incoming_call_becomes_current_and_is_not_delivered_twice() -> None:
    st = CallState()
    assert st.apply(ev("on_call_received", received("c1", media=2)))
    assert (st.call_id, st.status, st.role, st.media_type) == (
        "c1",
        CallStatus.WAITING,
        CallRole.CALLED,
        MediaType.VIDEO,
    )
    assert not st.apply(ev("on_call_received", received("c1", media=2)))


def test_second_invitation_while_in_a_call_is_delivered_but_not_current() -> None:
    st = CallState()
    st.placed("c1", MediaType.AUDIO)
    assert st.apply(ev("on_call_received", received("c2")))
    assert (st.call_id, st.role) == ("c1", CallRole.CALLER)
    assert not st.apply(ev("on_call_received", received("c2")))


def test_placed_call_then_begin_media_change_and_end() -> None:
    st = CallState()
    st.placed("c1", MediaType.VIDEO)
    assert (st.call_id, st.status, st.role) == ("c1", CallStatus.WAITING, CallRole.CALLER)
    st.apply(ev("on_call_begin", {"call_id": "c1", "media_type": 2, "info": info(1)}))
    assert (st.status, st.role) == (CallStatus.ACCEPT, CallRole.CALLER)
    st.apply(
        ev(
            "on_call_media_type_changed",
            {"call_id": "c1", "old_call_media_type": 2, "new_call_media_type": 1},
        )
    )
    assert st.media_type is MediaType.AUDIO
    st.apply(
        ev(
            "on_call_end",
            {
                "call_id": "c1",
                "media_type": 1,
                "reason": 1,
                "user_id": "alice",
                "total_time": 3,
                "info": info(1),
            },
        )
    )
    assert (st.call_id, st.status, st.role, st.media_type) == (
        None,
        CallStatus.NONE,
        CallRole.NONE,
        MediaType.UNKNOWN,
    )


def test_terminal_event_of_another_call_leaves_the_current_one_alone() -> None:
    st = CallState()
    st.placed("c2", MediaType.AUDIO)
    assert st.apply(
        ev("on_call_not_connected", {"call_id": "c1", "media_type": 1, "reason": 6, "user_id": "a"})
    )
    assert (st.call_id, st.status) == ("c2", CallStatus.WAITING)


def test_glare_answer_keeps_the_ringing_call() -> None:
    st = CallState()
    st.apply(ev("on_call_received", received("c1")))
    st.placed("c1", MediaType.AUDIO)
    assert (st.call_id, st.status, st.role) == ("c1", CallStatus.ACCEPT, CallRole.CALLED)


def test_answers_move_the_state_before_their_events() -> None:
    st = CallState()
    st.apply(ev("on_call_received", received("c1")))
    st.accepted("c1")
    assert (st.call_id, st.status) == ("c1", CallStatus.ACCEPT)
    st.left("c1", "hangup")
    assert (st.call_id, st.status) == (None, CallStatus.NONE)
    # The invitation is still known until its terminal event: no re-delivery.
    assert not st.apply(ev("on_call_received", received("c1")))
    st.apply(ev("on_call_end", {"call_id": "c1", "reason": 1}))
    st.joined("c9")
    assert (st.call_id, st.status, st.role) == ("c9", CallStatus.ACCEPT, CallRole.CALLED)
    st.switched("c9", MediaType.VIDEO)
    assert st.media_type is MediaType.VIDEO
    st.reset()
    assert st.call_id is None
