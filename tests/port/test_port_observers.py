"""Port tests: the vendor's observer samples, names renamed only, against a real server.

Each observer below is one sample of the vendor's TUICallObserver pages transliterated
mechanically: every method and parameter name is the sample's, camelCase turned into
snake_case (``callMediaType`` → ``call_media_type``); the bodies, empty in the samples,
only record their arguments. Both signature generations are here: the 2025 samples
(Kotlin mixes them: ``onCallReceived`` new, ``onCallBegin``/``onCallEnd`` old) and the
older Flutter sample with every event. Each test drives real engines through a real
server and checks that every method the sample subscribes gets the values the vendor's
pages describe.

Volume and network-quality events come from media and are ported in tests/browser
(test_port_web.py); ``on_error`` needs a refused re-login and is covered by
tests/client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ringline import CallEndReason, CallEngine, CallParams, CallRole, MediaType, RemoteCallError, RoomId
from ringline.core.types import CallObserverExtraInfo
from serverproc import SDK_APP_ID, ServerProcess, unique


class Seen:
    """What a ported observer's methods were called with, awaitable by name.

    Not :class:`ringline.testing.RecordingObserver`: that one has every method, in the
    2025 form, while a sample must have only its own methods, with its own signatures
    (which form the engine picks is what these tests check)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def record(self, *entry: Any) -> None:
        self.seen.append(entry)
        self._changed.set()
        self._changed = asyncio.Event()

    def names(self) -> list[str]:
        return [e[0] for e in self.seen]

    async def wait(self, name: str, count: int = 1, timeout: float = 10.0) -> tuple[Any, ...]:
        """The ``count``-th call of ``name`` (its arguments), once it has happened."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    hits = [e for e in self.seen if e[0] == name]
                    if len(hits) >= count:
                        return hits[count - 1][1:]
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"no {name} (#{count}) within {timeout} s; seen: {self.seen}") from None


# ----------------------------------------------------------------------------- the samples


class KotlinStatusObserver(Seen):
    """The Kotlin "Call Status Callback" sample (2025 page): onCallReceived in the new
    form, onCallBegin/onCallEnd in the older one, onCallNotConnected."""

    def on_call_received(
        self,
        call_id: str | None,
        caller_id: str | None,
        callee_id_list: list[str] | None,
        media_type: MediaType | None,
        info: CallObserverExtraInfo | None,
    ) -> None:
        self.record("on_call_received", call_id, caller_id, callee_id_list, media_type, info)

    def on_call_begin(
        self, room_id: RoomId | None, call_media_type: MediaType | None, call_role: CallRole | None
    ) -> None:
        self.record("on_call_begin", room_id, call_media_type, call_role)

    def on_call_end(
        self,
        room_id: RoomId | None,
        call_media_type: MediaType | None,
        call_role: CallRole | None,
        total_time: int,
    ) -> None:
        self.record("on_call_end", room_id, call_media_type, call_role, total_time)

    def on_call_not_connected(
        self,
        call_id: str | None,
        media_type: MediaType | None,
        reason: CallEndReason | None,
        user_id: str | None,
        info: CallObserverExtraInfo | None,
    ) -> None:
        self.record("on_call_not_connected", call_id, media_type, reason, user_id, info)


class SwiftStatusObserver(Seen):
    """The Swift (and Dart) "Call Status Callback" sample: every method in the 2025 form."""

    def on_call_received(
        self,
        call_id: str,
        caller_id: str,
        callee_id_list: list[str],
        media_type: MediaType,
        info: CallObserverExtraInfo,
    ) -> None:
        self.record("on_call_received", call_id, caller_id, callee_id_list, media_type, info)

    def on_call_begin(self, call_id: str, media_type: MediaType, info: CallObserverExtraInfo) -> None:
        self.record("on_call_begin", call_id, media_type, info)

    def on_call_end(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        total_time: float,
        info: CallObserverExtraInfo,
    ) -> None:
        self.record("on_call_end", call_id, media_type, reason, user_id, total_time, info)

    def on_call_not_connected(
        self,
        call_id: str,
        media_type: MediaType,
        reason: CallEndReason,
        user_id: str,
        info: CallObserverExtraInfo,
    ) -> None:
        self.record("on_call_not_connected", call_id, media_type, reason, user_id, info)


class MemberObserver(Seen):
    """The "Call Member Update Callback" sample (Kotlin, Swift and Dart alike)."""

    def on_user_join(self, user_id: str) -> None:
        self.record("on_user_join", user_id)

    def on_user_leave(self, user_id: str) -> None:
        self.record("on_user_leave", user_id)

    def on_user_inviting(self, user_id: str) -> None:
        self.record("on_user_inviting", user_id)

    def on_user_reject(self, user_id: str) -> None:
        self.record("on_user_reject", user_id)


class FlutterObserver(Seen):
    """The Flutter TUICallObserver sample of the older API pages, every event, in their
    order (``onUserLineBusy``'s parameter really is named ``onUserLineBusy`` there)."""

    def on_error(self, code: int, message: str) -> None:
        self.record("on_error", code, message)

    def on_call_cancelled(self, caller_id: str) -> None:
        self.record("on_call_cancelled", caller_id)

    def on_call_begin(self, room_id: RoomId, call_media_type: MediaType, call_role: CallRole) -> None:
        self.record("on_call_begin", room_id, call_media_type, call_role)

    def on_call_end(
        self, room_id: RoomId, call_media_type: MediaType, call_role: CallRole, total_time: float
    ) -> None:
        self.record("on_call_end", room_id, call_media_type, call_role, total_time)

    def on_call_media_type_changed(
        self, old_call_media_type: MediaType, new_call_media_type: MediaType
    ) -> None:
        self.record("on_call_media_type_changed", old_call_media_type, new_call_media_type)

    def on_user_reject(self, user_id: str) -> None:
        self.record("on_user_reject", user_id)

    def on_user_no_response(self, user_id: str) -> None:
        self.record("on_user_no_response", user_id)

    def on_user_line_busy(self, on_user_line_busy: str) -> None:
        self.record("on_user_line_busy", on_user_line_busy)

    def on_user_join(self, user_id: str) -> None:
        self.record("on_user_join", user_id)

    def on_user_leave(self, user_id: str) -> None:
        self.record("on_user_leave", user_id)

    def on_user_video_available(self, user_id: str, is_video_available: bool) -> None:
        self.record("on_user_video_available", user_id, is_video_available)

    def on_user_audio_available(self, user_id: str, is_audio_available: bool) -> None:
        self.record("on_user_audio_available", user_id, is_audio_available)

    def on_user_network_quality_changed(self, network_quality_list: list[Any]) -> None:
        self.record("on_user_network_quality_changed", network_quality_list)

    def on_call_received(
        self, caller_id: str, callee_id_list: list[str], group_id: str, call_media_type: MediaType
    ) -> None:
        self.record("on_call_received", caller_id, callee_id_list, group_id, call_media_type)

    def on_user_voice_volume_changed(self, volume_map: dict[str, int]) -> None:
        self.record("on_user_voice_volume_changed", volume_map)

    def on_kicked_offline(self) -> None:
        self.record("on_kicked_offline")

    def on_user_sig_expired(self) -> None:
        self.record("on_user_sig_expired")


class UniAppReceivedObserver(Seen):
    """The uni-app onCallReceived payload as an older native signature: with userData."""

    def on_call_received(
        self,
        caller_id: str,
        callee_id_list: list[str],
        group_id: str,
        call_media_type: MediaType,
        user_data: str,
    ) -> None:
        self.record("on_call_received", caller_id, callee_id_list, group_id, call_media_type, user_data)


# ----------------------------------------------------------------------------- harness

Make = Callable[..., Awaitable[tuple[CallEngine, str]]]


@pytest.fixture
async def make(server: ServerProcess) -> AsyncIterator[Make]:
    engines: list[CallEngine] = []

    async def _make(
        *observers: object, user: str | None = None, device: str | None = None
    ) -> tuple[CallEngine, str]:
        u = user or unique("p")
        e = CallEngine(server.url, device_id=device or f"{u}-{len(engines)}")
        for o in observers:
            e.add_observer(o)
        await e.init(SDK_APP_ID, u, server.sig(u))
        engines.append(e)
        return e, u

    yield _make
    for e in engines:
        await e.uninit()


# ----------------------------------------------------------------------------- tests


async def test_kotlin_sample_mixing_new_received_with_older_begin_and_end(make: Make) -> None:
    a_status, a_members = KotlinStatusObserver(), MemberObserver()
    b_status, b_members = KotlinStatusObserver(), MemberObserver()
    a, ua = await make(a_status, a_members)
    b, ub = await make(b_status, b_members)
    cid = await a.calls([ub], MediaType.VIDEO, CallParams(room_id=RoomId(int_room_id=4321)))
    call_id, caller_id, callee_id_list, media_type, info = await b_status.wait("on_call_received")
    assert (call_id, caller_id, callee_id_list, media_type) == (cid, ua, [ub], MediaType.VIDEO)
    assert info.room_id == RoomId(int_room_id=4321) and info.role is CallRole.CALLED
    assert await a_members.wait("on_user_inviting") == (ub,)
    await b.accept()
    # onCallBegin(roomId, callMediaType, callRole): the room, the media, each side's role.
    assert await a_status.wait("on_call_begin") == (
        RoomId(int_room_id=4321),
        MediaType.VIDEO,
        CallRole.CALLER,
    )
    assert await b_status.wait("on_call_begin") == (
        RoomId(int_room_id=4321),
        MediaType.VIDEO,
        CallRole.CALLED,
    )
    assert await a_members.wait("on_user_join") == (ub,)
    await b.hangup()
    room_id, call_media_type, call_role, total_time = await a_status.wait("on_call_end")
    assert (room_id, call_media_type, call_role) == (
        RoomId(int_room_id=4321),
        MediaType.VIDEO,
        CallRole.CALLER,
    )
    assert total_time >= 0
    room_id, call_media_type, call_role, total_time = await b_status.wait("on_call_end")
    assert (room_id, call_media_type, call_role) == (
        RoomId(int_room_id=4321),
        MediaType.VIDEO,
        CallRole.CALLED,
    )
    # A rejected call: the member sample hears the reject, the status sample the
    # not-connected end with its reason and who.
    cid2 = await a.calls([ub], MediaType.AUDIO)
    await b_status.wait("on_call_received", 2)
    await b.reject()
    assert await a_members.wait("on_user_reject") == (ub,)
    got = await a_status.wait("on_call_not_connected")
    assert got[:4] == (cid2, MediaType.AUDIO, CallEndReason.REJECT, ub)
    assert got[4].role is CallRole.CALLER
    got = await b_status.wait("on_call_not_connected")
    assert got[:4] == (cid2, MediaType.AUDIO, CallEndReason.REJECT, ub)


async def test_swift_and_dart_sample_in_the_2025_form(make: Make) -> None:
    a_status, b_status, b_members = SwiftStatusObserver(), SwiftStatusObserver(), MemberObserver()
    a, ua = await make(a_status)
    b, ub = await make(b_status, b_members)
    cid = await a.calls([ub], MediaType.AUDIO, CallParams(user_data="order-7"))
    got = await b_status.wait("on_call_received")
    assert got[:4] == (cid, ua, [ub], MediaType.AUDIO) and got[4].user_data == "order-7"
    await b.accept()
    call_id, media_type, info = await a_status.wait("on_call_begin")
    assert (call_id, media_type, info.role) == (cid, MediaType.AUDIO, CallRole.CALLER)
    assert await b_members.wait("on_user_join") == (ua,)
    await a.hangup()
    got = await b_status.wait("on_call_end")
    assert got[:4] == (cid, MediaType.AUDIO, CallEndReason.HANGUP, ua)
    assert got[4] >= 0 and got[5].role is CallRole.CALLED


async def test_older_flutter_sample_receives_every_call_event(make: Make) -> None:
    fa, fb = FlutterObserver(), FlutterObserver()
    a, ua = await make(fa)
    b, ub = await make(fb)
    # onCallReceived(callerId, calleeIdList, groupId, callMediaType)
    await a.calls([ub], MediaType.VIDEO, CallParams(chat_group_id="team-1"))
    assert await fb.wait("on_call_received") == (ua, [ub], "team-1", MediaType.VIDEO)
    await b.accept()
    room_a = (await fa.wait("on_call_begin"))[0]
    assert await fa.wait("on_call_begin") == (room_a, MediaType.VIDEO, CallRole.CALLER)
    assert await fb.wait("on_call_begin") == (room_a, MediaType.VIDEO, CallRole.CALLED)
    assert not room_a.is_empty
    assert await fa.wait("on_user_join") == (ub,)
    assert await fb.wait("on_user_join") == (ua,)
    assert await fa.wait("on_user_video_available") == (ub, True)
    assert await fa.wait("on_user_audio_available") == (ub, True)
    # onCallMediaTypeChanged(oldCallMediaType, newCallMediaType)
    await a.switch_call_media_type(MediaType.AUDIO)
    assert await fa.wait("on_call_media_type_changed") == (MediaType.VIDEO, MediaType.AUDIO)
    assert await fb.wait("on_call_media_type_changed") == (MediaType.VIDEO, MediaType.AUDIO)
    assert await fb.wait("on_user_video_available") == (ua, True)
    assert await fb.wait("on_user_video_available", 2) == (ua, False)
    # onCallEnd(roomId, callMediaType, callRole, totalTime)
    await a.hangup()
    got = await fb.wait("on_call_end")
    assert got[:3] == (room_a, MediaType.AUDIO, CallRole.CALLED) and got[3] >= 0
    got = await fa.wait("on_call_end")
    assert got[:3] == (room_a, MediaType.AUDIO, CallRole.CALLER)


async def test_older_flutter_sample_cancel_reject_timeout_busy(make: Make) -> None:
    """onCallCancelled with the user ids the vendor's page lists for each case."""
    fa, fb, fc = FlutterObserver(), FlutterObserver(), FlutterObserver()
    a, ua = await make(fa)
    b, ub = await make(fb)
    c, uc = await make(fc)
    # Caller cancels: the caller gets its own id, the callee the caller's.
    await a.calls([ub], MediaType.AUDIO)
    await fb.wait("on_call_received")
    await a.hangup()
    assert await fa.wait("on_call_cancelled") == (ua,)
    assert await fb.wait("on_call_cancelled") == (ua,)
    # Callee rejects: onUserReject and onCallCancelled (own id) at the caller, own id at the callee.
    await a.calls([ub], MediaType.AUDIO)
    await fb.wait("on_call_received", 2)
    await b.reject()
    assert await fa.wait("on_user_reject") == (ub,)
    assert await fa.wait("on_call_cancelled", 2) == (ua,)
    assert await fb.wait("on_call_cancelled", 2) == (ub,)
    # Callee does not answer: onUserNoResponse and onCallCancelled (own ids).
    await a.calls([ub], MediaType.AUDIO, CallParams(timeout=1))
    await fb.wait("on_call_received", 3)
    assert await fa.wait("on_user_no_response") == (ub,)
    assert await fa.wait("on_call_cancelled", 3) == (ua,)
    assert await fb.wait("on_call_cancelled", 3) == (ub,)
    # Callee busy: onUserLineBusy (the sample's parameter is named onUserLineBusy) and
    # onCallCancelled (own id) at the caller.
    await c.calls([ub], MediaType.AUDIO)
    await fb.wait("on_call_received", 4)
    await a.calls([ub], MediaType.AUDIO)
    assert await fa.wait("on_user_line_busy") == (ub,)
    assert await fa.wait("on_call_cancelled", 4) == (ua,)
    await c.hangup()
    await fc.wait("on_call_cancelled")


async def expire_soon(engine: CallEngine, user: str, server: ServerProcess) -> None:
    """Give the engine a sig that expires within 1–2 s once it is logged in (a short sig
    at login would race the login on a loaded machine); sig times are whole seconds, so
    a sig already expired on arrival (70001) is minted again."""
    for _ in range(10):
        try:
            await engine.renew_user_sig(server.sig(user, 2))
            return
        except RemoteCallError as exc:
            assert exc.code == 70001, exc
    raise AssertionError("the server refused ten fresh 2 s sigs in a row")


async def test_older_flutter_sample_kicked_offline_and_sig_expired(make: Make, server: ServerProcess) -> None:
    first, second, expiring = FlutterObserver(), FlutterObserver(), FlutterObserver()
    u = unique("k")
    await make(first, user=u, device=u + "-phone")
    await make(second, user=u, device=u + "-laptop")
    assert await first.wait("on_kicked_offline") == ()
    assert "on_kicked_offline" not in second.names()
    e, ue = await make(expiring)
    await expire_soon(e, ue, server)
    assert await expiring.wait("on_user_sig_expired", timeout=8) == ()


async def test_older_received_with_user_data_as_the_uni_app_payload_has_it(make: Make) -> None:
    obs = UniAppReceivedObserver()
    a, ua = await make()
    b, ub = await make(obs)
    await a.calls([ub], MediaType.VIDEO, CallParams(chat_group_id="g-9", user_data="hello"))
    assert await obs.wait("on_call_received") == (ua, [ub], "g-9", MediaType.VIDEO, "hello")


async def test_an_observer_method_that_raises_is_logged_once_with_name_and_traceback(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Seen):
        def on_call_begin(self, room_id: RoomId, call_media_type: MediaType, call_role: CallRole) -> None:
            raise RuntimeError("boom in the app")

    broken, after = Broken(), FlutterObserver()
    a, ua = await make()
    b, ub = await make(broken, after)
    caplog.set_level(logging.ERROR, logger="ringline.client")
    await a.calls([ub], MediaType.AUDIO)
    await after.wait("on_call_received")
    await b.accept()
    await after.wait("on_call_begin")  # the next observer still gets the event
    await a.hangup()
    await after.wait("on_call_end")
    reports = [r for r in caplog.records if "Broken.on_call_begin" in r.getMessage()]
    assert len(reports) == 1
    assert reports[0].exc_info is not None and reports[0].exc_info[0] is RuntimeError
    assert "boom in the app" in caplog.text and "Traceback" in caplog.text
