"""CallEngine against the scripted fake server: API, validation, events, state."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest
from client_fakes import (
    SDK_APP_ID,
    SIG,
    EngineFactory,
    FakeConn,
    FakeError,
    FakeServer,
    FakeSession,
    info,
    received,
)

from ringline.client import CallEngine, CallObserver
from ringline.core.enums import CallEndReason, CallResultType, CallRole, CallStatus, MediaType
from ringline.core.errors import LocalCallError, RemoteCallError
from ringline.core.types import (
    CallObserverExtraInfo,
    CallParams,
    CallRecords,
    RecentCallsFilter,
    RoomId,
)
from ringline.testing import RecordingObserver


async def logged_in(
    server: FakeServer, make_engine: EngineFactory, user: str = "alice", **options: Any
) -> tuple[CallEngine, RecordingObserver, FakeSession]:
    engine = make_engine(**options)
    rec = RecordingObserver()
    engine.add_observer(rec)
    await engine.init(SDK_APP_ID, user, SIG)
    return engine, rec, server.session(user)


async def ringing(
    server: FakeServer, make_engine: EngineFactory, call_id: str = "c1"
) -> tuple[CallEngine, RecordingObserver, FakeSession]:
    engine, rec, session = await logged_in(server, make_engine)
    await server.push(session, "on_call_received", received(call_id))
    await rec.wait_for("on_call_received", call_id=call_id)
    return engine, rec, session


def ok(conn: FakeConn, frame: dict[str, Any]) -> dict[str, Any]:
    return {}


# --------------------------------------------------------------------------- login


async def test_init_logs_in_with_the_protocol_handshake(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine = make_engine(device_id="alice-phone")
    assert not engine.is_initialized
    await engine.init(SDK_APP_ID, "alice", SIG)
    assert server.logins == [
        {
            "id": server.logins[0]["id"],
            "op": "login",
            "v": 1,
            "sdk_app_id": SDK_APP_ID,
            "user_id": "alice",
            "user_sig": SIG,
            "device_id": "alice-phone",
            "multi_device": False,
            "platform": {"win32": "Windows", "darwin": "Mac"}.get(sys.platform, "Unknown"),
        }
    ]
    assert isinstance(server.logins[0]["id"], int) and server.logins[0]["id"] > 0
    assert engine.is_initialized
    assert (engine.user_id, engine.device_id) == ("alice", "alice-phone")
    assert (engine.call_id, engine.call_status, engine.call_role, engine.media_type) == (
        None,
        CallStatus.NONE,
        CallRole.NONE,
        MediaType.UNKNOWN,
    )


async def test_server_chosen_device_id_is_kept(server: FakeServer, make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.init(SDK_APP_ID, "alice", SIG)
    assert "device_id" not in server.logins[0]
    assert engine.device_id == server.session("alice").device_id


async def test_multi_device_before_init_governs_that_login(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine = make_engine()
    await engine.enable_multi_device_ability(True)
    await engine.init(SDK_APP_ID, "alice", SIG)
    assert server.logins[0]["multi_device"] is True


async def test_refused_login_raises_the_server_code_and_leaves_nothing_open(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.login_refusal = (70009, "user sig signature does not match")
    engine = make_engine()
    with pytest.raises(RemoteCallError) as err:
        await engine.init(SDK_APP_ID, "alice", SIG)
    assert (err.value.code, err.value.message) == (70009, "user sig signature does not match")
    assert not engine.is_initialized
    await server.wait(lambda: all(c.closed for c in server.connections))


async def test_unreachable_server_raises_signaling_send_fail() -> None:
    spare = FakeServer()
    url = await spare.start()
    await spare.stop()  # nothing listens there any more
    engine = CallEngine(url, request_timeout=2.0)
    with pytest.raises(RemoteCallError) as err:
        await engine.init(SDK_APP_ID, "alice", SIG)
    assert err.value.code == -1406
    assert "cannot reach" in err.value.message
    await engine.uninit()


async def test_init_twice_is_refused(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, _, _ = await logged_in(server, make_engine)
    with pytest.raises(LocalCallError) as err:
        await engine.init(SDK_APP_ID, "alice", SIG)
    assert err.value.code == -1204
    with pytest.raises(LocalCallError) as err:
        await engine.init(SDK_APP_ID, "carol", SIG)
    assert err.value.code == -1203
    assert len(server.logins) == 1


@pytest.mark.parametrize(
    ("args", "what"),
    [
        ((0, "alice", SIG), "sdk_app_id"),
        ((True, "alice", SIG), "sdk_app_id"),
        ((SDK_APP_ID, "", SIG), "user_id"),
        ((SDK_APP_ID, "a b", SIG), "user_id"),
        ((SDK_APP_ID, "alice", ""), "user_sig"),
        ((SDK_APP_ID, "alice", None), "user_sig"),
    ],
)
async def test_init_validates_its_arguments_locally(
    server: FakeServer, make_engine: EngineFactory, args: tuple[Any, ...], what: str
) -> None:
    engine = make_engine()
    with pytest.raises(LocalCallError) as err:
        await engine.init(*args)
    assert err.value.code == -1202
    assert what in err.value.message
    assert server.connections == []


def test_constructor_validates_options() -> None:
    options: list[dict[str, Any]] = [
        {"device_id": "bad id"},
        {"request_timeout": 0},
        {"heartbeat_interval": -1},
    ]
    for kwargs in options:
        with pytest.raises(LocalCallError) as err:
            CallEngine("http://127.0.0.1:1", **kwargs)
        assert err.value.code == -1202


# --------------------------------------------------------------------------- not ready


async def test_every_method_needs_init(make_engine: EngineFactory) -> None:
    engine = make_engine()
    calls: list[Any] = [
        engine.calls(["bob"], MediaType.AUDIO),
        engine.accept(),
        engine.reject(),
        engine.ignore(),
        engine.hangup(),
        engine.invite_user(["bob"]),
        engine.join("c1"),
        engine.switch_call_media_type(MediaType.AUDIO),
        engine.open_camera(),
        engine.close_camera(),
        engine.open_microphone(),
        engine.close_microphone(),
        engine.set_self_info("Alice", ""),
        engine.query_recent_calls(),
        engine.delete_record_calls(["c1"]),
        engine.renew_user_sig(SIG),
    ]
    for coro in calls:
        with pytest.raises(LocalCallError) as err:
            await coro
        assert err.value.code == -1201
        assert "init(" in err.value.message


async def test_call_actions_need_a_current_call(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, _, _ = await logged_in(server, make_engine)
    for coro in [
        engine.accept(),
        engine.reject(),
        engine.ignore(),
        engine.hangup(),
        engine.invite_user(["bob"]),
        engine.switch_call_media_type(MediaType.VIDEO),
        engine.open_camera(),
        engine.close_microphone(),
    ]:
        with pytest.raises(LocalCallError) as err:
            await coro
        assert err.value.code == -1203
        assert "no current call" in err.value.message
    assert server.connections[0].ops() == ["login"]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("user_ids", "media", "params", "what"),
    [
        ([], MediaType.AUDIO, None, "empty"),
        (["alice"], MediaType.AUDIO, None, "empty"),  # only yourself
        ("bob", MediaType.AUDIO, None, "list"),
        ([1], MediaType.AUDIO, None, "invalid user id"),
        ([f"u{i}" for i in range(9)], MediaType.AUDIO, None, "at most 8"),
        (["bob"], MediaType.UNKNOWN, None, "media_type"),
        (["bob"], 3, None, "media_type"),
        (["bob"], True, None, "media_type"),
        (["bob"], MediaType.AUDIO, {"timeout": 3}, "CallParams"),
        (["bob"], MediaType.AUDIO, CallParams(user_data="x" * 1001), "1001 bytes"),
        (["bob"], MediaType.AUDIO, CallParams(user_data="é" * 501), "1002 bytes"),
        (["bob"], MediaType.AUDIO, CallParams(timeout=601), "timeout"),
        (["bob"], MediaType.AUDIO, CallParams(room_id=RoomId(1, "r")), "not both"),
    ],
)
async def test_calls_validates_locally_without_a_round_trip(
    server: FakeServer,
    make_engine: EngineFactory,
    user_ids: Any,
    media: Any,
    params: Any,
    what: str,
) -> None:
    engine, _, _ = await logged_in(server, make_engine)
    with pytest.raises(LocalCallError) as err:
        await engine.calls(user_ids, media, params)
    assert err.value.code == -1202
    assert what in err.value.message
    assert server.connections[0].ops() == ["login"]


async def test_other_methods_validate_locally(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, _, _ = await ringing(server, make_engine)
    bad: list[Any] = [
        engine.invite_user([]),
        engine.invite_user([f"u{i}" for i in range(9)]),
        engine.invite_user(["bob"], CallParams(user_data="x" * 1001)),
        engine.join(""),
        engine.join(None),  # type: ignore[arg-type]
        engine.switch_call_media_type(MediaType.UNKNOWN),
        engine.set_self_info("n" * 501, ""),
        engine.set_self_info(None, ""),  # type: ignore[arg-type]
        engine.enable_multi_device_ability("yes"),  # type: ignore[arg-type]
        engine.query_recent_calls(RecentCallsFilter(limit=0)),
        engine.query_recent_calls({"limit": 3}),  # type: ignore[arg-type]
        engine.delete_record_calls([]),
        engine.delete_record_calls("c1"),
        engine.renew_user_sig(""),
    ]
    for coro in bad:
        with pytest.raises(LocalCallError) as err:
            await coro
        assert err.value.code == -1202, err.value
    assert server.connections[0].ops() == ["login"]


# --------------------------------------------------------------------------- requests


async def test_calls_sends_cleaned_ids_and_params_and_becomes_the_caller(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.handlers["calls"] = lambda conn, frame: {"call_id": "c1"}
    engine, _, _ = await logged_in(server, make_engine)
    params = CallParams(room_id=RoomId(int_room_id=7), timeout=20, user_data="hi")
    call_id = await engine.calls(["bob", "alice", "bob", "carol"], MediaType.VIDEO, params)
    assert call_id == "c1"
    frame = server.requests_of("calls")[0]
    assert frame["user_ids"] == ["bob", "carol"]
    assert frame["media_type"] == 2
    assert frame["params"] == {
        "timeout": 20,
        "user_data": "hi",
        "chat_group_id": "",
        "is_ephemeral_call": False,
        "room_id": {"int_room_id": 7, "str_room_id": ""},
    }
    assert (engine.call_id, engine.call_status, engine.call_role, engine.media_type) == (
        "c1",
        CallStatus.WAITING,
        CallRole.CALLER,
        MediaType.VIDEO,
    )


async def test_server_refusal_raises_remote_error_with_its_code(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    def busy(conn: FakeConn, frame: dict[str, Any]) -> None:
        raise FakeError(-1203, "you are already in a call")

    server.handlers["calls"] = busy
    engine, _, _ = await logged_in(server, make_engine)
    with pytest.raises(RemoteCallError) as err:
        await engine.calls(["bob"], MediaType.AUDIO)
    assert (err.value.code, err.value.message) == (-1203, "you are already in a call")
    assert engine.call_status is CallStatus.NONE


async def test_stale_call_refusal_keeps_code_8010(server: FakeServer, make_engine: EngineFactory) -> None:
    def gone(conn: FakeConn, frame: dict[str, Any]) -> None:
        raise FakeError(8010, "the call is not live any more")

    server.handlers["accept"] = gone
    engine, _, _ = await ringing(server, make_engine)
    with pytest.raises(RemoteCallError) as err:
        await engine.accept()
    assert err.value.code == 8010


async def test_answers_are_matched_by_id_across_interleaved_pushes(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine, rec, session = await logged_in(server, make_engine)
    conn = server.connections[0]
    first = asyncio.create_task(engine.query_recent_calls())
    req1 = await conn.next_request()
    second = asyncio.create_task(engine.delete_record_calls(["c1", "c2"]))
    req2 = await conn.next_request()
    assert req1["id"] != req2["id"]
    # Answer in the other order, with pushes in between.
    await server.push(session, "on_user_inviting", {"call_id": "x", "user_id": "bob"})
    await conn.respond(req2, {"deleted": ["c2"]})
    await server.push(session, "on_user_reject", {"call_id": "x", "user_id": "bob"})
    await conn.respond(
        req1,
        {
            "records": [
                {
                    "call_id": "c9",
                    "inviter": "bob",
                    "invite_list": ["alice"],
                    "scene": 3,
                    "media_type": 1,
                    "group_id": "",
                    "role": 2,
                    "result": 1,
                    "begin_time": 1700000000000,
                    "total_time": 0,
                }
            ]
        },
    )
    assert await second == ["c2"]
    records = await first
    assert records == [
        CallRecords(
            call_id="c9",
            inviter="bob",
            invite_list=["alice"],
            scene=records[0].scene,
            media_type=MediaType.AUDIO,
            group_id="",
            role=CallRole.CALLED,
            result=CallResultType.MISSED,
            begin_time=1700000000000,
            total_time=0,
        )
    ]
    await rec.wait_for("on_user_reject")
    assert rec.names() == ["on_user_inviting", "on_user_reject"]
    assert req1["op"] == "query_recent_calls" and req1["limit"] == 50


async def test_call_actions_send_the_current_call_id(server: FakeServer, make_engine: EngineFactory) -> None:
    for op in (
        "accept",
        "open_camera",
        "close_camera",
        "open_microphone",
        "close_microphone",
        "switch_call_media_type",
    ):
        server.handlers[op] = ok
    server.handlers["invite_user"] = lambda conn, frame: {"user_ids": frame["user_ids"]}
    engine, _, _ = await ringing(server, make_engine)
    await engine.accept()
    assert engine.call_status is CallStatus.ACCEPT
    await engine.open_camera()
    await engine.close_camera()
    await engine.open_microphone()
    await engine.close_microphone()
    await engine.switch_call_media_type(MediaType.VIDEO)
    assert engine.media_type is MediaType.VIDEO
    assert await engine.invite_user(["dave", "dave", "alice"]) == ["dave"]
    conn = server.connections[0]
    assert conn.ops() == [
        "login",
        "accept",
        "open_camera",
        "close_camera",
        "open_microphone",
        "close_microphone",
        "switch_call_media_type",
        "invite_user",
    ]
    assert all(f["call_id"] == "c1" for f in conn.frames[1:] if f.get("op") != "ping")


@pytest.mark.parametrize("op", ["reject", "ignore", "hangup"])
async def test_leaving_a_call_makes_the_device_idle(
    server: FakeServer, make_engine: EngineFactory, op: str
) -> None:
    server.handlers[op] = ok
    engine, rec, session = await ringing(server, make_engine)
    await getattr(engine, op)()
    assert (engine.call_id, engine.call_status) == (None, CallStatus.NONE)
    assert server.requests_of(op)[0]["call_id"] == "c1"
    # The same invitation again (a re-login) is not delivered twice.
    await server.push(session, "on_call_received", received("c1"))
    await server.push(
        session,
        "on_call_not_connected",
        {"call_id": "c1", "media_type": 1, "reason": 2, "user_id": "alice", "info": info()},
    )
    await rec.wait_for("on_call_not_connected")
    assert rec.names() == ["on_call_received", "on_call_not_connected"]


async def test_join_makes_the_call_current(server: FakeServer, make_engine: EngineFactory) -> None:
    server.handlers["join"] = ok
    engine, rec, session = await logged_in(server, make_engine)
    await engine.join("c7")
    assert (engine.call_id, engine.call_status, engine.call_role) == (
        "c7",
        CallStatus.ACCEPT,
        CallRole.CALLED,
    )
    await server.push(session, "on_call_begin", {"call_id": "c7", "media_type": 2, "info": info(2)})
    await rec.wait_for("on_call_begin")
    assert engine.media_type is MediaType.VIDEO


async def test_account_methods(server: FakeServer, make_engine: EngineFactory) -> None:
    for op in ("set_self_info", "enable_multi_device_ability"):
        server.handlers[op] = ok
    server.handlers["renew_user_sig"] = lambda conn, frame: {"sig_expires_at": 1800000000.0}
    engine, _, _ = await logged_in(server, make_engine)
    await engine.set_self_info("Alice ✨", "https://example.com/a.png")
    await engine.enable_multi_device_ability(True)
    await engine.renew_user_sig("new-sig")
    frames = [f for f in server.connections[0].frames if f["op"] not in ("login", "ping")]
    assert [{k: v for k, v in f.items() if k != "id"} for f in frames] == [
        {"op": "set_self_info", "nickname": "Alice ✨", "avatar": "https://example.com/a.png"},
        {"op": "enable_multi_device_ability", "enable": True},
        {"op": "renew_user_sig", "user_sig": "new-sig"},
    ]


async def test_query_recent_calls_sends_the_filter(server: FakeServer, make_engine: EngineFactory) -> None:
    server.handlers["query_recent_calls"] = lambda conn, frame: {"records": []}
    engine, _, _ = await logged_in(server, make_engine)
    flt = RecentCallsFilter(begin=10, end=20, result_type=CallResultType.INCOMING, limit=5)
    assert await engine.query_recent_calls(flt) == []
    frame = server.requests_of("query_recent_calls")[0]
    assert (frame["begin"], frame["end"], frame["result_type"], frame["limit"]) == (10, 20, 2, 5)


async def test_deprecated_call_warns_and_places_a_one_to_one_call(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    server.handlers["calls"] = lambda conn, frame: {"call_id": "c1"}
    engine, _, _ = await logged_in(server, make_engine)
    with pytest.warns(DeprecationWarning, match="calls"):
        assert await engine.call("bob", MediaType.AUDIO) == "c1"
    assert server.requests_of("calls")[0]["user_ids"] == ["bob"]


async def test_request_timeout_is_signaling_send_fail(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, _, _ = await logged_in(server, make_engine, request_timeout=0.2)
    with pytest.raises(RemoteCallError) as err:
        await engine.set_self_info("x", "")  # the fake never answers it
    assert err.value.code == -1406
    assert "no answer" in err.value.message


async def test_too_big_frame_is_refused_locally(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, _, _ = await logged_in(server, make_engine)
    with pytest.raises(LocalCallError) as err:
        await engine.set_self_info("a", "x" * 70000)
    assert err.value.code == -1202


# --------------------------------------------------------------------------- events


class SyncObserver(CallObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    def on_call_received(
        self,
        call_id: str,
        caller_id: str,
        callee_id_list: list[str],
        media_type: MediaType,
        info: CallObserverExtraInfo,
    ) -> None:
        self.seen.append(("on_call_received", (call_id, caller_id, callee_id_list, media_type, info)))

    def on_call_end(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        total_time: float,
        info: CallObserverExtraInfo,
    ) -> None:
        self.seen.append(("on_call_end", (call_id, media_type, reason, user_id, total_time)))


class AsyncDuckObserver:
    """Not a CallObserver: only some methods, async, odd parameter names."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_call_received(self, cid: str, *rest: Any) -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # yield: the next event must still wait for us
        self.seen.append(f"received {cid}")

    async def on_user_join(self, who: str) -> None:
        self.seen.append(f"join {who}")


class Exploding:
    def on_call_received(self, *args: Any) -> None:
        raise RuntimeError("boom")

    async def on_user_join(self, user_id: str) -> None:
        raise ValueError("async boom")


async def test_events_reach_every_kind_of_observer_in_order_with_enums(
    server: FakeServer, make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine()
    sync_obs, async_obs, rec = SyncObserver(), AsyncDuckObserver(), RecordingObserver()
    for obs in (Exploding(), sync_obs, async_obs, rec):
        engine.add_observer(obs)
    await engine.init(SDK_APP_ID, "alice", SIG)
    session = server.session("alice")
    caplog.set_level(logging.ERROR, logger="ringline.client")
    await server.push(session, "on_call_received", received("c1", media=2))
    await server.push(session, "on_user_join", {"call_id": "c1", "user_id": "bob"})
    await server.push(
        session,
        "on_call_end",
        {"call_id": "c1", "media_type": 2, "reason": 1, "user_id": "bob", "total_time": 5.5, "info": info()},
    )
    await rec.wait_for("on_call_end")
    assert async_obs.seen == ["received c1", "join bob"]
    name, args = sync_obs.seen[0]
    assert args[:4] == ("c1", "bob", ["alice"], MediaType.VIDEO)
    assert type(args[3]) is MediaType
    assert args[4].ring_time_left == 29.5 and args[4].room_id == RoomId(int_room_id=1234)
    assert sync_obs.seen[1] == ("on_call_end", ("c1", MediaType.VIDEO, CallEndReason.HANGUP, "bob", 5.5))
    assert rec.names() == ["on_call_received", "on_user_join", "on_call_end"]
    assert rec.events_for("c1") == rec.events
    failures = [r for r in caplog.records if "failed in" in r.getMessage()]
    assert [r.exc_info[0] for r in failures if r.exc_info] == [RuntimeError, ValueError]


async def test_unknown_pushes_and_fields_are_ignored(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, rec, session = await logged_in(server, make_engine)
    await server.push(session, "on_something_from_protocol_v2", {"x": 1})
    args = {**received("c1"), "new_field": True}
    await server.push(session, "on_call_received", args)
    got = await rec.wait_for("on_call_received")
    assert set(got) == {"call_id", "caller_id", "callee_id_list", "media_type", "info"}
    assert rec.names() == ["on_call_received"]
    await server.wait(lambda: engine.call_id == "c1")


async def test_observer_sees_the_state_of_its_event_and_may_call_the_engine(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    """An answering bot: accept inside on_call_received."""

    async def accept(conn: FakeConn, frame: dict[str, Any]) -> dict[str, Any]:
        return {}

    server.handlers["accept"] = accept
    engine = make_engine()
    states: list[tuple[str | None, CallStatus]] = []

    class Bot:
        async def on_call_received(self, call_id: str, *rest: Any) -> None:
            states.append((engine.call_id, engine.call_status))
            await engine.accept()
            states.append((engine.call_id, engine.call_status))

    rec = RecordingObserver()
    engine.add_observer(Bot())
    engine.add_observer(rec)
    await engine.init(SDK_APP_ID, "alice", SIG)
    session = server.session("alice")
    await server.push(session, "on_call_received", received("c1"))
    await rec.wait_for("on_call_received")
    assert states == [("c1", CallStatus.WAITING), ("c1", CallStatus.ACCEPT)]
    await server.push(session, "on_call_begin", {"call_id": "c1", "media_type": 1, "info": info()})
    await rec.wait_for("on_call_begin")
    assert (engine.call_status, engine.call_role) == (CallStatus.ACCEPT, CallRole.CALLED)


async def test_full_call_drives_the_state_machine(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, rec, session = await ringing(server, make_engine)
    assert (engine.call_id, engine.call_status, engine.call_role, engine.media_type) == (
        "c1",
        CallStatus.WAITING,
        CallRole.CALLED,
        MediaType.AUDIO,
    )
    await server.push(session, "on_call_received", received("c1"))  # again: deduped
    await server.push(session, "on_call_begin", {"call_id": "c1", "media_type": 1, "info": info()})
    await rec.wait_for("on_call_begin")
    assert engine.call_status is CallStatus.ACCEPT
    await server.push(
        session,
        "on_call_media_type_changed",
        {"call_id": "c1", "old_call_media_type": 1, "new_call_media_type": 2},
    )
    await rec.wait_for("on_call_media_type_changed", old_call_media_type=MediaType.AUDIO)
    assert engine.media_type is MediaType.VIDEO
    await server.push(session, "on_user_leave", {"call_id": "c1", "user_id": "bob"})
    await server.push(
        session,
        "on_call_end",
        {"call_id": "c1", "media_type": 2, "reason": 1, "user_id": "bob", "total_time": 3, "info": info()},
    )
    end = await rec.wait_for("on_call_end", call_id="c1", reason=CallEndReason.HANGUP)
    assert end["total_time"] == 3.0
    assert (engine.call_id, engine.call_status, engine.call_role) == (None, CallStatus.NONE, CallRole.NONE)
    assert rec.names() == [
        "on_call_received",
        "on_call_begin",
        "on_call_media_type_changed",
        "on_user_leave",
        "on_call_end",
    ]
    assert [e.call_id for e in rec.events] == ["c1"] * 5


async def test_removed_observer_gets_nothing_more(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, rec, session = await logged_in(server, make_engine)
    other = RecordingObserver()
    engine.add_observer(other)
    engine.add_observer(other)  # no duplicate delivery
    await server.push(session, "on_user_sig_expired")
    await other.wait_for("on_user_sig_expired")
    engine.remove_observer(other)
    engine.remove_observer(other)  # unknown: no error
    await server.push(session, "on_error", {"code": -1, "message": "m"})
    await rec.wait_for("on_error", code=-1, message="m")
    assert other.names() == ["on_user_sig_expired"]


# --------------------------------------------------------------------------- uninit


async def test_uninit_logs_out_and_is_idempotent(server: FakeServer, make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.uninit()  # before init: nothing to do
    await engine.init(SDK_APP_ID, "alice", SIG)
    await engine.uninit()
    await engine.uninit()
    assert not engine.is_initialized
    assert server.connections[0].ops() == ["login", "logout"]
    assert not engine._tasks
    await engine.wait_closed()
    with pytest.raises(LocalCallError) as err:
        await engine.calls(["bob"], MediaType.AUDIO)
    assert err.value.code == -1201
    # And it can log in again.
    await engine.init(SDK_APP_ID, "alice", SIG)
    assert engine.is_initialized and len(server.logins) == 2


async def test_async_with_uninits_on_exit(server: FakeServer) -> None:
    async with CallEngine(server.url) as engine:
        await engine.init(SDK_APP_ID, "alice", SIG)
        assert engine.is_initialized
    assert not engine.is_initialized
    assert not engine._tasks
    await server.wait(lambda: server.connections[0].closed)


async def test_uninit_fails_waiting_requests(server: FakeServer, make_engine: EngineFactory) -> None:
    engine, _, _ = await logged_in(server, make_engine)
    waiting = asyncio.create_task(engine.set_self_info("x", ""))
    await server.connections[0].next_request()
    await engine.uninit()
    with pytest.raises(LocalCallError) as err:
        await waiting
    assert err.value.code == -1201


async def test_uninit_inside_an_observer_stops_delivery(
    server: FakeServer, make_engine: EngineFactory
) -> None:
    engine = make_engine()
    rec = RecordingObserver()

    class Quitter:
        async def on_call_received(self, *args: Any) -> None:
            await engine.uninit()

    engine.add_observer(Quitter())
    engine.add_observer(rec)
    await engine.init(SDK_APP_ID, "alice", SIG)
    session = server.session("alice")
    await server.push(session, "on_call_received", received("c1"))
    await engine.wait_closed()
    await server.wait(lambda: server.connections[0].closed)
    assert rec.names() == []
    assert not engine.is_initialized
