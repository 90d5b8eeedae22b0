"""The switchboard against the scenario table of docs/spec.md §5 and the rules of §6.

Everything is synchronous: the fake clock is the ``now`` handed to the machine, and
timers are driven by :class:`Harness`, which also records every device's events.
The harness checks two record rules on every batch it applies: a call's
``FinishCall`` comes at most once, and before every terminal event of that call in
the same batch (§6.8).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import pytest

from ringline.core.enums import CallEndReason, CallResultType, CallRole, CallScene, MediaType
from ringline.core.errors import ErrorCode, LocalCallError
from ringline.core.machine import (
    Accept,
    Action,
    AdminEndCall,
    CancelTimer,
    CloseDevice,
    DeviceGone,
    Emit,
    FinishCall,
    Hangup,
    Ignore,
    Input,
    InviteUser,
    Join,
    Login,
    Logout,
    Persist,
    PlaceCall,
    RecoveryDeadline,
    Reject,
    RenewSig,
    SaveCall,
    SaveProfile,
    SetDeviceFlag,
    SetGroupMembers,
    SetMultiDevice,
    SetSelfInfo,
    SetTimer,
    Switchboard,
    SwitchMediaType,
    TimerFired,
)
from ringline.core.records import CallResult
from ringline.core.types import CallParams, RoomId

APP = 1400000000
T0 = 1_700_000_000.0
AUDIO, VIDEO = MediaType.AUDIO, MediaType.VIDEO
CALLER, CALLED = CallRole.CALLER, CallRole.CALLED
R = CallEndReason
TERMINAL = frozenset({"on_call_end", "on_call_not_connected", "on_call_cancelled"})

Event = tuple[str, dict[str, Any]]


# --------------------------------------------------------------------------- harness


def user_of(device_id: str) -> str:
    """Devices are named after their user: ``A`` or ``B1``/``B2`` belong to A / B."""
    return device_id.rstrip("0123456789")


def fingerprint(sb: Switchboard) -> Any:
    """Everything a refused request must leave unchanged."""
    return (
        {cid: (c.to_snapshot(), c.unconfirmed) for cid, c in sb.calls.items()},
        {d: (v.user_id, v.multi_device, v.sig_expires_at) for d, v in sb.devices.items()},
        {u: list(ds) for u, ds in sb.user_devices.items()},
        dict(sb.user_call),
        dict(sb.groups),
        dict(sb.profiles),
    )


class Harness:
    """A tiny synchronous driver: a fake clock, armed timers and per-device event logs."""

    def __init__(self, *, now: float = T0, sig_grace: float = 60.0) -> None:
        self.sb = Switchboard(sdk_app_id=APP, sig_grace=sig_grace)
        self.now = now
        self.timers: dict[tuple[str, ...], float] = {}
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.batches: list[list[Action]] = []
        self.finished: list[FinishCall] = []
        self.finish_count: Counter[str] = Counter()
        self.saved: dict[str, dict[str, Any]] = {}
        self.closed: list[CloseDevice] = []
        self._n = 0

    # -- plumbing

    def apply(self, actions: list[Action]) -> list[Action]:
        self.batches.append(actions)
        finish_at: dict[str, int] = {}
        for i, a in enumerate(actions):
            if isinstance(a, Persist) and isinstance(a.what, FinishCall):
                finish_at[a.what.record.call_id] = i
        for i, a in enumerate(actions):
            match a:
                case Emit():
                    assert a.terminal == (a.name in TERMINAL), a
                    cid = a.args.get("call_id")
                    if a.name in TERMINAL and cid in finish_at:
                        assert finish_at[cid] < i, f"terminal {a} went out before the record"
                    self.events[a.device_id].append((a.name, a.args))
                case SetTimer():
                    self.timers.pop(a.key, None)
                    self.timers[a.key] = a.at
                case CancelTimer():
                    # the core cancels only what it armed and has not fired yet
                    assert a.key in self.timers, f"{a}: no such timer is armed"
                    del self.timers[a.key]
                case Persist(what=FinishCall() as f):
                    self.finish_count[f.record.call_id] += 1
                    assert self.finish_count[f.record.call_id] == 1, f"second record for {f}"
                    self.finished.append(f)
                    self.saved.pop(f.record.call_id, None)
                case Persist(what=SaveCall() as s):
                    self.saved[s.call_id] = s.snapshot
                case Persist():
                    pass
                case CloseDevice():
                    self.closed.append(a)
        return actions

    def feed(self, inp: Input) -> list[Action]:
        return self.apply(self.sb.handle(inp, self.now))

    def req(self, inp: Input) -> Any:
        res, actions = self.sb.request(inp, self.now)
        self.apply(actions)
        return res

    def refused(self, inp: Input, code: ErrorCode) -> LocalCallError:
        """``inp`` must be refused with ``code`` and change nothing at all."""
        before = fingerprint(self.sb)
        n_events = sum(len(v) for v in self.events.values())
        with pytest.raises(LocalCallError) as ei:
            self.sb.request(inp, self.now)
        assert ei.value.code == code, ei.value
        assert ei.value.message, "every refusal says what to do"
        assert fingerprint(self.sb) == before
        assert sum(len(v) for v in self.events.values()) == n_events
        return ei.value

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now + seconds)

    def advance_to(self, t: float) -> None:
        """Move the clock to ``t``, firing due timers in time order on the way."""
        while True:
            due = [(at, i, k) for i, (k, at) in enumerate(self.timers.items()) if at <= t]
            if not due:
                break
            at, _, key = min(due)
            del self.timers[key]
            self.now = max(self.now, at)
            self.feed(TimerFired(key))
        self.now = max(self.now, t)

    # -- requests

    def login(
        self,
        device: str,
        *,
        user: str | None = None,
        multi: bool = False,
        sig: float = math.inf,
        resumed: bool = False,
    ) -> list[Action]:
        return self.feed(Login(device, user or user_of(device), multi, sig, resumed))

    def call(self, device: str, users: list[str], media: MediaType = AUDIO, **params: Any) -> str:
        self._n += 1
        return str(
            self.req(
                PlaceCall(
                    device,
                    tuple(users),
                    media,
                    CallParams(**params),
                    f"call-{self._n}",
                    1000 + self._n,
                )
            )
        )

    def accept(self, device: str, cid: str) -> None:
        self.req(Accept(device, cid))

    def reject(self, device: str, cid: str) -> None:
        self.req(Reject(device, cid))

    def hangup(self, device: str, cid: str) -> None:
        self.req(Hangup(device, cid))

    def invite(self, device: str, cid: str, users: list[str], **params: Any) -> Any:
        return self.req(InviteUser(device, cid, tuple(users), CallParams(**params)))

    def join(self, device: str, cid: str) -> None:
        self.req(Join(device, cid))

    # -- reading back

    def ev(self, device: str, cid: str | None = None) -> list[tuple[Any, ...]]:
        """The device's events, projected to their key arguments (see :func:`brief`)."""
        return [brief(n, a) for n, a in self.events[device] if cid is None or a.get("call_id") in (cid, None)]

    def raw(self, device: str, name: str) -> list[dict[str, Any]]:
        return [a for n, a in self.events[device] if n == name]

    def clear(self) -> None:
        self.events.clear()

    def record(self, cid: str) -> FinishCall:
        (f,) = [f for f in self.finished if f.record.call_id == cid]
        return f


def brief(name: str, a: dict[str, Any]) -> tuple[Any, ...]:
    """An event as (name, key args...) so whole event lists can be compared at once."""
    match name:
        case "on_call_received":
            return (
                name,
                a["caller_id"],
                tuple(a["callee_id_list"]),
                MediaType(a["media_type"]),
                CallRole(a["info"]["role"]),
            )
        case "on_call_begin":
            return (name, MediaType(a["media_type"]), CallRole(a["info"]["role"]))
        case "on_call_end" | "on_call_not_connected":
            return (name, CallEndReason(a["reason"]), a["user_id"])
        case "on_user_audio_available":
            return (name, a["user_id"], a["is_audio_available"])
        case "on_user_video_available":
            return (name, a["user_id"], a["is_video_available"])
        case "on_call_media_type_changed":
            return (name, MediaType(a["old_call_media_type"]), MediaType(a["new_call_media_type"]))
        case _ if "user_id" in a:
            return (name, a["user_id"])
        case _:
            return (name,)


# Expected-event builders (short names keep the scenario tables readable).


def received(caller: str, callees: list[str], mt: MediaType = AUDIO) -> tuple[Any, ...]:
    return ("on_call_received", caller, tuple(callees), mt, CALLED)


def begin(role: CallRole, mt: MediaType = AUDIO) -> tuple[Any, ...]:
    return ("on_call_begin", mt, role)


def inviting(u: str) -> tuple[Any, ...]:
    return ("on_user_inviting", u)


def join(u: str, *, audio: bool = True, video: bool = False) -> list[tuple[Any, ...]]:
    """``on_user_join(u)`` and the availability of ``u`` that follows it."""
    return [
        ("on_user_join", u),
        ("on_user_audio_available", u, audio),
        ("on_user_video_available", u, video),
    ]


def leave(u: str) -> tuple[Any, ...]:
    return ("on_user_leave", u)


def end(reason: CallEndReason, u: str) -> tuple[Any, ...]:
    return ("on_call_end", reason, u)


def not_connected(reason: CallEndReason, by: str, cancelled: str) -> list[tuple[Any, ...]]:
    """``on_call_not_connected(reason, by)`` + its legacy ``on_call_cancelled``."""
    return [("on_call_not_connected", reason, by), ("on_call_cancelled", cancelled)]


def peer(name: str, u: str) -> tuple[Any, ...]:
    return (f"on_user_{name}", u)


@pytest.fixture
def h() -> Harness:
    h = Harness()
    for d in ("A", "B", "C", "D", "E", "F"):
        h.login(d)
    h.clear()
    return h


# --------------------------------------------------------------------------- §5 rows 1-12


def test_row1_calls_rings_the_callee_and_tells_the_caller_who_is_invited(h: Harness) -> None:
    h.req(SetSelfInfo("B", "Bob", "https://b/me.png"))
    cid = h.call("A", ["B"])
    assert h.ev("A") == [inviting("B")]
    # ... with what the caller's screen shows: B's profile, and that a device of B rings.
    assert h.raw("A", "on_user_inviting") == [
        {"call_id": cid, "user_id": "B", "online": True, "nickname": "Bob", "avatar": "https://b/me.png"}
    ]
    assert h.ev("B") == [received("A", ["B"])]
    (args,) = h.raw("B", "on_call_received")
    assert args["call_id"] == cid
    assert args["info"]["role"] == CallRole.CALLED
    assert args["info"]["ring_time_left"] == 30
    assert args["info"]["room_id"] == RoomId(int_room_id=1001).to_wire()
    assert h.timers[("ring", cid, "B")] == T0 + 30


def test_row1_offline_callee_logging_in_before_the_timeout_gets_the_time_left() -> None:
    h = Harness()
    h.login("A")
    cid = h.call("A", ["B"])
    assert h.ev("A") == [inviting("B")]
    # The caller's screen can say so: no device of B is logged in.
    assert h.raw("A", "on_user_inviting")[0]["online"] is False
    h.advance(12)
    h.login("B")
    assert h.ev("B") == [received("A", ["B"])]
    (args,) = h.raw("B", "on_call_received")
    assert args["call_id"] == cid
    assert args["info"]["ring_time_left"] == pytest.approx(18)
    # The invite was held for the original 30 s, not restarted by the login.
    h.advance_to(T0 + 30)
    assert h.ev("B")[1:] == not_connected(R.NO_RESPONSE, "B", "B")
    assert cid not in h.sb.calls


def test_row1_offline_callee_that_never_logs_in_times_out_as_no_response() -> None:
    h = Harness()
    h.login("A")
    cid = h.call("A", ["B"])
    h.advance(29.9)
    assert cid in h.sb.calls
    h.advance(0.1)
    assert h.ev("A") == [inviting("B"), peer("no_response", "B"), *not_connected(R.NO_RESPONSE, "B", "A")]
    assert h.record(cid).record.result is CallResult.NOT_ANSWER


def test_row2_accept_begins_both_legs_and_each_side_joins_the_other(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.advance(5)
    h.accept("B", cid)
    assert h.ev("A") == [inviting("B"), begin(CALLER), *join("B")]
    assert h.ev("B") == [received("A", ["B"]), begin(CALLED), *join("A")]
    assert ("ring", cid, "B") not in h.timers
    assert h.sb.calls[cid].accept_time == T0 + 5


def test_row3_hangup_of_a_connected_1v1_ends_it_for_both_with_hangup(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.advance(5)
    h.accept("B", cid)
    h.clear()
    h.advance(60)
    h.hangup("A", cid)
    assert h.ev("A") == [end(R.HANGUP, "A")]
    assert h.ev("B") == [leave("A"), end(R.HANGUP, "A")]
    assert h.raw("A", "on_call_end")[0]["total_time"] == 60
    assert h.raw("B", "on_call_end")[0]["total_time"] == 60
    assert cid not in h.sb.calls
    assert h.record(cid).record.result is CallResult.NORMAL_END


def test_row4_caller_cancelling_before_answer_ends_it_as_canceled(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.hangup("A", cid)
    assert h.ev("A") == [inviting("B"), *not_connected(R.CANCELED, "A", "A")]
    assert h.ev("B") == [received("A", ["B"]), *not_connected(R.CANCELED, "A", "A")]
    assert h.record(cid).record.result is CallResult.CANCEL
    assert h.timers == {}


def test_row5_ring_timeout_ends_the_call_with_no_response(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.advance(30)
    assert h.ev("A") == [inviting("B"), peer("no_response", "B"), *not_connected(R.NO_RESPONSE, "B", "A")]
    assert h.ev("B") == [received("A", ["B"]), *not_connected(R.NO_RESPONSE, "B", "B")]
    rec = h.record(cid)
    assert rec.record.result is CallResult.NOT_ANSWER
    assert dict(rec.user_results) == {"A": CallResultType.OUTGOING, "B": CallResultType.MISSED}


def test_row6_reject_ends_the_1v1_with_reject(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.reject("B", cid)
    assert h.ev("A") == [inviting("B"), peer("reject", "B"), *not_connected(R.REJECT, "B", "A")]
    assert h.ev("B") == [received("A", ["B"]), *not_connected(R.REJECT, "B", "B")]
    rec = h.record(cid)
    assert rec.record.result is CallResult.REJECT
    assert dict(rec.user_results)["B"] is CallResultType.INCOMING


def test_row6_ringing_member_hanging_up_declines_like_reject(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.hangup("B", cid)
    assert h.ev("B") == [received("A", ["B"]), *not_connected(R.REJECT, "B", "B")]


@pytest.mark.parametrize("busy_state", ["ringing", "connected"])
def test_row7_busy_callee_ends_the_call_as_line_busy_and_is_left_alone(h: Harness, busy_state: str) -> None:
    other = h.call("C", ["B"])
    if busy_state == "connected":
        h.accept("B", other)
    before = h.sb.snapshot(other)
    b_events = h.ev("B")
    h.advance(2)
    cid = h.call("A", ["B"])
    # A hears of the invite (row 1) before hearing that B is busy.
    assert h.ev("A") == [inviting("B"), peer("line_busy", "B"), *not_connected(R.LINE_BUSY, "B", "A")]
    assert h.ev("B") == b_events  # nothing reaches B
    assert h.sb.snapshot(other) == before  # B's current call is untouched
    assert h.sb.user_call["B"] == other
    rec = h.record(cid)
    assert rec.record.result is CallResult.CALL_BUSY
    assert dict(rec.user_results)["B"] is CallResultType.MISSED
    (stint,) = [m for m in rec.record.members if m.user_id == "B"]
    assert stint.end_reason is R.LINE_BUSY and stint.accept_time == 0


def test_row8_glare_turns_the_crossing_call_into_an_accept(h: Harness) -> None:
    cid = h.call("A", ["B"])
    got = h.call("B", ["A"], VIDEO)
    assert got == cid  # the existing call id comes back
    assert list(h.sb.calls) == [cid]
    assert h.ev("A") == [inviting("B"), begin(CALLER), *join("B")]
    assert h.ev("B") == [received("A", ["B"]), begin(CALLED), *join("A")]
    assert h.finished == []


def test_row9_connected_device_vanishing_ends_its_leg_offline(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.clear()
    h.advance(20)
    h.feed(DeviceGone("B"))
    assert h.ev("A") == [leave("B"), end(R.OFFLINE, "B")]
    # Queued for B: delivered when it reconnects (the driver replays terminal events).
    assert h.ev("B") == [end(R.OFFLINE, "B")]
    assert h.record(cid).record.result is CallResult.OFFLINE
    # A reconnect within the grace period never reaches the core (the driver resumes
    # the session), so the core has nothing to say about it.


def test_row10_multi_device_first_accept_wins_the_other_device_stops(h: Harness) -> None:
    h.login("B1", multi=True)
    h.login("B2", multi=True)
    assert "B" not in h.sb.devices and "B1" in h.sb.devices  # B was kicked by B1
    h.clear()
    cid = h.call("A", ["B"])
    assert h.ev("B1") == h.ev("B2") == [received("A", ["B"])]
    h.accept("B1", cid)
    assert h.ev("A") == [inviting("B"), begin(CALLER), *join("B")]
    assert h.ev("B1") == [received("A", ["B"]), begin(CALLED), *join("A")]
    assert h.ev("B2") == [received("A", ["B"]), *not_connected(R.OTHER_DEVICE_ACCEPTED, "B", "B")]
    # The loser cannot answer any more, and trying changes nothing. (Current
    # behaviour: -1203 "on another device", not 8010, while the user is connected.)
    h.refused(Accept("B2", cid), ErrorCode.CALL_NOT_FOUND)
    h.refused(Reject("B2", cid), ErrorCode.CALL_NOT_FOUND)


def test_row11_multi_device_first_reject_wins_the_other_device_stops(h: Harness) -> None:
    h.login("B1", multi=True)
    h.login("B2", multi=True)
    h.clear()
    cid = h.call("A", ["B"])
    h.reject("B1", cid)
    assert h.ev("A") == [inviting("B"), peer("reject", "B"), *not_connected(R.REJECT, "B", "A")]
    assert h.ev("B1") == [received("A", ["B"]), *not_connected(R.REJECT, "B", "B")]
    assert h.ev("B2") == [received("A", ["B"]), *not_connected(R.OTHER_DEVICE_REJECT, "B", "B")]
    assert h.record(cid).record.result is CallResult.REJECT


def test_row12_media_switch_goes_both_ways_and_a_repeat_is_refused(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.clear()
    h.req(SwitchMediaType("A", cid, VIDEO))
    change = ("on_call_media_type_changed", AUDIO, VIDEO)
    assert h.ev("A") == [change, ("on_user_video_available", "B", True)]
    assert h.ev("B") == [change, ("on_user_video_available", "A", True)]
    h.clear()
    h.req(SwitchMediaType("B", cid, AUDIO))
    back = ("on_call_media_type_changed", VIDEO, AUDIO)
    assert h.ev("A") == [back, ("on_user_video_available", "B", False)]
    assert h.ev("B") == [back, ("on_user_video_available", "A", False)]
    err = h.refused(SwitchMediaType("A", cid, AUDIO), ErrorCode.REQUEST_REPEATED)
    assert "already AUDIO" in err.message
    h.refused(SwitchMediaType("A", cid, MediaType.UNKNOWN), ErrorCode.PARAM_INVALID)
    # The record keeps the media type the call was placed with.
    h.hangup("A", cid)
    assert h.record(cid).record.media_type is AUDIO


def test_media_switch_is_refused_before_the_leg_begins(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.refused(SwitchMediaType("A", cid, VIDEO), ErrorCode.REQUEST_REFUSED)
    h.refused(SwitchMediaType("B", cid, VIDEO), ErrorCode.REQUEST_REFUSED)


# --------------------------------------------------------------------------- §5 rows G1-G9


def group(h: Harness, mt: MediaType = VIDEO, **params: Any) -> str:
    cid = h.call("A", ["B", "C", "D"], mt, **params)
    return cid


def test_G1_group_call_invites_everyone_and_each_invitee_sees_the_list(h: Harness) -> None:
    cid = group(h)
    assert h.ev("A") == [inviting("B"), inviting("C"), inviting("D")]
    for d in "BCD":
        assert h.ev(d) == [received("A", ["B", "C", "D"], VIDEO)]
    assert h.sb.calls[cid].scene is CallScene.MULTI_CALL


def test_G2_first_accept_connects_the_caller_others_keep_ringing(h: Harness) -> None:
    cid = group(h)
    h.clear()
    h.accept("B", cid)
    assert h.ev("A") == [begin(CALLER, VIDEO), *join("B", video=True)]
    assert h.ev("B") == [begin(CALLED, VIDEO), *join("A", video=True)]
    assert h.ev("C") == h.ev("D") == []


def test_G3_reject_in_a_group_tells_everyone_and_the_call_goes_on(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.clear()
    h.reject("D", cid)
    for d in "ABC":
        assert h.ev(d) == [peer("reject", "D")]
    assert h.ev("D") == not_connected(R.REJECT, "D", "D")
    assert cid in h.sb.calls


def test_G3_no_answer_in_a_group_tells_everyone_and_the_call_goes_on(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.advance(20)
    h.accept("C", cid)
    h.clear()
    h.advance(10)
    for d in "ABC":
        assert h.ev(d) == [peer("no_response", "D")]
    assert h.ev("D") == not_connected(R.NO_RESPONSE, "D", "D")
    assert h.sb.calls[cid].state_of("D").value == "absent"


def test_G3_busy_invitee_of_a_group_tells_everyone_and_the_call_goes_on(h: Harness) -> None:
    busy = h.call("E", ["D"])
    d_before = h.ev("D")
    cid = group(h)
    assert h.ev("A") == [inviting("B"), inviting("C"), inviting("D"), peer("line_busy", "D")]
    for d in "BC":
        assert h.ev(d) == [received("A", ["B", "C", "D"], VIDEO), peer("line_busy", "D")]
    assert h.ev("D") == d_before
    assert h.sb.user_call["D"] == busy
    assert cid in h.sb.calls


def test_G3_several_busy_invitees_hear_nothing_of_the_call(h: Harness) -> None:
    # Regression: a busy invitee used to hear of the *other* busy invitees
    # (on_user_line_busy of a call it never received).
    h.call("E", ["C"])
    h.call("F", ["D"])
    c_before, d_before = h.ev("C"), h.ev("D")
    cid = group(h)
    assert h.ev("C") == c_before
    assert h.ev("D") == d_before
    assert h.ev("B") == [
        received("A", ["B", "C", "D"], VIDEO),
        peer("line_busy", "C"),
        peer("line_busy", "D"),
    ]
    assert h.sb.calls[cid].state_of("B").value == "ringing"


def test_G4_late_accept_joins_everyone_already_connected(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.clear()
    h.accept("C", cid)
    assert h.ev("A") == join("C", video=True)
    assert h.ev("B") == join("C", video=True)
    assert h.ev("C") == [begin(CALLED, VIDEO), *join("A", video=True), *join("B", video=True)]
    assert h.ev("D") == []


def test_G5_caller_hanging_up_leaves_a_group_call_that_goes_on(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.accept("C", cid)
    h.clear()
    h.hangup("A", cid)
    assert h.ev("A") == [end(R.HANGUP, "A")]
    assert h.ev("B") == h.ev("C") == [leave("A")]
    assert h.ev("D") == []  # ringing members do not hear of joins and leaves
    assert cid in h.sb.calls


def test_G6_the_last_member_is_ended_when_the_call_drops_to_one(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.accept("C", cid)
    h.reject("D", cid)
    h.hangup("A", cid)
    h.clear()
    h.hangup("B", cid)
    assert h.ev("B") == [end(R.HANGUP, "B")]
    assert h.ev("C") == [leave("B"), end(R.HANGUP, "B")]
    assert cid not in h.sb.calls


def test_G6_ringing_members_count_and_get_not_connected_when_left_alone(h: Harness) -> None:
    cid = h.call("A", ["B", "C"])
    h.accept("B", cid)
    h.hangup("A", cid)
    assert cid in h.sb.calls  # B connected + C ringing: two members
    h.clear()
    h.hangup("B", cid)
    assert h.ev("B") == [end(R.HANGUP, "B")]
    assert h.ev("C") == not_connected(R.HANGUP, "B", "C")
    assert cid not in h.sb.calls


def test_G7_invite_user_rings_the_new_member_and_tells_all_members(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.clear()
    got = h.invite("B", cid, ["E"])
    assert got == ["E"]
    for d in "ABCD":
        assert h.ev(d) == [inviting("E")]
    assert h.ev("E") == [received("A", ["B", "C", "D", "E"], VIDEO)]
    info = h.raw("E", "on_call_received")[0]["info"]
    assert info["inviter_id"] == "B"


def test_G7_invite_upgrades_a_single_call_to_a_multi_call(h: Harness) -> None:
    cid = h.call("A", ["B"])
    assert h.sb.calls[cid].scene is CallScene.SINGLE_CALL
    h.accept("B", cid)
    h.invite("A", cid, ["C"])
    assert h.sb.calls[cid].scene is CallScene.MULTI_CALL


def test_G8_join_by_a_group_member_connects_and_joins_everyone(h: Harness) -> None:
    h.feed(SetGroupMembers("grp", ("A", "B", "C", "D", "F")))
    cid = group(h, chat_group_id="grp")
    assert h.sb.calls[cid].scene is CallScene.GROUP_CALL
    h.accept("B", cid)
    h.clear()
    h.join("F", cid)
    assert h.ev("A") == join("F", video=True)
    assert h.ev("B") == join("F", video=True)
    assert h.ev("F") == [begin(CALLED, VIDEO), *join("A", video=True), *join("B", video=True)]
    assert h.ev("C") == h.ev("D") == []


def test_G9_caller_cancelling_a_group_call_ends_it_for_every_invitee(h: Harness) -> None:
    cid = group(h)
    h.clear()
    h.hangup("A", cid)
    assert h.ev("A") == not_connected(R.CANCELED, "A", "A")
    for d in "BCD":
        assert h.ev(d) == not_connected(R.CANCELED, "A", "A")
    assert h.record(cid).record.result is CallResult.CANCEL


# --------------------------------------------------------------------------- timeouts


def test_each_invitee_times_out_on_its_own_timeout(h: Harness) -> None:
    cid = h.call("A", ["B", "C"], timeout=30)
    h.advance(5)
    h.accept("B", cid)
    h.invite("B", cid, ["D"], timeout=10)
    assert h.timers[("ring", cid, "D")] == T0 + 15
    h.clear()
    h.advance_to(T0 + 15)
    assert h.ev("A") == [peer("no_response", "D")]
    assert h.ev("C") == [peer("no_response", "D")]
    assert h.ev("D") == not_connected(R.NO_RESPONSE, "D", "D")
    h.clear()
    h.advance_to(T0 + 30)
    assert h.ev("A") == h.ev("B") == [peer("no_response", "C")]
    assert h.ev("C") == not_connected(R.NO_RESPONSE, "C", "C")
    assert cid in h.sb.calls  # A and B are still connected


def test_timeout_zero_means_the_default_30_seconds(h: Harness) -> None:
    cid = h.call("A", ["B"], timeout=0)
    assert h.timers[("ring", cid, "B")] == T0 + 30


def test_reinvited_member_gets_a_fresh_deadline_and_the_old_timer_is_stale(h: Harness) -> None:
    cid = h.call("A", ["B", "C"], timeout=30)
    h.accept("B", cid)
    h.reject("C", cid)
    h.advance(10)
    h.invite("A", cid, ["C"], timeout=30)
    # The original deadline firing late (a stale timer) does not end the new invite.
    h.feed(TimerFired(("ring", cid, "C")))
    assert h.sb.calls[cid].state_of("C").value == "ringing"
    assert h.timers[("ring", cid, "C")] == T0 + 40


def test_ignore_stops_nothing_on_the_server_the_invite_times_out(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.req(Ignore("B", cid))
    assert h.ev("B") == [received("A", ["B"])]
    h.advance(30)
    assert h.ev("B")[1:] == not_connected(R.NO_RESPONSE, "B", "B")


# --------------------------------------------------------------------------- busy / glare


def test_busy_caller_cannot_place_a_second_call(h: Harness) -> None:
    h.call("A", ["B"])
    h.refused(PlaceCall("A", ("C",), AUDIO, CallParams(), "x", 1), ErrorCode.REQUEST_REFUSED)


def test_ringing_user_calling_someone_else_is_refused_not_glare(h: Harness) -> None:
    h.call("A", ["B"])
    h.refused(PlaceCall("B", ("C",), AUDIO, CallParams(), "x", 1), ErrorCode.REQUEST_REFUSED)


def test_glare_persists_the_answered_call(h: Harness) -> None:
    # Regression: the glare accept changed the call without a SaveCall, so a restart
    # would have restored it as still ringing.
    cid = h.call("A", ["B"])
    h.call("B", ["A"])
    assert h.saved[cid] == h.sb.snapshot(cid)
    assert h.saved[cid]["phase"] == "connected"


def test_glare_with_extra_callees_invites_them_into_the_existing_call(h: Harness) -> None:
    cid = h.call("A", ["B"])
    got = h.call("B", ["A", "C"])
    assert got == cid
    assert h.sb.calls[cid].state_of("C").value == "ringing"
    assert h.ev("C") == [received("A", ["B", "C"])]
    assert h.ev("A")[-1] == inviting("C")


def test_no_glare_once_the_caller_left_the_ringing_call(h: Harness) -> None:
    # Glare answers A's call only while A is in it; once A left, B's call to A is
    # refused like any call from a user who is still ringing elsewhere.
    cid = h.call("A", ["B", "C"])
    h.accept("C", cid)
    h.hangup("A", cid)
    h.refused(PlaceCall("B", ("A",), AUDIO, CallParams(), "x", 1), ErrorCode.REQUEST_REFUSED)
    assert h.sb.calls[cid].state_of("B").value == "ringing"


def test_glare_never_grows_a_call_past_nine_members() -> None:
    h = Harness()
    users = ["A", "B", *[f"U{i}x" for i in range(7)], "X"]
    for u in users:
        h.login(u, user=u)
    cid = h.call("A", users[1:9])  # 9 members
    err = h.refused(PlaceCall("B", ("A", "X"), AUDIO, CallParams(), "x", 1), ErrorCode.PARAM_INVALID)
    assert "9 members" in err.message
    assert len(h.sb.calls[cid].active_members()) == 9


# --------------------------------------------------------------------------- multi-device


def test_second_login_without_multi_device_kicks_the_first(h: Harness) -> None:
    actions = h.login("B2", user="B")
    assert h.ev("B") == [("on_kicked_offline",)]
    closes = [a for a in actions if isinstance(a, CloseDevice)]
    assert [(c.device_id, c.code) for c in closes] == [("B", ErrorCode.KICKED_OFFLINE)]
    assert "B" not in h.sb.devices and h.sb.user_devices["B"] == ["B2"]


@pytest.mark.parametrize(("first", "second"), [(True, False), (False, True)])
def test_multi_device_must_be_on_for_both_devices(first: bool, second: bool) -> None:
    h = Harness()
    h.login("B1", multi=first)
    h.login("B2", multi=second)
    assert h.ev("B1") == [("on_kicked_offline",)]
    assert list(h.sb.devices) == ["B2"]


def test_kicked_connected_device_leaves_as_hangup_and_gets_no_terminal(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.clear()
    h.advance(7)
    h.login("B2", user="B")
    assert h.ev("B") == [("on_kicked_offline",)]
    assert h.ev("A") == [leave("B"), end(R.HANGUP, "B")]
    assert h.ev("B2") == []
    assert [c.device_id for c in h.closed] == ["B"]
    stints = {m.user_id: m for m in h.record(cid).record.members}
    assert stints["B"].end_reason is R.HANGUP


def test_kicked_ringing_device_stops_and_the_new_device_rings(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.clear()
    h.advance(10)
    h.login("B2", user="B")
    assert h.ev("B") == [("on_kicked_offline",)]
    assert h.ev("B2") == [received("A", ["B"])]
    assert h.raw("B2", "on_call_received")[0]["info"]["ring_time_left"] == 20
    h.accept("B2", cid)
    assert h.ev("B") == [("on_kicked_offline",)]
    assert h.ev("B2")[1] == begin(CALLED)


def test_kicked_dialing_caller_cancels_the_call(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.clear()
    h.login("A2", user="A")
    assert h.ev("A") == [("on_kicked_offline",)]
    assert h.ev("B") == not_connected(R.CANCELED, "A", "A")
    assert cid not in h.sb.calls


def test_turning_multi_device_off_kicks_the_other_devices() -> None:
    h = Harness()
    h.login("B1", multi=True)
    h.login("B2", multi=True)
    h.feed(SetMultiDevice("B2", False))
    assert h.ev("B1") == [("on_kicked_offline",)]
    assert list(h.sb.devices) == ["B2"]


def test_a_device_that_logs_in_while_ringing_with_multi_device_rings_too() -> None:
    h = Harness()
    h.login("A")
    h.login("B1", multi=True)
    cid = h.call("A", ["B"])
    h.advance(3)
    h.login("B2", multi=True)
    assert h.ev("B2") == [received("A", ["B"])]
    h.accept("B2", cid)
    assert h.ev("B1") == [received("A", ["B"]), *not_connected(R.OTHER_DEVICE_ACCEPTED, "B", "B")]


def test_a_second_device_of_a_connected_user_cannot_act_on_the_call() -> None:
    h = Harness()
    h.login("A")
    h.login("B1", multi=True)
    cid = h.call("A", ["B"])
    h.accept("B1", cid)
    h.login("B2", multi=True)
    assert h.ev("B2") == []
    for inp in (
        Hangup("B2", cid),
        SetDeviceFlag("B2", cid, "audio", False),
        SwitchMediaType("B2", cid, VIDEO),
        InviteUser("B2", cid, ("C",), CallParams()),
    ):
        h.refused(inp, ErrorCode.REQUEST_REFUSED)
    h.refused(Join("B2", cid), ErrorCode.REQUEST_REPEATED)


def test_same_device_logging_in_afresh_ends_its_connected_leg_offline(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.clear()
    h.login("B")
    assert h.ev("B") == [end(R.OFFLINE, "B")]
    assert h.ev("A") == [leave("B"), end(R.OFFLINE, "B")]


def test_same_device_logging_in_afresh_while_ringing_rings_again(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.advance(4)
    h.login("B")
    assert h.ev("B") == [received("A", ["B"]), received("A", ["B"])]
    assert h.sb.calls[cid].members["B"].devices == ["B"]


# --------------------------------------------------------------------------- join / invite


def test_join_is_allowed_for_users_invited_earlier(h: Harness) -> None:
    cid = h.call("A", ["B", "C"])
    h.accept("B", cid)
    h.reject("C", cid)
    h.clear()
    h.join("C", cid)
    assert h.ev("C") == [begin(CALLED), *join("A"), *join("B")]
    call = h.sb.calls[cid]
    assert [m.user_id for m in call.past] == ["C"]
    assert call.members["C"].invited_by == ""


def test_the_caller_rejoining_its_call_comes_back_as_called(h: Harness) -> None:
    # Current behaviour, the spec is silent: a join is always a CALLED stint.
    cid = h.call("A", ["B", "C"])
    h.accept("B", cid)
    h.accept("C", cid)
    h.hangup("A", cid)
    h.clear()
    h.join("A", cid)
    assert h.ev("A") == [begin(CALLED), *join("B"), *join("C")]
    assert h.sb.calls[cid].members["A"].role is CALLED


def test_join_while_ringing_answers_the_invitation(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.join("B", cid)
    assert h.ev("B") == [received("A", ["B"]), begin(CALLED), *join("A")]
    assert h.ev("A")[1] == begin(CALLER)


def test_join_before_anyone_answered_connects_the_caller(h: Harness) -> None:
    h.feed(SetGroupMembers("g", ("A", "F")))
    cid = h.call("A", ["B"], chat_group_id="g")
    h.clear()
    h.join("F", cid)
    assert h.ev("A") == [begin(CALLER), *join("F")]
    assert h.ev("F") == [begin(CALLED), *join("A")]
    assert h.ev("B") == []  # B still rings


def test_join_by_a_stranger_is_a_permission_error(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    err = h.refused(Join("F", cid), ErrorCode.NO_PERMISSION)
    assert "invite_user" in err.message


def test_join_needs_membership_of_the_call_s_own_group(h: Harness) -> None:
    h.feed(SetGroupMembers("other", ("F",)))
    cid = h.call("A", ["B"], chat_group_id="grp")
    h.refused(Join("F", cid), ErrorCode.NO_PERMISSION)
    h.feed(SetGroupMembers("grp", ("F",)))
    h.join("F", cid)
    h.feed(SetGroupMembers("grp", ()))
    assert "grp" not in h.sb.groups


def test_join_while_busy_elsewhere_is_refused(h: Harness) -> None:
    cid = h.call("A", ["B", "C"])
    h.accept("B", cid)
    h.reject("C", cid)
    h.call("C", ["D"])
    h.refused(Join("C", cid), ErrorCode.REQUEST_REFUSED)


def test_join_of_a_full_call_is_refused() -> None:
    h = Harness()
    users = ["A", *[f"U{i}x" for i in range(8)], "Z"]
    for u in users:
        h.login(u, user=u)
    h.feed(SetGroupMembers("g", tuple(users)))
    cid = h.call("A", users[1:9], chat_group_id="g")
    err = h.refused(Join("Z", cid), ErrorCode.REQUEST_REFUSED)
    assert "full" in err.message


def test_join_of_an_unknown_call_is_not_found(h: Harness) -> None:
    h.refused(Join("A", "nope"), ErrorCode.CALL_NOT_FOUND)


def test_invite_user_removes_self_duplicates_and_members_and_returns_the_invited(
    h: Harness,
) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    got = h.invite("B", cid, ["B", "C", "C", "A", "D"])
    assert got == ["C", "D"]
    err = h.refused(InviteUser("B", cid, ("A", "B", "C"), CallParams()), ErrorCode.PARAM_INVALID)
    assert "no one to invite" in err.message


def test_invite_user_returns_only_the_invitees_that_ring(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.call("E", ["F"])
    assert h.invite("A", cid, ["C", "F"]) == ["C"]
    assert h.ev("A")[-2:] == [inviting("F"), peer("line_busy", "F")]


def test_invite_user_may_not_grow_a_call_past_nine_members() -> None:
    h = Harness()
    users = ["A", *[f"U{i}x" for i in range(9)]]
    for u in users:
        h.login(u, user=u)
    cid = h.call("A", users[1:8])  # 8 members
    h.accept("U0x", cid)
    err = h.refused(InviteUser("A", cid, ("U7x", "U8x"), CallParams()), ErrorCode.PARAM_INVALID)
    assert "9 members" in err.message
    assert h.invite("A", cid, ["U7x"]) == ["U7x"]


def test_invite_user_is_refused_for_a_ringing_member(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.refused(InviteUser("B", cid, ("C",), CallParams()), ErrorCode.REQUEST_REFUSED)


def test_invite_user_checks_its_params(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.refused(InviteUser("A", cid, ("C",), CallParams(timeout=601)), ErrorCode.PARAM_INVALID)
    h.refused(InviteUser("A", cid, ("bad id",), CallParams()), ErrorCode.PARAM_INVALID)


def test_caller_may_invite_while_dialing(h: Harness) -> None:
    cid = h.call("A", ["B"])
    assert h.invite("A", cid, ["C"]) == ["C"]
    assert h.ev("B")[-1] == inviting("C")
    assert h.ev("C") == [received("A", ["B", "C"])]


def test_a_request_returns_only_its_own_value_and_handle_the_same_actions() -> None:
    # ``h`` drives through handle() (the value dropped), ``r`` the same inputs through
    # request(): the actions are the same, and no value carries over to a later request.
    h, r = Harness(), Harness()
    for x in (h, r):
        for d in "ABC":
            x.login(d)
    place = PlaceCall("A", ("B",), AUDIO, CallParams(), "c1", 1)
    assert h.feed(place) == r.apply(r.sb.request(place, r.now)[1])
    assert h.req(Accept("B", "c1")) is None
    r.accept("B", "c1")
    assert h.batches == r.batches
    h.refused(InviteUser("A", "c1", ("B",), CallParams()), ErrorCode.PARAM_INVALID)
    assert h.req(SetSelfInfo("A", "Ann", "")) is None
    invite = InviteUser("A", "c1", ("C",), CallParams())
    assert h.req(invite) == ["C"]
    assert h.req(Reject("C", "c1")) is None
    assert r.feed(SetSelfInfo("A", "Ann", "")) == h.batches[-3]
    assert r.feed(invite) == h.batches[-2]
    assert r.feed(Reject("C", "c1")) == h.batches[-1]


# --------------------------------------------------------------------------- availability


def test_camera_in_an_audio_call_is_not_supported(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    err = h.refused(SetDeviceFlag("A", cid, "video", True), ErrorCode.SCENE_NOT_SUPPORTED)
    assert "switch_call_media_type" in err.message
    h.refused(SetDeviceFlag("A", cid, "screen", True), ErrorCode.PARAM_INVALID)


def test_availability_events_only_on_a_real_change(h: Harness) -> None:
    cid = h.call("A", ["B", "C"], VIDEO)
    h.accept("B", cid)
    h.accept("C", cid)
    h.clear()
    h.feed(SetDeviceFlag("A", cid, "audio", True))  # already on
    h.feed(SetDeviceFlag("A", cid, "video", True))  # already on (video call)
    assert h.ev("B") == h.ev("C") == []
    h.feed(SetDeviceFlag("A", cid, "audio", False))
    h.feed(SetDeviceFlag("A", cid, "audio", False))
    h.feed(SetDeviceFlag("A", cid, "video", False))
    expected = [("on_user_audio_available", "A", False), ("on_user_video_available", "A", False)]
    assert h.ev("B") == h.ev("C") == expected
    assert h.ev("A") == []  # never to oneself


def test_flags_set_while_ringing_show_up_when_the_leg_begins(h: Harness) -> None:
    cid = h.call("A", ["B"], VIDEO)
    h.feed(SetDeviceFlag("B", cid, "video", False))
    h.feed(SetDeviceFlag("A", cid, "audio", False))
    assert h.ev("A") == [inviting("B")]
    h.accept("B", cid)
    assert h.ev("A")[-3:] == join("B", video=False)
    assert h.ev("B")[-3:] == join("A", audio=False, video=True)


def test_availability_of_a_camera_closed_member_is_not_repeated_by_a_switch(h: Harness) -> None:
    cid = h.call("A", ["B"], VIDEO)
    h.accept("B", cid)
    h.feed(SetDeviceFlag("B", cid, "video", False))
    h.clear()
    h.req(SwitchMediaType("A", cid, AUDIO))
    change = ("on_call_media_type_changed", VIDEO, AUDIO)
    assert h.ev("A") == [change]  # B's camera was already off
    assert h.ev("B") == [change, ("on_user_video_available", "A", False)]


# --------------------------------------------------------------------------- sig expiry


def test_sig_expiry_warns_and_a_renewal_within_grace_keeps_everything(h: Harness) -> None:
    h.login("B", sig=T0 + 100)
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.clear()
    h.advance_to(T0 + 100)
    assert h.ev("B") == [("on_user_sig_expired",)]
    h.advance(30)
    h.feed(RenewSig("B", T0 + 10_000))
    h.advance(500)
    assert h.ev("B") == [("on_user_sig_expired",)]
    assert h.ev("A") == []
    assert h.sb.calls[cid].state_of("B").value == "connected"
    assert h.closed == []
    assert h.timers == {("sig", "B"): T0 + 10_000}


def test_sig_expiry_without_renewal_ends_the_legs_offline_and_closes(h: Harness) -> None:
    h.login("B", sig=T0 + 100)
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.clear()
    h.advance_to(T0 + 159)
    assert h.ev("B") == [("on_user_sig_expired",)]
    h.advance(1)
    assert h.ev("B") == [("on_user_sig_expired",), end(R.OFFLINE, "B")]
    assert h.ev("A") == [leave("B"), end(R.OFFLINE, "B")]
    assert [(c.device_id, c.code) for c in h.closed] == [("B", ErrorCode.SIG_EXPIRED)]
    assert "B" not in h.sb.devices


def test_the_timers_armed_are_exactly_those_still_needed(h: Harness) -> None:
    """The harness refuses a CancelTimer for a timer that is not armed; here the
    cancels that are needed do happen, so no timer outlives its reason."""
    h.login("B", sig=T0 + 100)
    assert h.timers == {("sig", "B"): T0 + 100}
    cid = h.call("A", ["B", "C"], timeout=30)
    assert set(h.timers) == {("sig", "B"), ("ring", cid, "B"), ("ring", cid, "C")}
    h.accept("B", cid)
    assert set(h.timers) == {("sig", "B"), ("ring", cid, "C")}
    h.advance(30)  # C's invitation times out: its timer fired
    assert set(h.timers) == {("sig", "B")}
    h.hangup("A", cid)
    assert h.timers == {("sig", "B"): T0 + 100}
    h.login("B", sig=T0 + 500)  # the same device afresh: the new sig's timer replaces the old
    assert h.timers == {("sig", "B"): T0 + 500}
    h.advance_to(T0 + 500)  # expired: the grace timer instead
    assert h.timers == {("sig_grace", "B"): T0 + 560}
    h.login("B")  # afresh with a sig that does not expire: nothing armed for B
    assert h.timers == {}
    cid = h.call("A", ["B"], timeout=30)
    h.hangup("A", cid)  # the caller cancels: the callee's ring timer goes too
    assert h.timers == {}


def test_renewing_with_an_expired_sig_is_refused(h: Harness) -> None:
    h.login("B", sig=T0 + 100)
    h.refused(RenewSig("B", T0), ErrorCode.SIG_EXPIRED)
    h.refused(RenewSig("nobody", T0 + 500), ErrorCode.INIT_FAIL)


def test_expired_caller_still_dialing_ends_the_call_offline(h: Harness) -> None:
    h.login("A", sig=T0 + 10)
    cid = h.call("A", ["B"], timeout=600)
    h.advance(70)
    assert h.ev("A") == [inviting("B"), ("on_user_sig_expired",), *not_connected(R.OFFLINE, "A", "A")]
    assert h.ev("B") == [received("A", ["B"]), *not_connected(R.OFFLINE, "A", "B")]
    assert h.record(cid).record.result is CallResult.OFFLINE


# --------------------------------------------------------------------------- heartbeat loss


def test_dialing_caller_vanishing_ends_the_call_offline(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.clear()
    h.feed(DeviceGone("A"))
    assert h.ev("A") == not_connected(R.OFFLINE, "A", "A")
    assert h.ev("B") == not_connected(R.OFFLINE, "A", "B")
    assert h.record(cid).record.result is CallResult.OFFLINE


def test_ringing_device_vanishing_keeps_the_invite_and_still_gets_its_terminal(
    h: Harness,
) -> None:
    cid = h.call("A", ["B"])
    h.feed(DeviceGone("B"))
    assert h.sb.calls[cid].state_of("B").value == "ringing"
    h.advance(30)
    assert h.ev("B") == [received("A", ["B"]), *not_connected(R.NO_RESPONSE, "B", "B")]


def test_group_member_vanishing_leaves_offline_and_the_call_goes_on(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.accept("C", cid)
    h.clear()
    h.feed(DeviceGone("C"))
    assert h.ev("A") == h.ev("B") == [leave("C")]
    assert h.ev("C") == [end(R.OFFLINE, "C")]
    assert cid in h.sb.calls


def test_logout_while_connected_leaves_as_hangup_without_a_terminal(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h.clear()
    h.feed(Logout("B"))
    assert h.ev("B") == []
    assert h.ev("A") == [leave("B"), end(R.HANGUP, "B")]
    assert h.closed == []


# --------------------------------------------------------------------------- admin end


def test_admin_end_ends_the_call_for_everyone_as_end_by_server(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.reject("D", cid)
    h.clear()
    h.advance(20)
    h.feed(AdminEndCall(cid, "administrator"))
    assert h.ev("A") == [end(R.END_BY_SERVER, "administrator")]
    assert h.ev("B") == [end(R.END_BY_SERVER, "administrator")]
    assert h.ev("C") == not_connected(R.END_BY_SERVER, "administrator", "C")
    assert h.ev("D") == []
    rec = h.record(cid).record
    assert rec.result is CallResult.END_BY_SERVER and rec.ended_by == "administrator"
    assert rec.end_time == T0 + 20
    assert h.timers == {}
    h.refused(AdminEndCall(cid, "administrator"), ErrorCode.CALL_NOT_FOUND)


def test_admin_end_of_a_ringing_call(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.clear()
    h.feed(AdminEndCall(cid, "admin"))
    assert h.ev("A") == not_connected(R.END_BY_SERVER, "admin", "A")
    assert h.ev("B") == not_connected(R.END_BY_SERVER, "admin", "B")


# --------------------------------------------------------------------------- records


def test_record_of_a_connected_call_has_times_result_and_member_stints(h: Harness) -> None:
    cid = h.call("A", ["B", "C"], user_data="hello", room_id=RoomId(str_room_id="room-1"))
    h.advance(5)
    h.accept("B", cid)
    h.advance(5)
    h.reject("C", cid)
    h.advance(5)
    h.invite("B", cid, ["C"], timeout=20)
    h.advance(5)
    h.accept("C", cid)
    h.advance(100)
    h.hangup("A", cid)
    h.advance(10)
    h.hangup("C", cid)
    f = h.record(cid)
    rec = f.record
    assert not f.ephemeral
    assert (rec.start_time, rec.accept_time, rec.end_time) == (T0, T0 + 5, T0 + 130)
    assert rec.result is CallResult.NORMAL_END
    assert rec.end_reason is R.HANGUP and rec.ended_by == "C"
    assert rec.caller == "A" and rec.callees == ("B", "C")
    assert rec.call_type == "MultiCall" and rec.scene is CallScene.MULTI_CALL
    assert rec.room_id == RoomId(str_room_id="room-1") and rec.user_data == "hello"
    got = [
        (m.user_id, m.role, m.invite_time, m.accept_time, m.leave_time, m.end_reason, m.invited_by)
        for m in rec.members
    ]
    # Stints are ordered by invite time, the caller first; among equal invite times
    # earlier (finished) stints come first (current behaviour, the spec is silent).
    assert got == [
        ("A", CALLER, T0, T0 + 5, T0 + 120, R.HANGUP, ""),
        ("C", CALLED, T0, 0.0, T0 + 10, R.REJECT, "A"),
        ("B", CALLED, T0, T0 + 5, T0 + 130, R.HANGUP, "A"),
        ("C", CALLED, T0 + 15, T0 + 20, T0 + 130, R.HANGUP, "B"),
    ]
    assert [m.billable_seconds for m in rec.members] == [115, 0, 125, 110]
    assert dict(f.user_results) == {
        "A": CallResultType.OUTGOING,
        "B": CallResultType.INCOMING,
        "C": CallResultType.INCOMING,
    }


def test_record_is_written_once_before_the_terminal_events(h: Harness) -> None:
    cid = group(h)
    h.accept("B", cid)
    h.reject("C", cid)
    h.reject("D", cid)
    h.hangup("A", cid)
    (batch,) = [
        b for b in h.batches if any(isinstance(a, Persist) and isinstance(a.what, FinishCall) for a in b)
    ]
    first_terminal = min(i for i, a in enumerate(batch) if isinstance(a, Emit) and a.terminal)
    (finish,) = [i for i, a in enumerate(batch) if isinstance(a, Persist) and isinstance(a.what, FinishCall)]
    assert finish < first_terminal
    assert h.finish_count == Counter({cid: 1})
    # No live snapshot is saved for an ended call.
    assert not any(isinstance(a, Persist) and isinstance(a.what, SaveCall) for a in batch)


def test_ephemeral_calls_are_flagged_on_their_record(h: Harness) -> None:
    cid = h.call("A", ["B"], is_ephemeral_call=True)
    h.hangup("A", cid)
    assert h.record(cid).ephemeral


def test_live_changes_are_persisted_before_the_events_of_the_batch(h: Harness) -> None:
    cid = h.call("A", ["B"])
    batch = h.batches[-1]
    assert isinstance(batch[0], Persist) and isinstance(batch[0].what, SaveCall)
    assert batch[0].what.snapshot == h.sb.snapshot(cid)


# --------------------------------------------------------------------------- restore


def restored(h: Harness, devices: list[str]) -> Harness:
    """A fresh switchboard restored from ``h``'s saved snapshots and logins."""
    h2 = Harness(now=h.now + 5)
    logins = [Login(d, user_of(d)) for d in devices]
    h2.apply(h2.sb.restore(list(h.saved.values()), logins, h2.now))
    return h2


def test_restore_and_resumed_login_confirm_a_live_call(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.accept("B", cid)
    h2 = restored(h, ["A", "B"])
    assert h2.sb.calls[cid].unconfirmed
    h2.login("B", resumed=True)
    assert not h2.sb.calls[cid].unconfirmed
    h2.feed(RecoveryDeadline(last_known=h.now))
    assert cid in h2.sb.calls
    assert h2.events == {}
    h2.hangup("A", cid)
    assert h2.ev("B") == [leave("A"), end(R.HANGUP, "A")]


def test_recovery_deadline_ends_unconfirmed_calls_at_the_last_known_time(h: Harness) -> None:
    cid = h.call("A", ["B", "C"], timeout=600)
    h.advance(5)
    h.accept("B", cid)
    h.advance(20)
    last_known = h.now
    h2 = restored(h, ["A", "B", "C"])
    h2.advance(60)
    h2.feed(RecoveryDeadline(last_known=last_known))
    assert h2.ev("A") == [end(R.END_BY_SERVER, "")]
    assert h2.ev("B") == [end(R.END_BY_SERVER, "")]
    assert h2.ev("C") == not_connected(R.END_BY_SERVER, "", "C")
    assert h2.raw("A", "on_call_end")[0]["total_time"] == 20
    rec = h2.record(cid).record
    assert rec.end_time == last_known and rec.result is CallResult.END_BY_SERVER
    assert h2.sb.calls == {} and h2.sb.user_call == {}


def test_restore_rearms_ring_timeouts(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h2 = restored(h, ["A", "B"])
    assert h2.timers[("ring", cid, "B")] == T0 + 30
    h2.login("A", resumed=True)
    h2.advance_to(T0 + 30)
    assert h2.ev("B") == not_connected(R.NO_RESPONSE, "B", "B")


# --------------------------------------------------------------------------- limits


def test_more_than_eight_callees_is_a_parameter_error(h: Harness) -> None:
    users = [f"U{i}" for i in range(9)]
    err = h.refused(PlaceCall("A", tuple(users), AUDIO, CallParams(), "x", 1), ErrorCode.PARAM_INVALID)
    assert "at most 8 callees" in err.message
    assert h.call("A", users[:8])  # 8 is fine


def test_callee_list_drops_self_and_duplicates(h: Harness) -> None:
    cid = h.call("A", ["B", "A", "B", "C"])
    assert h.sb.calls[cid].callees == ["B", "C"]
    h.refused(PlaceCall("B", ("B", "B"), AUDIO, CallParams(), "x", 1), ErrorCode.PARAM_INVALID)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 33, "ü", "a/b"])
def test_bad_user_ids_are_parameter_errors(h: Harness, bad: str) -> None:
    err = h.refused(PlaceCall("A", ("B", bad), AUDIO, CallParams(), "x", 1), ErrorCode.PARAM_INVALID)
    assert "user id" in err.message
    h.refused(Login("dev", bad), ErrorCode.PARAM_INVALID)


def test_a_device_key_of_another_user_is_refused_and_its_owner_stays(h: Harness) -> None:
    h.login("dev", user="alice")
    err = h.refused(Login("dev", "bob"), ErrorCode.PARAM_INVALID)
    assert "another user" in err.message
    assert h.sb.devices["dev"].user_id == "alice"


def test_user_data_over_1000_bytes_is_a_parameter_error(h: Harness) -> None:
    err = h.refused(
        PlaceCall("A", ("B",), AUDIO, CallParams(user_data="é" * 501), "x", 1),
        ErrorCode.PARAM_INVALID,
    )
    assert "1002 bytes" in err.message and "1000" in err.message
    assert h.call("A", ["B"], user_data="é" * 500)


def test_nickname_over_500_bytes_is_a_parameter_error(h: Harness) -> None:
    err = h.refused(SetSelfInfo("A", "é" * 251, ""), ErrorCode.PARAM_INVALID)
    assert "500" in err.message
    h.refused(SetSelfInfo("A", "x", "y" * 2049), ErrorCode.PARAM_INVALID)
    h.feed(SetSelfInfo("A", "é" * 250, "https://a/x.png"))
    h.call("A", ["B"])
    info = h.raw("B", "on_call_received")[0]["info"]
    assert info["inviter_nickname"] == "é" * 250
    assert info["inviter_avatar"] == "https://a/x.png"


def test_set_self_info_emits_a_save_of_the_profile() -> None:
    h = Harness()
    h.login("A", multi=True)
    h.login("A2", user="A", multi=True)
    actions = h.feed(SetSelfInfo("A", "Alice ✨", "https://a/x.png"))
    assert actions == [Persist(SaveProfile("A", "Alice ✨", "https://a/x.png", T0))]
    h.advance(5)
    # Another device of the same user changes it: saved again, at the new time.
    assert h.feed(SetSelfInfo("A2", "Alice", "https://a/x.png")) == [
        Persist(SaveProfile("A", "Alice", "https://a/x.png", T0 + 5))
    ]
    assert h.sb.profiles == {"A": ("Alice", "https://a/x.png")}


def test_an_unchanged_profile_is_not_saved_again(h: Harness) -> None:
    h.feed(SetSelfInfo("A", "Alice", "https://a/x.png"))
    h.advance(1)
    assert h.feed(SetSelfInfo("A", "Alice", "https://a/x.png")) == []
    # Nothing set yet and nothing set now is unchanged too.
    assert h.feed(SetSelfInfo("B", "", "")) == []
    assert "B" not in h.sb.profiles


def test_clearing_a_profile_saves_it_empty_and_forgets_it(h: Harness) -> None:
    h.feed(SetSelfInfo("A", "Alice", ""))
    assert h.feed(SetSelfInfo("A", "", "")) == [Persist(SaveProfile("A", "", "", T0))]
    assert "A" not in h.sb.profiles
    h.call("A", ["B"])
    info = h.raw("B", "on_call_received")[0]["info"]
    assert (info["inviter_nickname"], info["inviter_avatar"]) == ("", "")


def test_a_refused_profile_emits_nothing(h: Harness) -> None:
    h.feed(SetSelfInfo("A", "Alice", ""))
    h.refused(SetSelfInfo("A", "x" * 501, ""), ErrorCode.PARAM_INVALID)
    assert h.sb.profiles == {"A": ("Alice", "")}


def test_loaded_profiles_show_in_invitations_without_set_self_info() -> None:
    h = Harness()
    h.sb.load_profiles({"A": ("Alice", "https://a/x.png"), "C": ("", ""), "D": ("Dora", "")})
    assert h.sb.profiles == {"A": ("Alice", "https://a/x.png"), "D": ("Dora", "")}
    for d in ("A", "B", "C", "D"):
        h.login(d)
    cid = h.call("A", ["B"])
    info = h.raw("B", "on_call_received")[0]["info"]
    assert (info["inviter_id"], info["inviter_nickname"], info["inviter_avatar"]) == (
        "A",
        "Alice",
        "https://a/x.png",
    )
    h.hangup("A", cid)
    h.call("D", ["C"])
    assert h.raw("C", "on_call_received")[0]["info"]["inviter_nickname"] == "Dora"
    # A loaded profile set again unchanged is not written again; a change is.
    assert h.feed(SetSelfInfo("A", "Alice", "https://a/x.png")) == []
    assert h.feed(SetSelfInfo("A", "Al", "")) == [Persist(SaveProfile("A", "Al", "", h.now))]


@pytest.mark.parametrize("timeout", [-1, 601, 1.5])
def test_bad_timeout_is_a_parameter_error(h: Harness, timeout: Any) -> None:
    err = h.refused(
        PlaceCall("A", ("B",), AUDIO, CallParams(timeout=timeout), "x", 1),
        ErrorCode.PARAM_INVALID,
    )
    assert "timeout" in err.message


@pytest.mark.parametrize("timeout", [1, 600])
def test_timeout_bounds_are_allowed(h: Harness, timeout: int) -> None:
    cid = h.call("A", ["B"], timeout=timeout)
    assert h.timers[("ring", cid, "B")] == T0 + timeout


def test_bad_media_type_is_a_parameter_error(h: Harness) -> None:
    err = h.refused(PlaceCall("A", ("B",), MediaType.UNKNOWN, CallParams(), "x", 1), ErrorCode.PARAM_INVALID)
    assert "media_type" in err.message


@pytest.mark.parametrize(
    "room",
    [RoomId(int_room_id=5, str_room_id="x"), RoomId(int_room_id=4294967295), RoomId(str_room_id="r" * 65)],
)
def test_bad_room_ids_are_parameter_errors(h: Harness, room: RoomId) -> None:
    h.refused(PlaceCall("A", ("B",), AUDIO, CallParams(room_id=room), "x", 1), ErrorCode.PARAM_INVALID)


def test_requests_from_a_device_that_is_not_logged_in_fail_with_init_fail(h: Harness) -> None:
    h.refused(PlaceCall("nobody", ("B",), AUDIO, CallParams(), "x", 1), ErrorCode.INIT_FAIL)
    h.refused(Accept("nobody", "x"), ErrorCode.INIT_FAIL)
    h.refused(SetMultiDevice("nobody", True), ErrorCode.INIT_FAIL)


def test_group_members_are_validated(h: Harness) -> None:
    h.refused(SetGroupMembers("", ("A",)), ErrorCode.PARAM_INVALID)
    h.refused(SetGroupMembers("g", ("bad id",)), ErrorCode.PARAM_INVALID)


def test_duplicate_call_id_is_refused(h: Harness) -> None:
    h.req(PlaceCall("A", ("B",), AUDIO, CallParams(), "same", 1))
    h.refused(PlaceCall("C", ("D",), AUDIO, CallParams(), "same", 2), ErrorCode.REQUEST_REPEATED)


def test_acting_on_an_ended_call_is_call_not_found(h: Harness) -> None:
    cid = h.call("A", ["B"])
    h.hangup("A", cid)
    for inp in (Accept("B", cid), Reject("B", cid), Hangup("A", cid), Join("B", cid)):
        h.refused(inp, ErrorCode.CALL_NOT_FOUND)
