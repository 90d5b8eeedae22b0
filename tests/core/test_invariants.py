"""Property-based check of the event invariants (docs/spec.md §4 I1-I3) and the §6 rules.

A hypothesis state machine drives one switchboard with five users (B and D with two
devices each, usually multi-device) through random calls, answers, invites, joins,
media and camera changes, lost devices, logouts, re-logins, sig expiry, time passing,
admin ends and server restarts (restore from the last saved snapshots). Refused
requests must change nothing, and every live call's last saved snapshot must be its
current state (§6.8). Every device's event stream is checked as it arrives:

* each (device, call) *leg* starts when the device places the call, receives
  ``on_call_received`` or gets ``on_call_begin`` (a join), and closes with exactly
  one terminal event: ``on_call_end`` if it began, else ``on_call_not_connected``
  followed at once by its ``on_call_cancelled`` (I1);
* joins, leaves, availability and media changes only arrive on a begun leg; nothing
  of a call arrives on a closed leg, except a new invitation (I2);
* every connected device's view (who is connected, their camera/microphone, the
  media type), built from its events alone, matches the switchboard (I3 and more);
  availability events only report real changes.

Devices that log out or are kicked owe nothing and receive nothing afterwards. At
teardown time runs on until every ring timer fired, the remaining calls are ended by
the admin, and every leg must be closed, every call recorded exactly once.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_machine import fingerprint, user_of

from ringline.core.enums import MediaType
from ringline.core.errors import ErrorCode, LocalCallError
from ringline.core.machine import (
    MAX_MEMBERS,
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
    SetDeviceFlag,
    SetGroupMembers,
    SetMultiDevice,
    SetTimer,
    Switchboard,
    SwitchMediaType,
    TimerFired,
)
from ringline.core.transitions import MemberState
from ringline.core.types import CallParams

T0 = 1_700_000_000.0
USERS = ("A", "B", "C", "D", "E")
DEVICES = ("A", "B1", "B2", "C", "D1", "D2", "E")
TERMINAL = frozenset({"on_call_end", "on_call_not_connected", "on_call_cancelled"})
VIEW_EVENTS = frozenset(
    {
        "on_user_join",
        "on_user_leave",
        "on_user_audio_available",
        "on_user_video_available",
        "on_user_voice_volume_changed",
        "on_user_network_quality_changed",
        "on_call_media_type_changed",
    }
)
MEMBER_EVENTS = frozenset(
    {
        "on_user_inviting",
        "on_user_reject",
        "on_user_no_response",
        "on_user_line_busy",
    }
)

# Leg states of one (device, call).
NONE, PENDING, BEGUN, CLOSING, DONE = "none", "pending", "begun", "closing", "done"


@dataclass
class View:
    """What a device knows of a call from its own events."""

    media: int = 0
    members: set[str] = field(default_factory=set)
    flags: dict[str, dict[str, bool]] = field(default_factory=dict)


class Calls(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sb = Switchboard(sdk_app_id=1, sig_grace=30.0)
        self.now = T0
        self.timers: dict[tuple[str, ...], float] = {}
        self.legs: dict[tuple[str, str], str] = {}
        self.views: dict[tuple[str, str], View] = {}
        self.created: list[str] = []
        self.finished: Counter[str] = Counter()
        self.saved: dict[str, dict[str, Any]] = {}
        self.n = 0

    # ------------------------------------------------------------------ driving

    def run(self, inp: Input, *, placing: tuple[str, str] | None = None) -> Any:
        """Hand ``inp`` to the switchboard; a refusal must change nothing."""
        before = fingerprint(self.sb)
        # Only a logged-in device can log out; a Logout for a device whose session is
        # already gone (DeviceGone, sig expiry) is a no-op, and the device still owes
        # the terminal events of its legs (I1 "even across reconnects").
        logs_out = inp.device_id if isinstance(inp, Logout) else ""
        logs_out = logs_out if logs_out in self.sb.devices else ""
        try:
            res, actions = self.sb.request(inp, self.now)
        except LocalCallError as e:
            assert e.message
            assert fingerprint(self.sb) == before, f"refused {inp} changed state"
            return None
        if placing is not None and res == placing[1]:
            # A new call (not glare): the placing device holds a leg from now on.
            self.created.append(res)
            self.legs[placing] = PENDING
        if logs_out:
            self.exempt(logs_out)
        self.apply(actions)
        return res

    def exempt(self, device: str) -> None:
        """Logged out or kicked: no terminal owed, nothing more of these calls."""
        for key in list(self.legs):
            if key[0] == device:
                self.legs[key] = NONE
                self.views.pop(key, None)

    def apply(self, actions: list[Action]) -> None:
        finish_at = {
            a.what.record.call_id: i
            for i, a in enumerate(actions)
            if isinstance(a, Persist) and isinstance(a.what, FinishCall)
        }
        for i, a in enumerate(actions):
            if isinstance(a, Emit):
                cid = a.args.get("call_id")
                if a.name in TERMINAL and cid in finish_at:
                    assert finish_at[cid] < i, "terminal event before the record"
                if a.name == "on_kicked_offline":
                    self.exempt(a.device_id)
                elif cid is not None:
                    self.event(a.device_id, str(cid), a.name, a.args)
            elif isinstance(a, SetTimer):
                self.timers.pop(a.key, None)
                self.timers[a.key] = a.at
            elif isinstance(a, CancelTimer):
                # the core cancels only what it armed and has not fired yet
                assert a.key in self.timers, f"{a}: no such timer is armed"
                del self.timers[a.key]
            elif isinstance(a, Persist) and isinstance(a.what, SaveCall):
                self.saved[a.what.call_id] = a.what.snapshot
            elif isinstance(a, Persist) and isinstance(a.what, FinishCall):
                self.saved.pop(a.what.record.call_id, None)
                self.finished[a.what.record.call_id] += 1
                assert self.finished[a.what.record.call_id] == 1, "call recorded twice"
            elif isinstance(a, CloseDevice) and a.code == ErrorCode.KICKED_OFFLINE:
                assert a.device_id not in self.sb.devices

    def event(self, dev: str, cid: str, name: str, args: dict[str, Any]) -> None:
        key = (dev, cid)
        leg = self.legs.get(key, NONE)
        where = f"{name}{args} to {dev} on a {leg} leg"
        if leg == CLOSING:
            assert name == "on_call_cancelled", f"I2: {where} (want on_call_cancelled)"
            self.legs[key] = DONE
            return
        if name == "on_call_received":
            assert leg in (NONE, PENDING, DONE), f"I2: {where}"
            self.legs[key] = PENDING
        elif name == "on_call_begin":
            assert leg in (NONE, PENDING, DONE), f"I2: {where}"
            self.legs[key] = BEGUN
            self.views[key] = View(media=args["media_type"])
        elif name == "on_call_end":
            assert leg == BEGUN, f"I1: {where}"
            self.legs[key] = DONE
            del self.views[key]
        elif name == "on_call_not_connected":
            assert leg == PENDING, f"I1: {where}"
            self.legs[key] = CLOSING
        elif name == "on_call_cancelled":
            raise AssertionError(f"I2: {where} without on_call_not_connected")
        elif name in MEMBER_EVENTS:
            assert leg in (PENDING, BEGUN), f"I2: {where}"
        elif name in VIEW_EVENTS:
            assert leg == BEGUN, f"I2: {where}"
            self.update_view(self.views[key], name, args, where)
        else:
            raise AssertionError(f"unknown event {where}")

    @staticmethod
    def update_view(v: View, name: str, args: dict[str, Any], where: str) -> None:
        u = args.get("user_id")
        if name == "on_user_join":
            assert u is not None and u not in v.members, f"double join: {where}"
            v.members.add(u)
        elif name == "on_user_leave":
            assert u in v.members, f"leave of a non-member: {where}"
            v.members.discard(u)
            v.flags.pop(u, None)
        elif name in ("on_user_audio_available", "on_user_video_available"):
            assert u in v.members, f"availability of a non-member: {where}"
            kind = "audio" if "audio" in name else "video"
            value = args[f"is_{kind}_available"]
            flags = v.flags.setdefault(u, {})
            assert flags.get(kind) != value, f"availability without a change: {where}"
            flags[kind] = value
        elif name == "on_call_media_type_changed":
            assert args["old_call_media_type"] == v.media, where
            assert args["new_call_media_type"] != v.media, where
            v.media = args["new_call_media_type"]

    def advance_to(self, t: float) -> None:
        while True:
            due = [(at, i, k) for i, (k, at) in enumerate(self.timers.items()) if at <= t]
            if not due:
                break
            at, _, key = min(due)
            del self.timers[key]
            self.now = max(self.now, at)
            self.run(TimerFired(key))
        self.now = max(self.now, t)

    def pick_call(self, dev: str, k: int) -> str:
        """Mostly the call the device's user is in; sometimes another or a dead one."""
        options: list[str] = []
        mine = self.sb.user_call.get(user_of(dev))
        if mine is not None:
            options += [mine, mine]
        options += sorted(self.sb.calls)
        options += self.created[-2:]
        return options[k % len(options)] if options else "no-call"

    # ------------------------------------------------------------------ rules

    @initialize()
    def everyone_logs_in(self) -> None:
        for dev in DEVICES:
            self.run(Login(dev, user_of(dev), multi_device=dev[-1].isdigit()))

    @rule(
        dev=st.sampled_from(DEVICES),
        multi=st.booleans() | st.just(True),
        ttl=st.sampled_from([None, None, None, 25.0, 90.0]),
    )
    def login(self, dev: str, multi: bool, ttl: float | None) -> None:
        sig = math.inf if ttl is None else self.now + ttl
        self.run(Login(dev, user_of(dev), multi, sig))

    @rule(dev=st.sampled_from(DEVICES))
    def logout(self, dev: str) -> None:
        self.run(Logout(dev))

    @rule(dev=st.sampled_from(DEVICES))
    def device_gone(self, dev: str) -> None:
        self.run(DeviceGone(dev))

    @rule(dev=st.sampled_from(DEVICES), enable=st.booleans())
    def set_multi_device(self, dev: str, enable: bool) -> None:
        self.run(SetMultiDevice(dev, enable))

    @rule(dev=st.sampled_from(DEVICES))
    def renew_sig(self, dev: str) -> None:
        self.run(RenewSig(dev, self.now + 120))

    @rule(
        dev=st.sampled_from(DEVICES),
        callees=st.lists(st.sampled_from(USERS), min_size=1, max_size=4),
        media=st.sampled_from([MediaType.AUDIO, MediaType.VIDEO]),
        timeout=st.sampled_from([5, 20, 60]),
        in_group=st.booleans(),
    )
    def place_call(
        self, dev: str, callees: list[str], media: MediaType, timeout: int, in_group: bool
    ) -> None:
        self.n += 1
        cid = f"call-{self.n}"
        params = CallParams(timeout=timeout, chat_group_id="grp" if in_group else "")
        self.run(PlaceCall(dev, tuple(callees), media, params, cid, self.n), placing=(dev, cid))

    @rule(
        dev=st.sampled_from(DEVICES),
        k=st.integers(0, 9),
        op=st.sampled_from([Accept, Accept, Reject, Ignore, Hangup, Hangup, Join]),
    )
    def member_op(self, dev: str, k: int, op: type[Accept | Reject | Ignore | Hangup | Join]) -> None:
        self.run(op(dev, self.pick_call(dev, k)))

    def legs_in(self, *states: MemberState) -> list[tuple[str, str]]:
        """(device, call) of logged-in devices holding a leg in one of ``states``."""
        return [
            (d, cid)
            for cid, call in sorted(self.sb.calls.items())
            for m in call.members.values()
            if m.state in states
            for d in m.devices
            if d in self.sb.devices
        ]

    @rule(k=st.integers(0, 20), op=st.sampled_from([Accept, Accept, Accept, Reject, Ignore, Hangup, Join]))
    def answer(self, k: int, op: type[Accept | Reject | Ignore | Hangup | Join]) -> None:
        """A ringing device answers (the productive twin of ``member_op``)."""
        legs = self.legs_in(MemberState.RINGING)
        if legs:
            self.run(op(*legs[k % len(legs)]))

    @rule(
        k=st.integers(0, 20),
        what=st.sampled_from(["hangup", "invite", "switch", "flag"]),
        users=st.lists(st.sampled_from(USERS), min_size=1, max_size=2),
        on=st.booleans(),
    )
    def connected_acts(self, k: int, what: str, users: list[str], on: bool) -> None:
        """A connected (or dialing) device acts on its call."""
        legs = self.legs_in(MemberState.CONNECTED, MemberState.DIALING)
        if not legs:
            return
        dev, cid = legs[k % len(legs)]
        media = self.sb.calls[cid].media_type
        match what:
            case "hangup":
                self.run(Hangup(dev, cid))
            case "invite":
                self.run(InviteUser(dev, cid, tuple(users), CallParams(timeout=10 + k)))
            case "switch":
                other = MediaType.AUDIO if media is MediaType.VIDEO else MediaType.VIDEO
                self.run(SwitchMediaType(dev, cid, other))
            case _:
                self.run(SetDeviceFlag(dev, cid, "video" if k % 2 else "audio", on))

    @rule(
        dev=st.sampled_from(DEVICES),
        k=st.integers(0, 9),
        users=st.lists(st.sampled_from(USERS), min_size=1, max_size=3),
        timeout=st.sampled_from([5, 30]),
    )
    def invite(self, dev: str, k: int, users: list[str], timeout: int) -> None:
        self.run(InviteUser(dev, self.pick_call(dev, k), tuple(users), CallParams(timeout=timeout)))

    @rule(
        dev=st.sampled_from(DEVICES),
        k=st.integers(0, 9),
        media=st.sampled_from([MediaType.AUDIO, MediaType.VIDEO]),
    )
    def switch_media(self, dev: str, k: int, media: MediaType) -> None:
        self.run(SwitchMediaType(dev, self.pick_call(dev, k), media))

    @rule(
        dev=st.sampled_from(DEVICES),
        k=st.integers(0, 9),
        kind=st.sampled_from(["audio", "video"]),
        on=st.booleans(),
    )
    def set_flag(self, dev: str, k: int, kind: str, on: bool) -> None:
        self.run(SetDeviceFlag(dev, self.pick_call(dev, k), kind, on))

    @rule(members=st.lists(st.sampled_from(USERS), max_size=5))
    def set_group(self, members: list[str]) -> None:
        self.run(SetGroupMembers("grp", tuple(members)))

    @rule(seconds=st.sampled_from([1.0, 4.0, 10.0, 31.0, 70.0]))
    def advance(self, seconds: float) -> None:
        self.advance_to(self.now + seconds)

    @rule(resume=st.lists(st.sampled_from(DEVICES), max_size=4, unique=True))
    def restart(self, resume: list[str]) -> None:
        """The server restarts: live calls come back from their last saved snapshot,
        the devices in ``resume`` come back to their sessions, the others do not;
        after the grace period calls none of whose devices came back end."""
        logins = [
            Login(d, dev.user_id, dev.multi_device, dev.sig_expires_at) for d, dev in self.sb.devices.items()
        ]
        groups = dict(self.sb.groups)
        last_known = self.now
        self.sb = Switchboard(sdk_app_id=1, sig_grace=30.0)
        self.timers = {}
        self.apply(self.sb.restore(list(self.saved.values()), logins, self.now))
        for g, members in groups.items():
            self.run(SetGroupMembers(g, tuple(sorted(members))))
        for d in resume:
            if d in self.sb.devices:
                self.run(Login(d, user_of(d), resumed=True))
        self.now += 5
        self.run(RecoveryDeadline(last_known))

    @rule(k=st.integers(0, 9))
    def admin_end(self, k: int) -> None:
        self.run(AdminEndCall(self.pick_call("", k), "administrator"))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def one_live_call_per_user_and_bookkeeping_agrees(self) -> None:
        where: dict[str, str] = {}
        for cid, call in self.sb.calls.items():
            active = call.active_members()
            assert len(active) >= 2, f"live call {cid} with {len(active)} members (end rule)"
            assert len(active) <= MAX_MEMBERS
            for m in active:
                assert m.user_id not in where, f"{m.user_id} in {where[m.user_id]} and {cid}"
                where[m.user_id] = cid
            states = {m.state for m in active}
            if MemberState.DIALING in states:
                assert states <= {MemberState.DIALING, MemberState.RINGING}
        assert where == self.sb.user_call
        for cid in self.created:
            assert self.finished[cid] == (0 if cid in self.sb.calls else 1), cid

    @invariant()
    def every_live_call_is_persisted_as_it_is(self) -> None:
        """§6.8: the last saved snapshot of each live call is its current state."""
        assert set(self.saved) == set(self.sb.calls)
        for cid, call in self.sb.calls.items():
            assert self.saved[cid] == call.to_snapshot(), f"stale snapshot of {cid}"

    @invariant()
    def connected_devices_see_the_call_as_it_is(self) -> None:
        """I3 and beyond: a begun leg's view matches the connected members."""
        for cid, call in self.sb.calls.items():
            connected = {m.user_id: m for m in call.members.values() if m.state is MemberState.CONNECTED}
            for m in connected.values():
                assert m.active, f"{m.user_id} connected without a device"
                key = (m.active, cid)
                assert self.legs.get(key) == BEGUN, f"{key} connected but leg {self.legs.get(key)}"
                v = self.views[key]
                others = {u: o for u, o in connected.items() if u != m.user_id}
                assert v.members == set(others), f"{key} sees {v.members}, not {set(others)}"
                assert v.media == call.media_type
                for u, o in others.items():
                    assert v.flags[u] == {"audio": o.audio, "video": o.video}, (key, u)

    def teardown(self) -> None:
        # Every ring timer (and sig grace) fires; connected calls end by the admin.
        self.advance_to(self.now + 1000)
        for cid in list(self.sb.calls):
            self.run(AdminEndCall(cid, "administrator"))
        self.advance_to(self.now + 1000)
        assert self.sb.calls == {}
        assert self.sb.user_call == {}
        for key, leg in self.legs.items():
            assert leg in (NONE, DONE), f"I1: {key} left {leg} (no terminal event)"
        for cid in self.created:
            assert self.finished[cid] == 1, f"{cid} recorded {self.finished[cid]} times"


Calls.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_calls = Calls.TestCase
